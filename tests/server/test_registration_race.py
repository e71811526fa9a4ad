"""Concurrent registrations of one username create exactly one account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import create_engine, text

from tests.support import Server


def test_32_parallel_registrations_make_one_user(start_server: Callable[..., Server]) -> None:
    """Exactly one 201, all others 409, one row in the database (the original made 2 of 16)."""
    server = start_server(env={"AUTHGATE_RATELIMIT": "0"}, workers=4, threads=4)
    body = {"username": "racer", "password": "a long enough password"}

    def register(_: int) -> int:
        return httpx.post(f"{server.url}/api/users", json=body, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = Counter(pool.map(register, range(32)))
    assert statuses == Counter({201: 1, 409: 31})
    engine = create_engine(server.database_url)
    with engine.connect() as connection:
        count = connection.execute(
            text("SELECT count(*) FROM users WHERE username_key = 'racer'")
        ).scalar()
    engine.dispose()
    assert count == 1
