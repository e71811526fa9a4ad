"""Refresh tokens: opaque, stored as digests, rotated, reuse revokes the family."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from authgate import clock, sessions
from authgate.errors import InvalidRefreshToken
from authgate.extensions import db
from authgate.models import AuditEvent, RefreshToken, TokenFamily, User
from tests.conftest import PASSWORD
from tests.test_tokens import basic, bearer

DAY = 86400


def login(client: FlaskClient) -> dict[str, Any]:
    """POST /api/token as miguel; the token response body."""
    response = client.post("/api/token", headers=basic("miguel", PASSWORD))
    assert response.status_code == 200
    return response.get_json()


def refresh(client: FlaskClient, token: str) -> Any:
    """POST /api/token/refresh."""
    return client.post("/api/token/refresh", json={"refresh_token": token})


def greets(client: FlaskClient, access_token: str) -> bool:
    """True when the access token reaches /api/resource."""
    return client.get("/api/resource", headers=bearer(access_token)).status_code == 200


def move_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move authgate.clock to ``seconds`` after the real time (not cumulative)."""
    monkeypatch.setattr(clock, "timestamp", lambda *_: time.time() + seconds)


def audit_events(name: str) -> list[AuditEvent]:
    """Stored audit events called ``name``."""
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_login_returns_opaque_refresh_token_stored_only_as_digest(
    client: FlaskClient, user: User
) -> None:
    """The refresh token is 256 random bits, URL-safe, and only its SHA-256 is stored."""
    body = login(client)
    token = body["refresh_token"]
    assert len(token) == 43 and "." not in token
    assert body["refresh_expires_in"] == 14 * DAY
    rows = db.session.scalars(select(RefreshToken)).all()
    assert [r.digest for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    family = db.session.scalars(select(TokenFamily)).one()
    assert family.user_id == user.id and family.client_id is None
    assert (family.expires_at - family.created_at).total_seconds() == 90 * DAY


def test_refresh_rotates_and_keeps_the_family(client: FlaskClient, user: User) -> None:
    """A refresh answers a new access and refresh token; the access token names the same sid."""
    first = login(client)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token"] != first["token"]
    assert greets(client, second["token"])
    from authgate import tokens

    assert (
        tokens.verify_access_token(second["token"])["sid"]
        == (tokens.verify_access_token(first["token"])["sid"])
    )
    spent = db.session.scalars(select(RefreshToken).where(RefreshToken.parent_id.is_(None))).one()
    assert spent.spent_at is not None


def test_second_refresh_within_grace_window_returns_the_same_refresh_token(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client refreshing twice at once is not logged out: both get the same new token."""
    first = login(client)
    one = refresh(client, first["refresh_token"]).get_json()
    move_clock(monkeypatch, 9)
    two = refresh(client, first["refresh_token"])
    assert two.status_code == 200
    assert two.get_json()["refresh_token"] == one["refresh_token"]
    assert greets(client, one["token"]) and greets(client, two.get_json()["token"])
    assert refresh(client, one["refresh_token"]).status_code == 200
    assert audit_events("refresh.reuse_detected") == []
    assert [e.detail["concurrent"] for e in audit_events("refresh.rotated")] == [
        False,
        True,
        False,
    ]


def test_repeat_after_the_new_token_was_used_is_reuse(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the grace window too: once the new token was used, the old one is a copy."""
    stolen = login(client)
    victim = refresh(client, stolen["refresh_token"]).get_json()
    moved_on = refresh(client, victim["refresh_token"]).get_json()
    move_clock(monkeypatch, 2)
    assert refresh(client, stolen["refresh_token"]).status_code == 401
    assert not greets(client, moved_on["token"])
    assert len(audit_events("refresh.reuse_detected")) == 1


def test_spent_refresh_token_revokes_family(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reuse after the grace window kills every token of the login and is audited."""
    stolen = login(client)
    victim = refresh(client, stolen["refresh_token"]).get_json()
    move_clock(monkeypatch, 11)
    attack = refresh(client, stolen["refresh_token"])
    assert attack.status_code == 401
    assert attack.mimetype == "application/problem+json"
    assert not greets(client, victim["token"])
    assert not greets(client, stolen["token"])
    assert refresh(client, victim["refresh_token"]).status_code == 401
    [event] = audit_events("refresh.reuse_detected")
    family = db.session.scalars(select(TokenFamily)).one()
    assert event.user_id == user.id and event.detail["family_id"] == family.id
    assert family.revoked_reason == "reuse"


def test_reuse_does_not_touch_other_logins(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the family of the reused token dies; the user's other logins go on."""
    other = login(client)
    stolen = login(client)
    refresh(client, stolen["refresh_token"])
    move_clock(monkeypatch, 11)
    assert refresh(client, stolen["refresh_token"]).status_code == 401
    assert greets(client, other["token"])
    assert refresh(client, other["refresh_token"]).status_code == 200


def test_refresh_token_expires_when_idle(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unused for longer than the idle lifetime (14 days), a refresh token is refused."""
    body = login(client)
    move_clock(monkeypatch, 14 * DAY + 1)
    assert refresh(client, body["refresh_token"]).status_code == 401


def test_rotation_restarts_idle_lifetime_until_absolute_expiry(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refreshing every 13 days keeps a login alive, but never beyond 90 days."""
    token = login(client)["refresh_token"]
    for day in range(13, 90, 13):
        move_clock(monkeypatch, day * DAY)
        response = refresh(client, token)
        assert response.status_code == 200, day
        token = response.get_json()["refresh_token"]
        assert response.get_json()["refresh_expires_in"] <= (90 - day) * DAY
    move_clock(monkeypatch, 90 * DAY)
    assert refresh(client, token).status_code == 401


def test_refresh_token_is_never_an_access_token(client: FlaskClient, user: User) -> None:
    """A refresh token does not open /api/resource, as Bearer or as the Basic username."""
    token = login(client)["refresh_token"]
    assert client.get("/api/resource", headers=bearer(token)).status_code == 401
    assert client.get("/api/resource", headers=basic(token, "x")).status_code == 401
    assert client.delete("/api/token", headers=bearer(token)).status_code == 401


def test_access_token_is_never_a_refresh_token(client: FlaskClient, user: User) -> None:
    """An access token presented for refresh is refused."""
    access = login(client)["token"]
    response = refresh(client, access)
    assert response.status_code == 401
    assert response.get_json(force=True)["type"] == "urn:authgate:problem:invalid-refresh-token"


@pytest.mark.parametrize("body", [{}, {"refresh_token": 42}, {"refresh_token": None}])
def test_refresh_without_a_token_string_is_400(
    client: FlaskClient, body: dict[str, object]
) -> None:
    """A missing or non-string refresh_token is invalid input."""
    assert client.post("/api/token/refresh", json=body).status_code == 400


def test_unknown_refresh_token_is_401(client: FlaskClient, user: User) -> None:
    """A well-formed but unknown token is refused with a Bearer challenge."""
    response = refresh(client, "A" * 43)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_refresh_for_disabled_user_is_refused(client: FlaskClient, user: User) -> None:
    """Disabling a user stops their refresh tokens."""
    from authgate import accounts

    token = login(client)["refresh_token"]
    accounts.set_disabled(user, True)
    assert refresh(client, token).status_code == 401


def test_oauth_family_refreshes_only_for_its_client(client: FlaskClient, user: User) -> None:
    """A family started for a client carries its scope and refreshes only for that client."""
    pair = sessions.start(user, client_id="app-1", scope="read")
    from authgate import tokens

    claims = tokens.verify_access_token(pair.access.token)
    assert claims["client_id"] == "app-1" and claims["scope"] == "read"
    with pytest.raises(InvalidRefreshToken):
        sessions.rotate(pair.refresh_token)
    rotated = sessions.rotate(pair.refresh_token, client_id="app-1")
    assert rotated.family_id == pair.family_id


def test_rotation_updates_the_loaded_rows(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation writes with Core statements, and the session keeps objects after a
    commit: the spent token and its family, loaded before, still read the new values."""
    pair = sessions.start(user)
    row = db.session.scalar(
        select(RefreshToken).where(RefreshToken.digest == sessions.digest(pair.refresh_token))
    )
    assert row is not None and row.spent_at is None
    family = row.family
    used_before = family.last_used_at
    move_clock(monkeypatch, 60)
    sessions.rotate(pair.refresh_token, ip="203.0.113.9")
    assert row.spent_at is not None
    assert family.last_used_at > used_before
    assert family.ip == "203.0.113.9"
