"""Throttling and lockout (ASVS 6.1.1, 6.3.1; NIST SP 800-63B-4): one throttle before any hash.

Real servers move their time with a test clock file instead of sleeping. Without Redis
each worker process counts alone (in-memory storage), so servers whose counts a test
asserts exactly run one worker; the Redis tests run several processes sharing counts.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.support import RedisServer, Server, TestClock

WRONG = "wrong password, but long enough"


def register(http: httpx.Client, username: str, password: str = PASSWORD) -> None:
    """Register a user on a real server."""
    response = http.post("/api/users", json={"username": username, "password": password})
    assert response.status_code == 201, response.text


def login(http: httpx.Client, username: str, password: str) -> httpx.Response:
    """Ask a real server for a token with Basic credentials."""
    return http.get("/api/token", auth=(username, password))


def assert_throttled(response: httpx.Response) -> int:
    """The response is a JSON 429 with an integer Retry-After; return it."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429
    retry_after = int(response.headers["Retry-After"])
    assert body["retry_after"] == retry_after
    return retry_after


def fail_until_throttled(http: httpx.Client, username: str, limit: int = 50) -> list[int]:
    """Send wrong passwords until a 429; return the statuses seen."""
    statuses = []
    for _ in range(limit):
        status = login(http, username, WRONG).status_code
        statuses.append(status)
        if status == 429:
            break
    return statuses


