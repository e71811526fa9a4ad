"""Both WSGI servers of ``authgate serve --server`` serve AuthGate the same way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.support import Server, isolated_database

pytestmark = pytest.mark.server

SERVERS = [("granian", 1), ("gunicorn", 1), ("gunicorn", 2)]


@pytest.fixture(params=SERVERS, ids=lambda p: f"{p[0]}-{p[1]}threads")
def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], Server]]:
    """Start AuthGate under one server (and worker type), stopped at teardown."""
    name, threads = request.param
    started: list[Server] = []
    database = isolated_database(tmp_path)
    url = database.__enter__()

    def start(env: dict[str, str]) -> Server:
        server = Server(url, tmp_path / f"s{len(started)}", env, 2, threads, server=name)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
    database.__exit__(None, None, None)


def test_register_log_in_use_and_revoke_a_token(
    served: Callable[[dict[str, str]], Server],
) -> None:
    server = served({})
    with server.client() as http:
        created = http.post("/api/users", json={"username": "ada", "password": PASSWORD})
        assert created.status_code == 201
        token = http.post("/api/token", auth=("ada", PASSWORD)).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # several requests, whichever worker answers
            answer = http.get("/api/resource", headers=bearer)
            assert answer.status_code == 200
            assert answer.json() == {"data": "Hello, ada!"}
            assert answer.headers["Content-Type"] == "application/json"
        assert http.delete("/api/token", headers=bearer).status_code == 204
        # Every worker refuses it once its revocation view is refreshed (<= 500 ms).
        deadline = time.monotonic() + 5
        refused = http.get("/api/resource", headers=bearer)
        while refused.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            refused = http.get("/api/resource", headers=bearer)
        assert refused.status_code == 401
        assert refused.headers["Content-Type"] == "application/problem+json"
        missing = http.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["status"] == 404


def test_forwarded_headers_are_authgates_business(
    served: Callable[[dict[str, str]], Server],
) -> None:
    """The server never believes X-Forwarded-*; AUTHGATE_TRUSTED_PROXIES (ProxyFix) does."""
    spoof = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    direct = served({})
    with direct.client() as http:
        assert "Strict-Transport-Security" not in http.get("/healthz", headers=spoof).headers
    proxied = served({"AUTHGATE_TRUSTED_PROXIES": "127.0.0.1"})
    with httpx.Client(base_url=proxied.url, timeout=30) as http:
        assert "Strict-Transport-Security" in http.get("/healthz", headers=spoof).headers
