"""``kill -9`` of a whole server (master and workers) during a burst of registrations,
logins and refreshes: after a restart, every answer a client received as a 2xx holds.

SQLite by default, PostgreSQL (+ Redis) on the PostgreSQL pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support import Server

pytestmark = pytest.mark.server

PASSWORD = "a long enough password"
CLIENTS = 8
ENV = {
    "AUTHGATE_ISSUER": "http://authgate.crash",  # the restarted server is the same issuer
    "AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest",
    "AUTHGATE_RATELIMIT_REGISTER": "100000/hour",
    # A refresh in flight at the crash may have committed: its client, holding only the
    # spent token, gets the same successor again within the grace window.
    "AUTHGATE_REFRESH_GRACE_SECONDS": "600",
}


@dataclass
class Acknowledged:
    """What one client was told: users created, and its login's newest pair."""

    users: list[str] = field(default_factory=list)
    refresh_token: str | None = None
    access_token: str | None = None
    refreshes: int = 0


def client_loop(url: str, number: int, seen: Acknowledged, stop: threading.Event) -> None:
    """Register users, log in and refresh, recording only what was answered with a 2xx;
    ends at the first transport error (the crash) or when told to."""
    with httpx.Client(base_url=url, timeout=30) as http:
        try:
            step = 0
            while not stop.is_set():
                name = f"c{number}u{step}"
                step += 1
                if http.post(
                    "/api/users", json={"username": name, "password": PASSWORD}
                ).is_success:
                    seen.users.append(name)
                if seen.refresh_token is None:
                    response = http.post("/api/token", auth=(name, PASSWORD))
                    if response.is_success:
                        seen.refresh_token = response.json()["refresh_token"]
                        seen.access_token = response.json()["token"]
                    continue
                for _ in range(3):
                    response = http.post(
                        "/api/token/refresh", json={"refresh_token": seen.refresh_token}
                    )
                    if response.is_success:
                        seen.refresh_token = response.json()["refresh_token"]
                        seen.access_token = response.json()["token"]
                        seen.refreshes += 1
        except httpx.TransportError:
            return


def test_kill_9_during_a_burst_loses_no_acknowledged_write(
    start_server: Callable[..., Server],
) -> None:
    """8 clients register, log in and refresh against 2 workers x 2 threads; the process
    group is SIGKILLed mid-burst. After a restart every acknowledged user logs in, every
    client's newest refresh token still works (once, or again within the grace window if
    its last refresh committed unseen), and the tables hold no partial rotation."""
    server = start_server(env=ENV, workers=2, threads=2)
    seen = [Acknowledged() for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=client_loop, args=(server.url, n, seen[n], stop))
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while sum(len(s.users) for s in seen) < 40 or sum(s.refreshes for s in seen) < 40:
        assert time.monotonic() < deadline, "the burst made no progress"
        time.sleep(0.05)
    server.kill_group()
    stop.set()
    for thread in threads:
        thread.join()

    restarted = start_server(database_url=server.database_url, env=ENV, workers=2)
    with restarted.client() as http:
        for name in (name for s in seen for name in s.users):
            assert http.post("/api/token", auth=(name, PASSWORD)).status_code == 200, name
        logged_in = [client for client in seen if client.refresh_token is not None]
        assert logged_in
        for client in logged_in:
            response = http.post("/api/token/refresh", json={"refresh_token": client.refresh_token})
            assert response.status_code == 200, response.text
            again = http.post(
                "/api/token/refresh", json={"refresh_token": response.json()["refresh_token"]}
            )
            assert again.status_code == 200, again.text
            resource = http.get(
                "/api/resource", headers={"Authorization": f"Bearer {client.access_token}"}
            )
            assert resource.status_code == 200
    assert_families_consistent(server.database_url)


def assert_families_consistent(database_url: str) -> None:
    """No family was revoked (no reuse detected), each has exactly one unspent refresh token,
    every spent token has exactly one successor, and every user row is complete."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            revoked = db.execute(
                text("SELECT count(*) FROM token_families WHERE revoked_at IS NOT NULL")
            ).scalar()
            assert revoked == 0
            unspent = db.execute(
                text(
                    "SELECT f.id, count(r.id) FROM token_families f LEFT JOIN refresh_tokens r"
                    " ON r.family_id = f.id AND r.spent_at IS NULL GROUP BY f.id"
                )
            ).all()
            assert unspent and all(count == 1 for _, count in unspent), unspent
            orphans = db.execute(
                text(
                    "SELECT count(*) FROM refresh_tokens p WHERE p.spent_at IS NOT NULL AND"
                    " (SELECT count(*) FROM refresh_tokens c WHERE c.parent_id = p.id) <> 1"
                )
            ).scalar()
            assert orphans == 0
            incomplete = db.execute(
                text("SELECT count(*) FROM users WHERE password_hash NOT LIKE '$argon2id$%'")
            ).scalar()
            assert incomplete == 0
    finally:
        engine.dispose()
