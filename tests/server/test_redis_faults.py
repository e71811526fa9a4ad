"""Redis outages: two real servers share a throwaway redis-server that the test stops and
restarts on the same port (the shared Redis is never touched).

While Redis is down, throttles count in per-process memory and revocation checks read the
database; when it returns (empty), both go back to it, and the revocations made meanwhile
are copied into it from the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.server.test_lifecycle import (
    SHARED,
    accepted_everywhere,
    assert_flips_within_a_second,
    bearer,
    login,
    register,
    status,
)
from tests.support import RedisServer, Server

pytestmark = pytest.mark.server
WRONG = "wrong password, but long enough"


def wait_for_log(server: Server, text: str, poke: Callable[[], object]) -> None:
    """Call ``poke`` until ``text`` appears in the server's log (30 s at most)."""
    deadline = time.monotonic() + 30
    while text not in server.log():
        assert time.monotonic() < deadline, f"never logged: {text}"
        poke()
        time.sleep(0.2)


def test_redis_outage_falls_back_and_recovers(
    start_server: Callable[..., Server], database_url: str, tmp_path: Path
) -> None:
    """Redis stops: nothing answers 500, a logout on A is enforced on B within 1 s through the
    database, a lockout is counted in memory. Redis returns empty: both servers use it again,
    with the outage's revocations copied in, and the revoked token stays refused."""
    store = RedisServer(tmp_path).start()
    env = {
        **SHARED,
        "AUTHGATE_REDIS_URL": store.url,
        "AUTHGATE_REDIS_PREFIX": "ag:",
        "AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest",
    }
    # One worker each: two processes, and the in-memory lockout count is exact.
    a = start_server(database_url=database_url, env=env, workers=1)
    b = start_server(database_url=database_url, env=env, workers=1)
    try:
        register(a, "alice")
        register(a, "bob")
        first, second = login(a, "alice"), login(a, "alice")
        accepted_everywhere(b, second["token"])

        store.stop()
        register(b, "carol")
        assert login(b, "alice")["token"]
        refreshed = httpx.post(
            f"{b.url}/api/token/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert refreshed.status_code == 200
        assert status(a, refreshed.json()["token"]) == 200
        logout = httpx.delete(f"{a.url}/api/token", headers=bearer(second["token"]))
        assert logout.status_code in (200, 204), logout.text
        assert_flips_within_a_second(b, second["token"], time.monotonic())
        assert status(a, second["token"]) == 401
        with a.client() as http:
            statuses = [http.get("/api/token", auth=("bob", WRONG)).status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        assert "falling back to per-process memory" in a.log()
        assert "revocation: Redis unavailable, using the database" in b.log()

        store = RedisServer(tmp_path, port=store.port).start()
        for server in (a, b):
            wait_for_log(server, "Redis reachable again", lambda s=server: login(s, "alice"))
        assert [status(server, second["token"]) for server in (a, b) for _ in range(4)] == [401] * 8
        assert status(b, refreshed.json()["token"]) == 200
        ghost = httpx.get(f"{b.url}/api/token", auth=("ghost", WRONG))
        assert ghost.status_code == 401  # a failure counted in Redis again
        keys = {key.decode() for key in redis.Redis.from_url(store.url).keys("ag:*")}
        assert "ag:rv:synced" in keys, keys
        assert any(key.startswith("ag:rv:") and key != "ag:rv:synced" for key in keys)
        assert any(key.startswith("ag:ratelimit:") for key in keys)
    finally:
        store.stop()
    for server in (a, b):
        assert "Traceback" not in server.log()
