"""Audit log (ASVS 16.2-16.4): every security event a row and one unforgeable JSON log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from authgate import audit
from authgate.cli import main
from authgate.models import User
from tests.conftest import PASSWORD
from tests.support import TEST_SECRET

WRONG = "wrong password, but long enough"
FIELDS = {"at", "event", "user_id", "client_id", "ip", "user_agent", "request_id", "detail"}


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The audit records logged so far, parsed from their JSON lines."""
    lines = [r.getMessage() for r in caplog.records if r.name == "authgate.audit"]
    assert all("\n" not in line and "\r" not in line for line in lines)
    return [json.loads(line)["audit"] for line in lines]


def test_each_event_is_a_row_and_a_json_line(
    client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """Login ok/failed (with reason), throttled and token issued: rows and JSON log lines alike."""
    caplog.set_level(logging.INFO, logger="authgate.audit")
    headers = {"User-Agent": "pytest-agent/1", "X-Request-ID": "req-42"}
    client.get("/api/token", auth=("miguel", PASSWORD), headers=headers)
    client.get("/api/token", auth=("ghost", WRONG), headers=headers)
    for _ in range(6):
        client.get("/api/token", auth=("miguel", WRONG), headers=headers)
    rows = [row.to_dict() for row in reversed(audit.query())]
    events = [row["event"] for row in rows]
    assert events[:4] == ["user.created", "login.succeeded", "token.issued", "login.failed"]
    assert events.count("login.failed") == 6
    assert events[-1] == "login.throttled"
    reasons = [row["detail"]["reason"] for row in rows if row["event"] == "login.failed"]
    assert reasons == ["unknown_user"] + ["wrong_password"] * 5
    for row in rows[1:]:
        assert row.keys() == {"id", *FIELDS}
        assert (row["ip"], row["user_agent"], row["request_id"]) == (
            "127.0.0.1",
            "pytest-agent/1",
            "req-42",
        )
        assert row["at"].endswith("+00:00")
    assert [line["event"] for line in audit_lines(caplog)] == events[1:]
    token_rows = [row for row in rows if row["event"] == "token.issued"]
    assert "jti" in token_rows[0]["detail"]  # tokens named by jti, never their text


def test_user_supplied_newlines_cannot_forge_a_log_line(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A user agent and a detail value carrying newlines stay inside one escaped JSON line."""
    caplog.set_level(logging.INFO, logger="authgate.audit")
    forged = 'x\n{"audit": {"event": "login.succeeded", "user_id": 1}}\r\n'
    # Werkzeug's test client refuses such a header; a raw WSGI environ can carry one.
    with app.test_request_context(environ_overrides={"HTTP_USER_AGENT": forged}):
        audit.record("login.failed", reason=forged)
    [line] = [r.getMessage() for r in caplog.records if r.name == "authgate.audit"]
    assert line.count("\n") == 0
    parsed = json.loads(line)["audit"]
    assert parsed["event"] == "login.failed"
    assert parsed["user_agent"] == forged
    assert parsed["detail"]["reason"] == forged


def test_audit_cli_filters_by_user_event_and_time(
    client: FlaskClient, user: User, database_url: str, tmp_path: Path
) -> None:
    """``authgate audit --user --event --since --json`` prints the matching events as JSON lines."""
    client.get("/api/token", auth=("miguel", WRONG))
    client.get("/api/token", auth=("ghost", WRONG))
    client.get("/api/token", auth=("miguel", PASSWORD))
    env = {
        "AUTHGATE_ENV": "testing",
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
    }
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["audit", "--user", "miguel", "--event", "login.failed", "--since", "1h", "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event"], e["user_id"], e["detail"]) for e in lines] == [
        ("login.failed", user.id, {"reason": "wrong_password"})
    ]
    everything = runner.invoke(main, ["audit"], env=env)
    assert everything.exit_code == 0
    assert len(everything.stdout.splitlines()) == 5  # created, 2 failed, succeeded, issued
    assert everything.stdout.splitlines()[0].split()[1] == "token.issued"
    future = runner.invoke(main, ["audit", "--since", "2999-01-01T00:00:00"], env=env)
    assert future.stdout == ""
    unknown = runner.invoke(main, ["audit", "--user", "nobody"], env=env)
    assert unknown.exit_code == 2
