"""One authorization code redeemed by many requests at once, on a real multi-worker server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.oauth_support import ALL_SCOPES, CALLBACK, approve_over_http, create_client, pkce
from tests.support import Server

pytestmark = pytest.mark.server

ATTEMPTS = 8


def test_concurrent_redemptions_of_one_code_yield_one_grant_then_revoke_it(
    start_server: Any,
) -> None:
    """Exactly one of 8 simultaneous redemptions wins; the losers' replay revokes its tokens."""
    server: Server = start_server(
        env={"AUTHGATE_INSECURE_COOKIES": "1", "AUTHGATE_REVOCATION_CACHE_MS": "0"},
        workers=2,
        threads=4,
    )
    assert (
        httpx.post(
            f"{server.url}/api/users", json={"username": "miguel", "password": PASSWORD}
        ).status_code
        == 201
    )
    registration = create_client(
        server,
        "--name",
        "Racer",
        "--redirect-uri",
        CALLBACK,
        "--scope",
        ALL_SCOPES,
        "--type",
        "confidential",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
    )
    client_id, secret = registration["client_id"], registration["client_secret"]
    verifier, challenge = pkce()
    code = approve_over_http(server, client_id, challenge)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }

    def redeem(_: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}/oauth/token", data=form, auth=(client_id, secret), timeout=30
        )

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        responses = list(pool.map(redeem, range(ATTEMPTS)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (ATTEMPTS - 1)
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    winner = next(r.json() for r in responses if r.status_code == 200)
    for token in (winner["access_token"], winner["refresh_token"]):
        answer = httpx.post(
            f"{server.url}/oauth/introspect", data={"token": token}, auth=(client_id, secret)
        )
        assert answer.json() == {"active": False}
