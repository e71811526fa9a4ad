"""The shared throttle in front of client secrets and of the login page."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authgate import clock
from authgate.extensions import db
from authgate.models import AuditEvent, User
from tests.conftest import PASSWORD
from tests.oauth_support import basic, csrf_token, login, register


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Plain-HTTP test client: the session cookie must not be ``Secure``."""
    return {"insecure_cookies": True}


def audit_count(event: str) -> int:
    """How many audit events named ``event`` were recorded."""
    return db.session.scalar(select(func.count()).where(AuditEvent.event == event)) or 0


def machine_token(client: FlaskClient, client_id: str, secret: str) -> Any:
    """A client-credentials token request with these credentials."""
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )


def test_wrong_client_secrets_are_throttled_like_passwords(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After 5 wrong secrets even the right one waits (429, Retry-After); the wait ends."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    client_id, secret = registration.client.client_id, registration.client_secret
    assert secret is not None
    for _ in range(5):
        assert machine_token(client, client_id, "wrong-secret").status_code == 401
    blocked = machine_token(client, client_id, secret)
    assert blocked.status_code == 429
    assert blocked.get_json()["error"] == "temporarily_unavailable"
    wait = int(blocked.headers["Retry-After"])
    assert wait > 0
    assert audit_count("oauth.client.auth_failed") == 5
    assert audit_count("login.throttled") == 1
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + wait + 1)
    assert machine_token(client, client_id, secret).status_code == 200


def test_unknown_clients_are_counted_too(client: FlaskClient, app: Flask) -> None:
    """Guessing secrets of a client id that does not exist is throttled the same way."""
    for _ in range(5):
        assert machine_token(client, "c_nobody", "guess").status_code == 401
    assert machine_token(client, "c_nobody", "guess").status_code == 429


def test_malformed_client_ids_are_counted_and_audited_without_the_id(
    client: FlaskClient, app: Flask
) -> None:
    """An id no client can have (a NUL) is refused, throttled and audited like an unknown
    client; the audit event does not carry it."""
    for _ in range(5):
        assert machine_token(client, "c_bad\x00id", "guess").status_code == 401
    assert machine_token(client, "c_bad\x00id", "guess").status_code == 429
    failures = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "oauth.client.auth_failed")
    ).all()
    assert len(failures) == 5
    assert {(event.client_id, event.detail["reason"]) for event in failures} == {
        (None, "malformed_client_id")
    }


def test_introspection_secrets_share_the_throttle(client: FlaskClient, app: Flask) -> None:
    """Wrong secrets at /oauth/introspect count for the same client as at /oauth/token."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    client_id, secret = registration.client.client_id, registration.client_secret
    assert secret is not None
    for _ in range(5):
        answer = client.post(
            "/oauth/introspect", data={"token": "x"}, headers=basic(client_id, "wrong")
        )
        assert answer.status_code == 401
    assert machine_token(client, client_id, secret).status_code == 429


def test_failed_page_logins_share_the_password_throttle(
    page_client: FlaskClient, user: User
) -> None:
    """Wrong passwords on the login page lock the account for the API too, and vice versa."""
    for _ in range(5):
        assert login(page_client, password="wrong password, again").status_code == 400
    page = page_client.get("/login")
    refused = page_client.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "username": "miguel",
            "password": PASSWORD,
        },
    )
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "retry after" in refused.get_data(as_text=True)
    assert page_client.get("/api/token", headers=basic("miguel", PASSWORD)).status_code == 429
    assert audit_count("login.failed") == 5
