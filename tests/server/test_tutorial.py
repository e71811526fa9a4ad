"""The original tutorial's curl session, replayed request by request against a real server."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support import Server

TUTORIAL_ENV = {"AUTHGATE_PASSWORD_MIN_LENGTH": "6", "AUTHGATE_PASSWORD_BLOCKLIST": "0"}


def test_tutorial_session_replays_over_http(start_server: Callable[..., Server]) -> None:
    """Register, read, access with password, get a token, access with the token, fail."""
    server = start_server(env=TUTORIAL_ENV)
    with server.client() as http:
        created = http.post("/api/users", json={"username": "miguel", "password": "python"})
        assert created.status_code == 201
        assert created.json() == {"id": 1, "username": "miguel"}
        assert created.headers["Location"] == f"{server.url}/api/users/1"

        assert http.get("/api/users/1").json() == {"id": 1, "username": "miguel"}

        greeting = http.get("/api/resource", auth=("miguel", "python"))
        assert greeting.json() == {"data": "Hello, miguel!"}

        issued = http.get("/api/token", auth=("miguel", "python")).json()
        assert issued["duration"] == 600
        token = issued["token"]

        with_token = http.get("/api/resource", auth=(token, "unused"))
        assert with_token.json() == {"data": "Hello, miguel!"}
        with_bearer = http.get("/api/resource", headers={"Authorization": f"Bearer {token}"})
        assert with_bearer.json() == {"data": "Hello, miguel!"}

        denied = http.get("/api/resource", auth=("miguel", "wrong"))
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"] == 'Basic realm="Authentication Required"'
        assert denied.headers["Content-Type"] == "application/problem+json"
        assert denied.json()["detail"] == "Unauthorized Access"

        again = http.post("/api/users", json={"username": "miguel", "password": "python"})
        assert again.status_code == 409
        missing = http.post("/api/users", json={"username": "susan"})
        assert missing.status_code == 400


def test_token_from_one_worker_is_accepted_by_another(server: Server) -> None:
    """With several gunicorn workers, every worker verifies every token (keys in the DB)."""
    with server.client() as http:
        http.post("/api/users", json={"username": "miguel", "password": "a long enough password"})
        token = http.get("/api/token", auth=("miguel", "a long enough password")).json()["token"]
    for _ in range(10):
        # A fresh connection per request spreads the requests over the workers.
        response = httpx.get(
            f"{server.url}/api/resource", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
