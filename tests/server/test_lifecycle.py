"""Token lifecycle across real processes: two servers (and the CLI) sharing one database.

SQLite file by default; PostgreSQL + Redis when AUTHGATE_TEST_DATABASE_URL and
AUTHGATE_TEST_REDIS_URL are set (the servers then share Redis under one prefix).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.support import AUTHGATE, TEST_SECRET, Server, redis_env

PASSWORD = "a long enough password"
NEW_PASSWORD = "another long enough password"
#: The issue's promise: a revocation through one process is enforced by every other within 1 s.
PROPAGATION_SECONDS = 1.0
#: Two processes of one deployment share the issuer (by default each names its own port).
SHARED = {"AUTHGATE_ISSUER": "http://authgate.shared"}


def register(server: Server, username: str) -> None:
    """Create a user."""
    response = httpx.post(
        f"{server.url}/api/users", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201


def login(server: Server, username: str, password: str = PASSWORD) -> dict[str, str]:
    """A token pair."""
    response = httpx.post(f"{server.url}/api/token", auth=(username, password))
    assert response.status_code == 200
    return response.json()


def status(server: Server, token: str) -> int:
    """Status of GET /api/resource with the token, on a fresh connection (any worker)."""
    return httpx.get(
        f"{server.url}/api/resource", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def assert_flips_within_a_second(server: Server, token: str, revoked_at: float) -> None:
    """The token is refused by ``server`` within 1 s of ``revoked_at``, and by every worker
    once that second is over."""
    deadline = revoked_at + PROPAGATION_SECONDS
    while status(server, token) == 200:
        assert time.monotonic() < deadline, "revocation not seen within 1 s"
        time.sleep(0.02)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    assert [status(server, token) for _ in range(8)] == [401] * 8


def accepted_everywhere(server: Server, token: str) -> None:
    """Every worker of ``server`` accepts the token now (and has cached that)."""
    assert [status(server, token) for _ in range(6)] == [200] * 6


def test_revocations_through_one_server_reach_the_other_within_a_second(
    start_server: Callable[..., Server], database_url: str, tmp_path: Path
) -> None:
    """Logout, RFC 7009 revoke, ending a session, password change, logout everywhere,
    disabling (through the CLI, a third process) and deletion: each flips on the other server."""
    one = start_server(database_url=database_url, env=SHARED)
    two = start_server(database_url=database_url, env=SHARED)
    for name in ("alice", "bob", "carol", "dave"):
        register(one, name)
    http = httpx.Client(base_url=one.url)

    def revoke(action: Callable[[], httpx.Response], token: str) -> None:
        accepted_everywhere(two, token)
        response = action()
        assert response.status_code in (200, 204), response.text
        assert_flips_within_a_second(two, token, time.monotonic())

    a = login(one, "alice")
    revoke(lambda: http.delete("/api/token", headers=bearer(a["token"])), a["token"])
    b = login(one, "alice")
    revoke(lambda: http.post("/api/token/revoke", json={"token": b["refresh_token"]}), b["token"])
    keep, end = login(one, "alice"), login(one, "alice")
    sid = [s for s in sessions(one, keep["token"]) if not s["current"]][0]["id"]
    revoke(
        lambda: http.delete(f"/api/users/me/sessions/{sid}", headers=bearer(keep["token"])),
        end["token"],
    )
    other = login(one, "bob")
    change = {"password": PASSWORD, "new_password": NEW_PASSWORD}
    mine = login(one, "bob")
    revoke(
        lambda: http.put("/api/users/me/password", headers=bearer(mine["token"]), json=change),
        other["token"],
    )
    assert status(two, mine["token"]) == 200
    c1, c2 = login(one, "carol"), login(one, "carol")
    revoke(lambda: http.delete("/api/users/me/tokens", headers=bearer(c1["token"])), c2["token"])
    assert status(two, c1["token"]) == 401
    d = login(one, "dave")
    revoke(lambda: cli(database_url, tmp_path, "user", "disable", "dave"), d["token"])
    e = login(one, "alice")
    revoke(
        lambda: http.request(
            "DELETE", "/api/users/me", headers=bearer(e["token"]), json={"password": PASSWORD}
        ),
        e["token"],
    )
    http.close()


def bearer(token: str) -> dict[str, str]:
    """An RFC 6750 header."""
    return {"Authorization": f"Bearer {token}"}


def sessions(server: Server, token: str) -> list[dict[str, object]]:
    """GET /api/users/me/sessions."""
    return httpx.get(f"{server.url}/api/users/me/sessions", headers=bearer(token)).json()[
        "sessions"
    ]


def cli(database_url: str, tmp_path: Path, *args: str) -> httpx.Response:
    """Run ``authgate <args>`` on the shared database; a 200 response if it succeeded."""
    env = {
        **os.environ,
        "AUTHGATE_ENV": "testing",
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        **redis_env(database_url),
    }
    done = subprocess.run([AUTHGATE, *args], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return httpx.Response(200)


def test_concurrent_double_refresh_both_succeed_with_the_same_token(
    start_server: Callable[..., Server], database_url: str
) -> None:
    """Refreshes of one token racing through two servers (two workers each) all succeed
    and all get the same new refresh token; the family stays alive."""
    one = start_server(database_url=database_url, env=SHARED)
    two = start_server(database_url=database_url, env=SHARED)
    register(one, "miguel")
    token = login(one, "miguel")["refresh_token"]
    for _ in range(5):
        barrier = threading.Barrier(4)
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=refresh_at_once, args=(s, token, barrier, results))
            for s in (one, two, one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
        new_tokens = {r.json()["refresh_token"] for r in results}
        assert len(new_tokens) == 1
        for response in results:
            assert status(two, response.json()["token"]) == 200
        token = new_tokens.pop()
    assert audit_count(database_url, "refresh.reuse_detected") == 0
    rotations = audit_details(database_url, "refresh.rotated")
    assert sorted(d["concurrent"] for d in rotations) == [False] * 5 + [True] * 15


def refresh_at_once(
    server: Server, token: str, barrier: threading.Barrier, results: list[httpx.Response]
) -> None:
    """Connect, wait for the other racers, then present ``token`` for refresh."""
    with httpx.Client(base_url=server.url) as http:
        http.get("/.well-known/jwks.json")
        barrier.wait()
        results.append(http.post("/api/token/refresh", json={"refresh_token": token}))


def audit_details(database_url: str, event: str) -> list[dict[str, object]]:
    """The ``detail`` of every audit event named ``event`` in the shared database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            query = text("SELECT detail FROM audit_events WHERE event = :event")
            rows = connection.execute(query, {"event": event}).scalars().all()
    finally:
        engine.dispose()
    return [json.loads(d) if isinstance(d, str) else d for d in rows]


def audit_count(database_url: str, event: str) -> int:
    """How many audit events named ``event`` the shared database holds."""
    return len(audit_details(database_url, event))


def test_reuse_attack_kills_the_family(start_server: Callable[..., Server]) -> None:
    """A stolen refresh token replayed after the victim refreshed: the whole login dies."""
    server = start_server(env={"AUTHGATE_REFRESH_GRACE_SECONDS": "0"})
    register(server, "miguel")
    stolen = login(server, "miguel")
    with server.client() as http:
        victim = http.post("/api/token/refresh", json={"refresh_token": stolen["refresh_token"]})
        assert victim.status_code == 200
        attack = http.post("/api/token/refresh", json={"refresh_token": stolen["refresh_token"]})
        assert attack.status_code == 401
        again = http.post(
            "/api/token/refresh", json={"refresh_token": victim.json()["refresh_token"]}
        )
        assert again.status_code == 401
    assert status(server, victim.json()["token"]) == 401
    assert status(server, stolen["token"]) == 401
    assert audit_count(server.database_url, "refresh.reuse_detected") == 1
