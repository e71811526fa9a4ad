"""Test support: isolated databases and real ``authgate serve`` processes."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

TEST_SECRET = "test-secret-" + "x7Qp2vLm9Rz4Kc8Wn3Jd6Ht1Yb5Gf0Sa"
DATABASE_URL = os.environ.get("AUTHGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("AUTHGATE_TEST_REDIS_URL")
AUTHGATE = str(Path(sys.executable).with_name("authgate"))


def on_postgresql() -> bool:
    """True when the suite runs against PostgreSQL."""
    return bool(DATABASE_URL)


@contextlib.contextmanager
def isolated_database(tmp: Path) -> Iterator[str]:
    """A database URL nobody else uses: a SQLite file, or a fresh PostgreSQL schema.

    On the Redis run, the keys written under this database's Redis prefix (throttle
    counters live up to 30 days) are deleted with it, so the shared Redis stays clean.
    """
    with _fresh_database(tmp) as url:
        try:
            yield url
        finally:
            if REDIS_URL:
                delete_redis_keys(REDIS_URL, redis_prefix(url))


@contextlib.contextmanager
def _fresh_database(tmp: Path) -> Iterator[str]:
    if not DATABASE_URL:
        yield f"sqlite:///{tmp / 'authgate.db'}"
        return
    schema = "t_" + secrets.token_hex(6)
    engine = create_engine(DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in DATABASE_URL else "?"
    try:
        yield f"{DATABASE_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


class MigratedSchema:
    """The schema ``authgate db upgrade`` makes, made once and laid into each test's database.

    Alembic takes 70 ms (SQLite) to 180 ms (PostgreSQL) per database, and most tests need
    a migrated one. So the migration runs once, on a database of its own: on SQLite the
    migrated file is copied, on PostgreSQL the statements the migration sent are sent
    again, in the same order, to the test's empty schema.
    """

    def __init__(self, upgrade: Callable[[str], None], tmp: Path) -> None:
        """Migrate a database in ``tmp`` with ``upgrade(url)`` (which must close its
        connections) and keep what it made."""
        self._statements: list[tuple[str, Any]] = []
        self._file: str | None = None
        with _fresh_database(tmp) as url:
            if not on_postgresql():
                upgrade(url)
                self._file = make_url(url).database
                return
            event.listen(Engine, "before_cursor_execute", self._record)
            try:
                upgrade(url)
            finally:
                event.remove(Engine, "before_cursor_execute", self._record)

    def _record(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *rest: Any
    ) -> None:
        assert not rest[-1], "a migration statement with several parameter sets"
        self._statements.append((statement, parameters))

    def lay_into(self, url: str) -> None:
        """Give the empty database ``url`` the migrated schema (and Alembic's revision)."""
        if self._file is not None:
            shutil.copyfile(self._file, str(make_url(url).database))
            return
        engine = create_engine(url, poolclass=NullPool)
        connection = engine.raw_connection()
        try:
            with connection.cursor() as cursor:
                for statement, parameters in self._statements:
                    cursor.execute(statement, parameters)
            connection.commit()
        finally:
            connection.close()
            engine.dispose()


def redis_prefix(database_url: str) -> str:
    """The Redis key prefix of everything using ``database_url``: isolated per test database,
    shared by the servers (and the app) of one test."""
    return "t:" + hashlib.sha256(database_url.encode()).hexdigest()[:16] + ":"


def redis_env(database_url: str) -> dict[str, str]:
    """``AUTHGATE_REDIS_*`` for a server on ``database_url`` (empty without a test Redis)."""
    if not REDIS_URL:
        return {}
    return {"AUTHGATE_REDIS_URL": REDIS_URL, "AUTHGATE_REDIS_PREFIX": redis_prefix(database_url)}


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A real ``authgate serve`` process (granian by default) on a loopback port."""

    database_url: str
    instance: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    threads: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: ``authgate serve --server`` (None: the default server).
    server: str | None = None

    @property
    def url(self) -> str:
        """Base URL, also the issuer."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.instance / f"server-{self.port}.log"

    def start(self) -> Server:
        """Start the process and wait until it answers."""
        env = {
            **os.environ,
            "AUTHGATE_ENV": "testing",
            "AUTHGATE_SECRET_KEY": TEST_SECRET,
            "AUTHGATE_DATABASE_URL": self.database_url,
            "AUTHGATE_INSTANCE_PATH": str(self.instance),
            **redis_env(self.database_url),
            **self.env,
        }
        self.instance.mkdir(parents=True, exist_ok=True)
        command = [
            AUTHGATE,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
        ]
        if self.server is not None:
            command += ["--server", self.server]
        with self.log_path.open("ab") as log:
            # A process group of its own (master and workers), so kill_group can crash it whole.
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/.well-known/jwks.json", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM by default) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill_group(self) -> None:
        """``kill -9`` the master and every worker at once (a crash, no cleanup)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        """An HTTP client bound to this server."""
        return httpx.Client(base_url=self.url, timeout=30)


class TestClock:
    """A test clock file (AUTHGATE_TEST_CLOCK_FILE): real servers' time, frozen, moved by tests.

    Frozen, so values computed from time (``Retry-After``) do not depend on how fast the
    machine runs the test.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = float(int(time.time()))
        self.set(self.now)

    def set(self, now: float) -> None:
        """Stop every server using this file at epoch time ``now``."""
        from authgate.clock import write_test_clock

        self.now = now
        write_test_clock(self.path, now, frozen=True)

    def advance(self, seconds: float) -> None:
        """Move the servers' time forward by ``seconds``."""
        self.set(self.now + seconds)

    def env(self) -> dict[str, str]:
        """The environment that points a server at this clock."""
        return {"AUTHGATE_TEST_CLOCK_FILE": str(self.path)}


@dataclass
class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port (for fault tests)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (no persistence) and wait until it answers PING."""
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop it (the port stays reserved by no one; tests restart on the same port)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (a test's own keys in a shared Redis)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` loaded as module ``bench_<name>`` (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
