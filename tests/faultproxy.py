"""A TCP proxy that tests switch between forwarding and failing: a database "outage"
without touching the shared PostgreSQL server.

Modes: ``up`` forwards every connection to the target; ``refuse`` resets every new
connection at once; ``blackhole`` accepts connections and never answers (a host that
vanished). Leaving ``up`` resets every open connection, as a server crash would.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from tests.support import free_port

MODES = ("up", "refuse", "blackhole")


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), so the peer sees the connection fail at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() on it
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Listens on a free loopback port and relays to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "up"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> FaultProxy:
        """Start accepting."""
        self._thread.start()
        return self

    def set_mode(self, mode: str) -> None:
        """Switch to ``mode``; every connection open now is reset."""
        assert mode in MODES
        with self._lock:
            self.mode = mode
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)

    def stop(self) -> None:
        """Stop listening and reset every connection."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.set_mode("refuse")

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                mode = self.mode
                if mode == "blackhole":
                    self._open.add(client)  # held, silent, until the mode changes
            if mode == "refuse":
                _reset(client)
            elif mode == "up":
                self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _reset(source)
            _reset(sink)


@contextlib.contextmanager
def fault_proxy(target_host: str, target_port: int) -> Iterator[FaultProxy]:
    """A running :class:`FaultProxy`, stopped afterwards."""
    proxy = FaultProxy(target_host, target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
