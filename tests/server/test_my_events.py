"""GET /api/users/me/events on a real server, and the audit lines in its log."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import PASSWORD
from tests.support import Server
from tests.test_audit_log import FIELDS, WRONG


@pytest.mark.server
def test_users_see_their_own_security_events(start_server: Callable[..., Server]) -> None:
    """GET /api/users/me/events lists the caller's events (Basic or Bearer), never another's."""
    server = start_server(workers=1)
    with server.client() as http:
        for name in ("miguel", "lucy"):
            response = http.post("/api/users", json={"username": name, "password": PASSWORD})
            assert response.status_code == 201
        http.get("/api/token", auth=("miguel", WRONG))
        http.get("/api/token", auth=("lucy", WRONG))
        token = http.get("/api/token", auth=("miguel", PASSWORD)).json()["token"]
        assert http.get("/api/users/me/events").status_code == 401
        mine = http.get("/api/users/me/events", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200
        assert mine.headers["Cache-Control"] == "no-store"
        events = mine.json()["events"]
        assert [e["event"] for e in events] == [
            "token.issued",
            "login.succeeded",
            "login.failed",
            "user.created",
        ]
        assert {e["user_id"] for e in events} == {1}
        assert events[2]["detail"] == {"reason": "wrong_password"}
        assert events[0]["ip"] == "127.0.0.1"
        assert events[0]["user_agent"].startswith("python-httpx")
        via_basic = http.get("/api/users/me/events", auth=("lucy", PASSWORD)).json()["events"]
        assert {e["user_id"] for e in via_basic} == {2}
    log_lines = [line for line in server.log().splitlines() if line.startswith('{"audit"')]
    assert len(log_lines) == 7  # 2 created, 2 failed, succeeded, issued, lucy via Basic
    assert all(json.loads(line)["audit"].keys() == {"id", *FIELDS} for line in log_lines)
    assert token not in server.log()
    assert PASSWORD not in server.log()
