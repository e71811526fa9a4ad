"""Every refused access token is an audit event (``token.rejected``): why it was refused,
and whose it was when its signature was good; never the token's text.

``page_client`` gives every request a fresh ``flask.g``, as a server does.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from authgate import audit, clock
from authgate.models import User
from tests.oauth_support import full_flow, register
from tests.test_tokens import basic, bearer, get_token


def rejections() -> list[dict[str, Any]]:
    """The ``token.rejected`` events so far, oldest first."""
    return [row.to_dict() for row in reversed(audit.query(event="token.rejected"))]


def last_jti(client: FlaskClient) -> tuple[str, str]:
    """A new access token of miguel's and its ``jti`` (from the ``token.issued`` event)."""
    token = get_token(client)
    return token, audit.query(event="token.issued", limit=1)[0].detail["jti"]


def test_a_forged_token_is_recorded_without_its_text(
    page_client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """A tampered token: reason ``invalid``, no user or jti taken from its unverified
    claims, the address recorded, and neither the token nor its parts in any log line."""
    caplog.set_level(logging.INFO)
    head, payload, signature = get_token(page_client).split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    response = page_client.get("/api/resource", headers=bearer(forged))
    assert response.status_code == 401
    [row] = rejections()
    assert row["detail"] == {"reason": "invalid"}
    assert (row["user_id"], row["client_id"], row["ip"]) == (None, None, "127.0.0.1")
    audit_lines = [r.getMessage() for r in caplog.records if r.name == "authgate.audit"]
    assert any('"event": "token.rejected"' in line for line in audit_lines)
    assert not [r for r in caplog.records if signature[::-1] in r.getMessage()]


def test_malformed_bearer_and_basic_tokens_are_recorded(
    page_client: FlaskClient, user: User
) -> None:
    """Not a JWT at a required Bearer door, and a password at the token-only
    ``DELETE /api/token``: both ``malformed``."""
    assert page_client.get("/api/users/me", headers=bearer("not-a-jwt")).status_code == 401
    refused = page_client.delete("/api/token", headers=basic("miguel", "a password"))
    assert refused.status_code == 401
    assert [row["detail"] for row in rejections()] == [{"reason": "malformed"}] * 2


def test_an_expired_token_names_its_user_and_jti(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its signature was good, so the event says whose token it was: for a token this
    process verified before (cached) and for one it never saw."""
    cached, cached_jti = last_jti(page_client)
    assert page_client.get("/api/users/me", headers=bearer(cached)).status_code == 200
    unseen, unseen_jti = last_jti(page_client)
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 601)
    for token in (cached, unseen):
        assert page_client.get("/api/users/me", headers=bearer(token)).status_code == 401
    rows = rejections()
    assert [row["detail"] for row in rows] == [
        {"reason": "expired", "jti": cached_jti},
        {"reason": "expired", "jti": unseen_jti},
    ]
    assert {row["user_id"] for row in rows} == {user.id}


def test_a_revoked_token_is_recorded_at_every_door(page_client: FlaskClient, user: User) -> None:
    """After ``DELETE /api/token``, the token as Bearer, as the Basic username of the
    token-only door and as the Basic username where a password may stand (the original
    ``curl -u <token>:unused``): three ``revoked`` events naming it."""
    token, jti = last_jti(page_client)
    assert page_client.delete("/api/token", headers=bearer(token)).status_code == 204
    assert page_client.get("/api/resource", headers=bearer(token)).status_code == 401
    assert page_client.delete("/api/token", headers=basic(token, "unused")).status_code == 401
    assert page_client.get("/api/users/me", headers=basic(token, "unused")).status_code == 401
    rows = rejections()
    assert [row["detail"] for row in rows] == [{"reason": "revoked", "jti": jti}] * 3
    assert {row["user_id"] for row in rows} == {user.id}


def test_what_is_not_a_refused_token_is_not_recorded(page_client: FlaskClient, user: User) -> None:
    """A valid token, no credentials, and a dotted username tried as a token and then as a
    password (its failure is ``login.failed``) leave no ``token.rejected``."""
    token = get_token(page_client)
    assert page_client.get("/api/resource", headers=bearer(token)).status_code == 200
    assert page_client.get("/api/resource").status_code == 401
    assert page_client.get("/api/resource", headers=basic("a.b.c", "wrong")).status_code == 401
    assert rejections() == []
    assert audit.query(event="login.failed", limit=1)[0].detail == {"reason": "unknown_user"}


def test_oauth_doors_record_one_event_per_refusal(page_client: FlaskClient, user: User) -> None:
    """A forged OAuth token at ``/api/resource`` (routed from the first-party check to the
    OAuth one) is one event, not two; a first-party token at ``/oauth/userinfo`` and an
    OAuth token at a first-party door are ``wrong_kind``."""
    oauth_token = full_flow(page_client, register())["access_token"]
    head, payload, signature = oauth_token.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    assert page_client.get("/api/resource", headers=bearer(forged)).status_code == 401
    first_party = get_token(page_client)
    assert page_client.get("/oauth/userinfo", headers=bearer(first_party)).status_code == 401
    assert page_client.get("/api/users/me", headers=bearer(oauth_token)).status_code == 401
    reasons = [row["detail"]["reason"] for row in rejections()]
    assert reasons == ["invalid", "wrong_kind", "wrong_kind"]
    assert rejections()[1]["user_id"] == user.id
