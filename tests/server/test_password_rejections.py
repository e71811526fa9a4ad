"""Password policy over HTTP: JSON reasons for rejections; the tutorial with the list off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import Server
from tests.test_password_policy import COMMON_AND_LONG


@pytest.mark.server
def test_server_rejects_common_password_with_json_reason(
    start_server: Callable[..., Server],
) -> None:
    """Registration with a listed password answers a JSON 400 whose detail says why."""
    server = start_server(workers=1)
    with server.client() as http:
        response = http.post("/api/users", json={"username": "miguel", "password": COMMON_AND_LONG})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["type"] == "urn:authgate:problem:password-rejected"
        assert "common" in body["detail"]
        for password, reason in (
            ("short", "at least 15"),
            ("miguel and some more words", "username"),
            ("authgate is my password", "service name"),
        ):
            response = http.post("/api/users", json={"username": "miguel", "password": password})
            assert response.status_code == 400
            assert reason in response.json()["detail"]


@pytest.mark.server
def test_server_replays_tutorial_with_blocklist_off(start_server: Callable[..., Server]) -> None:
    """With the list off and minimum 6, the tutorial's miguel/python registers and logs in."""
    env = {"AUTHGATE_PASSWORD_BLOCKLIST": "0", "AUTHGATE_PASSWORD_MIN_LENGTH": "6"}
    server = start_server(env=env, workers=1)
    with server.client() as http:
        response = http.post("/api/users", json={"username": "miguel", "password": "python"})
        assert response.status_code == 201
        assert http.get("/api/resource", auth=("miguel", "python")).json() == {
            "data": "Hello, miguel!"
        }
    assert "blocklist is OFF" in server.log()
