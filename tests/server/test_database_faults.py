"""Database outages on PostgreSQL: a real server behind a TCP proxy the test breaks.

The shared PostgreSQL server keeps running; :class:`tests.faultproxy.FaultProxy` sits
between AuthGate and it and refuses, resets or silently holds connections on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.faultproxy import FaultProxy, fault_proxy
from tests.support import Server, redis_env

pytestmark = [pytest.mark.server, pytest.mark.postgresql]

PASSWORD = "a long enough password"
CONNECT_TIMEOUT = 2
#: A request may try one new connection per pooled one it discards: far below this if no hang.
NO_HANG = 20.0
FAULT_ENV = {
    "AUTHGATE_DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    "AUTHGATE_DB_POOL_TIMEOUT": "2",
    "AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest",
}


@pytest.fixture
def proxy(database_url: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test PostgreSQL."""
    url = make_url(database_url)
    with fault_proxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def proxied(start_server: Callable[..., Server], database_url: str, proxy: FaultProxy) -> Server:
    """A real server (2 workers x 2 threads) whose database connections go through ``proxy``."""
    through = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    env = {**redis_env(database_url), **FAULT_ENV}
    return start_server(
        database_url=through.render_as_string(hide_password=False),
        env=env,
        workers=2,
        threads=2,
    )


def requests_needing_the_database(http: httpx.Client, n: int, refresh: str) -> list[httpx.Response]:
    """Registration, password login and refresh: each reads or writes the database."""
    return [
        http.post("/api/users", json={"username": f"new{n}", "password": PASSWORD}),
        http.post("/api/token", auth=("alice", PASSWORD)),
        http.post("/api/token/refresh", json={"refresh_token": refresh}),
    ]


def assert_unavailable(response: httpx.Response) -> None:
    """A JSON problem 503 with a Retry-After in whole seconds."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["type"]) == (503, "urn:authgate:problem:unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def wait_until_recovered(http: httpx.Client) -> None:
    """Poll a password login until the service answers 200 again (it recovers by itself)."""
    deadline = time.monotonic() + 30
    while http.post("/api/token", auth=("alice", PASSWORD)).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.2)


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_database_outage_answers_503_and_recovers(
    proxied: Server, proxy: FaultProxy, mode: str
) -> None:
    """While the database refuses (or silently holds) connections, every request that needs it
    answers a JSON 503 with Retry-After within the timeouts; /healthz stays 200; once it is
    back, the same server answers normally without a restart."""
    with httpx.Client(base_url=proxied.url, timeout=NO_HANG) as http:
        assert http.post("/api/users", json={"username": "alice", "password": PASSWORD}).is_success
        tokens = http.post("/api/token", auth=("alice", PASSWORD)).json()
        proxy.set_mode(mode)
        # Enough requests for every worker and thread to meet the dead pool.
        for n in range(4):
            for response in requests_needing_the_database(http, n, tokens["refresh_token"]):
                assert_unavailable(response)
        assert http.get("/healthz").status_code == 200
        proxy.set_mode("up")
        wait_until_recovered(http)
        statuses = []
        for n in range(4):
            refreshed = http.post(
                "/api/token/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            tokens = refreshed.json()
            statuses.append(refreshed.status_code)
            statuses.append(
                http.post(
                    "/api/users", json={"username": f"back{n}", "password": PASSWORD}
                ).status_code
            )
            statuses.append(http.post("/api/token", auth=("alice", PASSWORD)).status_code)
        assert statuses == [200, 201, 200] * 4
    log = proxied.log()
    assert "database unavailable" in log
    assert "Traceback" not in log and "unhandled error" not in log


def test_outage_mid_burst_never_answers_500(proxied: Server, proxy: FaultProxy) -> None:
    """Connections reset under a burst of logins: every answer is a 200 or a JSON 503."""
    with httpx.Client(base_url=proxied.url, timeout=NO_HANG) as http:
        http.post("/api/users", json={"username": "alice", "password": PASSWORD})
    seen: list[int] = []
    problems: list[httpx.Response] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=proxied.url, timeout=NO_HANG) as own:
            while not stop.is_set():
                response = own.post("/api/token", auth=("alice", PASSWORD))
                if response.status_code == 503:
                    problems.append(response)
                seen.append(response.status_code)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: seen.count(200) >= 8)
        proxy.set_mode("refuse")
        wait_for(lambda: 503 in seen)
        proxy.set_mode("up")
        after = len(seen)
        wait_for(lambda: seen[after:].count(200) >= 8)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(seen) == {200, 503}, seen
    for response in problems:
        assert_unavailable(response)
    assert "Traceback" not in proxied.log()
