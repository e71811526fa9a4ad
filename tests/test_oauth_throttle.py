"""The shared throttle in front of client secrets and of the login page."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authgate import clock
from authgate.extensions import db
from authgate.models import AuditEvent, User
from tests.conftest import PASSWORD
from tests.oauth_support import basic, csrf_token, full_flow, login, register


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


def client_id_only(client: FlaskClient, path: str, client_id: str) -> Any:
    """A request naming a client by ``client_id`` alone (method ``none``)."""
    form = {"client_id": client_id, "token": "abc"}
    if path == "/oauth/token":
        form = {**form, "grant_type": "authorization_code", "code": "abc", "code_verifier": "v"}
    return client.post(path, data=form)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
def test_client_id_alone_does_not_tell_which_clients_exist(
    client: FlaskClient, app: Flask, path: str
) -> None:
    """An unknown id and a confidential client's id get the same 401 invalid_client, audited."""
    confidential = register()
    unknown = client_id_only(client, path, "c_nobody")
    known = client_id_only(client, path, confidential.client.client_id)
    assert unknown.status_code == known.status_code == 401
    assert (
        unknown.get_json()
        == known.get_json()
        == {
            "error": "invalid_client",
            "error_description": "Client authentication failed.",
        }
    )
    assert unknown.headers["WWW-Authenticate"] == known.headers["WWW-Authenticate"]
    failures = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "oauth.client.auth_failed")
    ).all()
    assert [(e.client_id, e.detail["method"]) for e in failures] == [
        ("c_nobody", "none"),
        (confidential.client.client_id, "none"),
    ]


def test_client_id_alone_is_throttled_with_wrong_secrets(client: FlaskClient, app: Flask) -> None:
    """Failed client_id-only requests count for the client like wrong secrets do."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    client_id, secret = registration.client.client_id, registration.client_secret
    assert secret is not None
    for _ in range(5):
        assert client_id_only(client, "/oauth/revoke", client_id).status_code == 401
        assert client_id_only(client, "/oauth/revoke", "c_nobody").status_code == 401
    assert client_id_only(client, "/oauth/revoke", "c_nobody").status_code == 429
    assert machine_token(client, client_id, secret).status_code == 429


def test_public_client_is_not_locked_out_by_failures_on_its_id(
    page_client: FlaskClient, user: User
) -> None:
    """Wrong secrets sent with a public client's id never stop the client itself (method none)."""
    registration = register("public")
    for _ in range(6):
        machine_token(page_client, registration.client.client_id, "guess")
    body = full_flow(page_client, registration)
    revoked = page_client.post(
        "/oauth/revoke",
        data={"token": body["refresh_token"], "client_id": registration.client.client_id},
    )
    assert revoked.status_code == 200


def test_malformed_basic_credentials_are_counted_and_audited(
    client: FlaskClient, app: Flask
) -> None:
    """A Basic header that is not UTF-8 is refused (401), audited and throttled."""
    header = {"Authorization": "Basic " + base64.b64encode(b"c_\xff\xfe:secret").decode()}
    for _ in range(5):
        refused = client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=header
        )
        assert refused.status_code == 401
        assert refused.get_json()["error"] == "invalid_client"
    throttled = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=header
    )
    assert throttled.status_code == 429
    failures = db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "oauth.client.auth_failed")
    ).all()
    assert len(failures) == 5
    assert {(e.client_id, e.detail["reason"]) for e in failures} == {
        (None, "malformed_basic_credentials")
    }