@pytest.mark.server
def test_account_locks_after_five_failures_and_opens_after_retry_after(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """Five wrong passwords get 401, the sixth 429 (Retry-After 30); 30 s on the right one works."""
    server = start_server(env=test_clock.env(), workers=1)
    with server.client() as http:
        register(http, "miguel")
        assert fail_until_throttled(http, "miguel") == [401] * 5 + [429]
        retry_after = assert_throttled(login(http, "miguel", PASSWORD))
        assert retry_after == 30
        test_clock.advance(retry_after)
        assert login(http, "miguel", PASSWORD).status_code == 200
        # The success reset the streak: the next wrong password is checked again.
        assert login(http, "miguel", WRONG).status_code == 401


@pytest.mark.server
def test_wait_doubles_with_each_failure_up_to_one_hour(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """After the free failures the wait goes 30, 60, 120, ... seconds and stops at 3600."""
    server = start_server(env=test_clock.env(), workers=1)
    with server.client() as http:
        register(http, "miguel")
        fail_until_throttled(http, "miguel")
        waits = []
        for _ in range(10):
            retry_after = assert_throttled(login(http, "miguel", WRONG))
            waits.append(retry_after)
            test_clock.advance(retry_after)
            assert login(http, "miguel", WRONG).status_code == 401
        assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


@pytest.mark.server
def test_locked_account_answers_the_same_for_right_and_wrong_password(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """While locked, the correct password gets exactly the answer a wrong one gets."""
    server = start_server(env=test_clock.env(), workers=1)
    with server.client() as http:
        register(http, "miguel")
        fail_until_throttled(http, "miguel")
        right, wrong = login(http, "miguel", PASSWORD), login(http, "miguel", WRONG)
        assert (right.status_code, right.headers["Retry-After"]) == (429, "30")
        assert (wrong.status_code, wrong.headers["Retry-After"]) == (429, "30")
        strip = {"request_id"}
        assert {k: v for k, v in right.json().items() if k not in strip} == {
            k: v for k, v in wrong.json().items() if k not in strip
        }


@pytest.mark.server
def test_unknown_usernames_are_throttled_exactly_like_real_ones(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """A real and an unknown username see the same statuses, bodies and Retry-After values."""
    server = start_server(env=test_clock.env(), workers=1)
    with server.client() as http:
        register(http, "miguel")
        seen: dict[str, list[tuple[int, str | None, str]]] = {}
        for name in ("miguel", "ghost"):
            answers = []
            for step in range(9):
                response = login(http, name, WRONG)
                answers.append(
                    (response.status_code, response.headers.get("Retry-After"), response.text)
                )
                if response.status_code == 429 and step % 2:
                    test_clock.advance(int(response.headers["Retry-After"]))
            seen[name] = answers
        assert seen["miguel"] == seen["ghost"]
        assert [status for status, _, _ in seen["ghost"]].count(429) >= 2


@pytest.mark.server
def test_no_more_than_max_failures_are_ever_checked(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """With the cap at 8, the 9th consecutive failure is never checked, even days later."""
    env = {
        **test_clock.env(),
        "AUTHGATE_RATELIMIT_ACCOUNT_MAX_FAILURES": "8",
        "AUTHGATE_RATELIMIT_ACCOUNT_FREE": "2",
        "AUTHGATE_RATELIMIT_ACCOUNT_WAIT": "1",
        "AUTHGATE_RATELIMIT_ACCOUNT_MAX_WAIT": "1",
    }
    server = start_server(env=env, workers=1)
    with server.client() as http:
        register(http, "miguel")
        checked = 0
        for _ in range(40):
            test_clock.advance(61)  # past every wait and every address/pair window
            status = login(http, "miguel", WRONG).status_code
            checked += status == 401
        assert checked == 8
        test_clock.advance(7 * 86400)
        assert_throttled(login(http, "miguel", PASSWORD))
        # The hard lock is not forever: it ends when the streak is 30 days old.
        test_clock.advance(30 * 86400)
        assert login(http, "miguel", PASSWORD).status_code == 200


@pytest.mark.server
def test_address_limit_counts_failures_across_accounts_and_ignores_spoofed_xff(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """30 failures a minute from one address, any names, then 429; X-Forwarded-For is ignored."""
    server = start_server(env=test_clock.env(), workers=1)  # frozen: one minute window
    with server.client() as http:
        statuses = [login(http, f"user{n}", WRONG).status_code for n in range(30)]
        assert statuses == [401] * 30
        spoofed = http.get(
            "/api/token", auth=("someone-new", WRONG), headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert_throttled(spoofed)


@pytest.mark.server
def test_trusted_proxy_forwarded_address_is_used_and_cannot_be_split(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """Behind a trusted proxy the last X-Forwarded-For hop is the client; forgeries don't split."""
    env = {**test_clock.env(), "AUTHGATE_TRUSTED_PROXIES": "127.0.0.2"}
    server = start_server(env=env, workers=1)
    proxy = httpx.Client(
        base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30
    )
    with proxy, server.client() as direct:
        for n in range(30):
            forged = f"198.51.100.{n}, 203.0.113.7"
            response = proxy.get(
                "/api/token", auth=(f"user{n}", WRONG), headers={"X-Forwarded-For": forged}
            )
            assert response.status_code == 401
        blocked = proxy.get(
            "/api/token", auth=("next", WRONG), headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert_throttled(blocked)
        # Another client behind the same proxy, and a direct client, are not affected.
        other = proxy.get(
            "/api/token", auth=("next", WRONG), headers={"X-Forwarded-For": "203.0.113.8"}
        )
        assert other.status_code == 401
        assert login(direct, "next2", WRONG).status_code == 401


@pytest.mark.server
def test_burst_at_unlock_gets_a_single_check(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """Twelve concurrent guesses the moment a wait ends: one is checked, the rest get 429."""
    server = start_server(env=test_clock.env(), workers=1, threads=8)
    with server.client() as http:
        register(http, "miguel")
        fail_until_throttled(http, "miguel")
        test_clock.advance(30)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: login(http, "miguel", WRONG).status_code, range(12)))
        assert sorted(statuses) == [401] + [429] * 11


@pytest.mark.server
def test_counts_are_shared_by_servers_using_one_redis(
    start_server: Callable[..., Server], redis_url: str, own_redis_prefix: str
) -> None:
    """Failures spread over two servers sharing Redis lock the account on both."""
    env = {"AUTHGATE_REDIS_URL": redis_url, "AUTHGATE_REDIS_PREFIX": own_redis_prefix}
    # Two servers of two workers each: four processes, one count.
    first = start_server(env=env)
    second = start_server(env=env, database_url=first.database_url)
    with first.client() as a, second.client() as b:
        register(a, "miguel")
        statuses = [login((a, b)[n % 2], "miguel", WRONG).status_code for n in range(5)]
        assert statuses == [401] * 5
        assert_throttled(login(a, "miguel", PASSWORD))
        assert_throttled(login(b, "miguel", PASSWORD))
    import redis

    keys = redis.Redis.from_url(redis_url).keys(f"{own_redis_prefix}*")
    assert keys
    assert all(key.decode().startswith(f"{own_redis_prefix}ratelimit:") for key in keys)


@pytest.mark.server
def test_redis_outage_falls_back_to_memory_and_recovers(
    start_server: Callable[..., Server], test_clock: TestClock, tmp_path
) -> None:  # noqa: ANN001
    """With Redis down the throttle works from memory (no 500), and returns to Redis after."""
    import redis

    store = RedisServer(tmp_path).start()
    env = {**test_clock.env(), "AUTHGATE_REDIS_URL": store.url, "AUTHGATE_REDIS_PREFIX": "ag:"}
    server = start_server(env=env, workers=1)
    try:
        with server.client() as http:
            register(http, "miguel")
            store.stop()
            assert fail_until_throttled(http, "miguel") == [401] * 5 + [429]
            assert "falling back to per-process memory" in server.log()
            store = RedisServer(tmp_path, port=store.port).start()
            test_clock.advance(3600)  # past the lock and the health re-check interval
            assert login(http, "ghost", WRONG).status_code == 401
            assert "Redis reachable again" in server.log()
            keys = redis.Redis.from_url(store.url).keys("ag:ratelimit:*")
            assert keys, "the failure after recovery was counted in Redis"
    finally:
        store.stop()


@pytest.mark.server
def test_ratelimit_off_logs_a_warning_and_never_throttles(
    start_server: Callable[..., Server],
) -> None:
    """AUTHGATE_RATELIMIT=0 warns at start and lets 40 wrong passwords through as 401."""
    server = start_server(env={"AUTHGATE_RATELIMIT": "0"})
    with server.client() as http:
        register(http, "miguel")
        assert {login(http, "miguel", WRONG).status_code for _ in range(40)} == {401}
        assert login(http, "miguel", PASSWORD).status_code == 200
    assert "rate limiting is OFF" in server.log()


@pytest.mark.server
def test_registrations_per_address_are_limited(start_server: Callable[..., Server]) -> None:
    """Over AUTHGATE_RATELIMIT_REGISTER, a registration answers 429 before hashing."""
    server = start_server(env={"AUTHGATE_RATELIMIT_REGISTER": "3/hour"}, workers=1)
    with server.client() as http:
        for n in range(3):
            register(http, f"user{n}")
        response = http.post("/api/users", json={"username": "user3", "password": PASSWORD})
        assert_throttled(response)


@pytest.mark.server
def test_basic_auth_on_any_route_is_throttled(
    start_server: Callable[..., Server], test_clock: TestClock
) -> None:
    """Password guesses through /api/resource count against the same account as /api/token."""
    server = start_server(env=test_clock.env(), workers=1)
    with server.client() as http:
        register(http, "miguel")
        for _ in range(5):
            assert http.get("/api/resource", auth=("miguel", WRONG)).status_code == 401
        assert_throttled(http.get("/api/resource", auth=("miguel", PASSWORD)))
        assert_throttled(login(http, "miguel", PASSWORD))


@pytest.mark.server
def test_hashing_is_bounded_per_worker(start_server: Callable[..., Server]) -> None:
    """With one hashing slot and no wait, concurrent logins beyond it get 503 with Retry-After."""
    env = {"AUTHGATE_HASH_MEMORY_MIB": "19", "AUTHGATE_HASH_WAIT_MS": "0"}
    server = start_server(env=env, workers=1, threads=8)
    with server.client() as http:
        register(http, "miguel")

        def one(_: int) -> httpx.Response:
            with server.client() as own:
                return login(own, "miguel", PASSWORD)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(one, range(32)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}
    busy = [r for r in responses if r.status_code == 503]
    assert busy, statuses
    assert all(r.headers["Retry-After"] == "1" for r in busy)
    assert all(r.json()["status"] == 503 for r in busy)


@pytest.mark.server
def test_queued_hashing_waits_instead_of_failing(start_server: Callable[..., Server]) -> None:
    """With one slot and the default wait, 16 concurrent logins all succeed by queueing."""
    server = start_server(env={"AUTHGATE_HASH_MEMORY_MIB": "19"}, workers=1, threads=8)
    with server.client() as http:
        register(http, "miguel")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: login(http, "miguel", PASSWORD).status_code, range(16))
            )
    assert statuses == [200] * 16


@pytest.mark.server
def test_memory_counts_per_worker_are_announced(start_server: Callable[..., Server]) -> None:
    """Several workers without Redis log that each worker counts alone; one worker does not."""
    no_redis = {"AUTHGATE_REDIS_URL": ""}  # the Redis run gives servers one by default
    several = start_server(env=no_redis, workers=2)
    single = start_server(env=no_redis, workers=1)
    assert "counted per worker process (2 workers" in several.log()
    assert "counted per worker process" not in single.log()
