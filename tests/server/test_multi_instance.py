"""Scale-out: two real servers on different ports sharing PostgreSQL and Redis, as two
hosts behind a load balancer would (PostgreSQL pass only)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.server.test_lifecycle import (
    PASSWORD,
    SHARED,
    accepted_everywhere,
    assert_flips_within_a_second,
    bearer,
    login,
    register,
    status,
)
from tests.support import Server

pytestmark = [pytest.mark.server, pytest.mark.postgresql]
WRONG = "wrong password, but long enough"


def test_two_instances_share_users_tokens_revocations_and_throttles(
    start_server: Callable[..., Server], database_url: str, redis_url: str, own_redis_prefix: str
) -> None:
    """Register on A, log in on B; refresh on A with B's token; revoke on B, refused on A
    within 1 s; failures counted on A lock the account on B."""
    env = {**SHARED, "AUTHGATE_REDIS_URL": redis_url, "AUTHGATE_REDIS_PREFIX": own_redis_prefix}
    a = start_server(database_url=database_url, env=env, workers=2, threads=2)
    b = start_server(database_url=database_url, env=env, workers=2, threads=2)
    assert a.port != b.port

    register(a, "alice")
    from_b = login(b, "alice")
    assert status(a, from_b["token"]) == 200

    refreshed = httpx.post(
        f"{a.url}/api/token/refresh", json={"refresh_token": from_b["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert status(b, pair["token"]) == 200

    accepted_everywhere(a, pair["token"])
    revoked_at = time.monotonic()
    logout = httpx.delete(f"{b.url}/api/token", headers=bearer(pair["token"]))
    assert logout.status_code in (200, 204), logout.text
    assert_flips_within_a_second(a, pair["token"], revoked_at)
    again = httpx.post(f"{a.url}/api/token/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401

    register(b, "bob")
    with a.client() as on_a, b.client() as on_b:
        assert [on_a.get("/api/token", auth=("bob", WRONG)).status_code for _ in range(5)] == [
            401
        ] * 5
        locked = on_b.get("/api/token", auth=("bob", PASSWORD))
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["Retry-After"]) >= 1
