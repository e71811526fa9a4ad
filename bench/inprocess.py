"""In-process measurements behind bench/README.md items 6 to 8 (no server, no network).

Each mode builds the app on a fresh SQLite file (or the empty database given) with the
benchmark's settings and calls it through WSGI, so it times AuthGate's own code; the
machine's noise still applies, so every figure is a median or a best of several
alternating rounds.

    .venv/bin/python bench/inprocess.py token    # /api/resource (Bearer) vs /healthz
    .venv/bin/python bench/inprocess.py writes   # refresh rotation, client credentials
    .venv/bin/python bench/inprocess.py cold     # warm vs right after an argon2 hash
    .venv/bin/python bench/inprocess.py token --database-url postgresql+psycopg://... \
        --redis-url redis://...                  # on an empty PostgreSQL database + Redis
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import AUTHGATE, CREATE_CLIENT, PASSWORD, base_env, basic  # noqa: E402


class App:
    """An AuthGate app on a fresh database, called through WSGI, with one user."""

    def __init__(self, workdir: Path, options: argparse.Namespace) -> None:
        # bench/run.py's server environment (a fresh SQLite file unless a database is given).
        os.environ.update(base_env(options, workdir, 5000))
        subprocess.run([AUTHGATE, "db", "upgrade"], check=True, capture_output=True)
        from authgate import create_app

        self.flask: Flask = create_app()
        self.status = ""
        created = self.call("POST", "/api/users", body={"username": "b", "password": PASSWORD})
        assert self.status.startswith("201"), created
        self.basic = basic("b", PASSWORD)

    def call(
        self,
        method: str,
        path: str,
        authorization: str | None = None,
        body: dict[str, str] | None = None,
        form: str | None = None,
    ) -> bytes:
        """One request through the WSGI app; the answer's body (``self.status`` its status)."""
        data, content_type = b"", ""
        if body is not None:
            data, content_type = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data, content_type = form.encode(), "application/x-www-form-urlencoded"
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:5000",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data),
            "wsgi.errors": sys.stderr,
        }
        if authorization:
            environ["HTTP_AUTHORIZATION"] = authorization

        def start_response(status: str, _headers: Any, _exc: Any = None) -> None:
            self.status = status

        return b"".join(self.flask(environ, start_response))

    def ok(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A request that must answer 2xx; its JSON body."""
        answer = self.call(*args, **kwargs)
        assert self.status[0] == "2", (self.status, answer)
        return dict(json.loads(answer))


def per_call_us(function: Callable[[], object], calls: int) -> float:
    """Microseconds per call of ``function`` over ``calls`` calls."""
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def token(app: App, rounds: int) -> None:
    """Bearer GET /api/resource against the /healthz floor, alternating rounds."""
    bearer = "Bearer " + app.ok("GET", "/api/token", app.basic)["token"]
    floors, tokens = [], []
    for _ in range(rounds):
        floors.append(per_call_us(lambda: app.ok("GET", "/healthz"), 1500))
        tokens.append(per_call_us(lambda: app.ok("GET", "/api/resource", bearer), 1500))
    for label, pick in (("best", min), ("median", statistics.median)):
        floor, protected = pick(floors), pick(tokens)
        print(
            f"{label} of {rounds} x 1,500: /healthz {floor:.1f} us, /api/resource "
            f"{protected:.1f} us, extra {protected - floor:.1f} us, ratio {floor / protected:.3f}"
        )


def writes(app: App, rounds: int) -> None:
    """A refresh rotation and a client-credentials grant: median of rounds of 200."""
    refresh_tokens = [app.ok("GET", "/api/token", app.basic)["refresh_token"] for _ in range(8)]

    slots = itertools.cycle(range(len(refresh_tokens)))

    def rotate() -> None:
        slot = next(slots)
        body = {"refresh_token": refresh_tokens[slot]}
        refresh_tokens[slot] = app.ok("POST", "/api/token/refresh", body=body)["refresh_token"]

    created = subprocess.run(
        [AUTHGATE, *CREATE_CLIENT], check=True, capture_output=True, text=True
    ).stdout
    client = json.loads(created)
    client_auth = basic(client["client_id"], client["client_secret"])
    grant = "grant_type=client_credentials&scope=resource:read"

    def issue() -> None:
        app.ok("POST", "/oauth/token", client_auth, form=grant)

    for label, function in (("refresh rotation", rotate), ("client credentials", issue)):
        per_call_us(function, 50)  # warm up
        times = [per_call_us(function, 200) / 1000 for _ in range(rounds)]
        print(
            f"{label}: median {statistics.median(times):.3f} ms, "
            f"best {min(times):.3f} ms ({rounds} x 200)"
        )


def cold(app: App, rounds: int) -> None:
    """The same work warm, right after an argon2 verification, after a 19 MiB memset."""
    from argon2 import PasswordHasher

    from authgate import audit
    from authgate.passwords import DEFAULT_PARAMETERS

    hasher = PasswordHasher.from_parameters(DEFAULT_PARAMETERS)
    encoded = hasher.hash(PASSWORD)
    block = bytearray(DEFAULT_PARAMETERS.memory_cost * 1024)

    def memset() -> None:
        block[:] = bytes(len(block))

    before: Iterable[tuple[str, Callable[[], object]]] = (
        ("warm", lambda: None),
        ("after an argon2 verification", lambda: hasher.verify(encoded, PASSWORD)),
        (f"after a {len(block) >> 20} MiB memset", memset),
    )
    work = (
        ("audit.record", lambda: audit.record("login.succeeded", user_id=1)),
        ("GET /healthz", lambda: app.ok("GET", "/healthz")),
    )
    with app.flask.test_request_context("/"):
        app.flask.preprocess_request()
        for name, function in work:
            for label, spoil in before:
                times = []
                for _ in range(rounds * 10):
                    spoil()
                    started = time.perf_counter()
                    function()
                    times.append(time.perf_counter() - started)
                print(f"{name} {label}: median {statistics.median(times) * 1000:.3f} ms")


MODES = {"token": token, "writes": writes, "cold": cold}


def main() -> None:
    """Run one mode on a fresh database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds")
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file)")
    parser.add_argument("--redis-url", help="AUTHGATE_REDIS_URL for the app")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="authgate-inprocess-") as tmp:
        MODES[args.mode](App(Path(tmp), args), args.rounds)


if __name__ == "__main__":
    main()
