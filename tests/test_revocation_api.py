"""Revocation: logout, RFC 7009 revoke, logout everywhere, password change, account deletion."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authgate import accounts
from authgate.extensions import db
from authgate.models import RefreshToken, TokenFamily, User
from tests.conftest import PASSWORD
from tests.test_refresh import audit_events, greets, login, refresh
from tests.test_tokens import basic, bearer

NEW_PASSWORD = "an entirely different passphrase"


def test_delete_token_revokes_it_and_its_family(client: FlaskClient, user: User) -> None:
    """DELETE /api/token answers 204; the access token and the login's refresh token die."""
    body = login(client)
    other = login(client)
    response = client.delete("/api/token", headers=bearer(body["token"]))
    assert response.status_code == 204
    assert not greets(client, body["token"])
    assert refresh(client, body["refresh_token"]).status_code == 401
    assert greets(client, other["token"])
    assert [e.detail["how"] for e in audit_events("token.revoked")] == ["logout"]


def test_delete_token_accepts_token_as_basic_username(client: FlaskClient, user: User) -> None:
    """The original presentation (token as the Basic username) works for logout too."""
    body = login(client)
    assert client.delete("/api/token", headers=basic(body["token"], "x")).status_code == 204
    assert not greets(client, body["token"])


def test_delete_token_needs_an_access_token(client: FlaskClient, user: User) -> None:
    """A password is not a token to revoke: 401."""
    assert client.delete("/api/token", headers=basic("miguel", PASSWORD)).status_code == 401


def test_revoke_refresh_token_kills_its_family(client: FlaskClient, user: User) -> None:
    """RFC 7009 with a refresh token: 200, and every token of that login is refused."""
    body = login(client)
    response = client.post("/api/token/revoke", json={"token": body["refresh_token"]})
    assert response.status_code == 200
    assert refresh(client, body["refresh_token"]).status_code == 401
    assert not greets(client, body["token"])


def test_revoke_access_token_kills_only_that_token(client: FlaskClient, user: User) -> None:
    """RFC 7009 with an access token: that token dies, its refresh token still works."""
    body = login(client)
    response = client.post(
        "/api/token/revoke", json={"token": body["token"], "token_type_hint": "access_token"}
    )
    assert response.status_code == 200
    assert not greets(client, body["token"])
    renewed = refresh(client, body["refresh_token"])
    assert renewed.status_code == 200
    assert greets(client, renewed.get_json()["token"])


@pytest.mark.parametrize("token", ["", "nonsense", "A" * 43, "a.b.c", "x" * 5000])
def test_revoke_answers_200_for_unknown_tokens(client: FlaskClient, user: User, token: str) -> None:
    """An unknown or malformed token answers 200 like a known one (RFC 7009 2.2)."""
    login(client)
    assert client.post("/api/token/revoke", json={"token": token}).status_code == 200


def test_logout_everywhere_kills_every_token_but_not_the_next_login(
    client: FlaskClient, user: User
) -> None:
    """DELETE /api/users/me/tokens: every token issued until now dies; a new login works."""
    phone, laptop = login(client), login(client)
    response = client.delete("/api/users/me/tokens", headers=bearer(phone["token"]))
    assert response.status_code == 204
    for body in (phone, laptop):
        assert not greets(client, body["token"])
        assert refresh(client, body["refresh_token"]).status_code == 401
    fresh = login(client)
    assert greets(client, fresh["token"])
    assert refresh(client, fresh["refresh_token"]).status_code == 200
    assert len(audit_events("tokens.revoked_all")) == 1


def test_password_change_keeps_this_session_and_revokes_the_others(
    client: FlaskClient, user: User
) -> None:
    """PUT /api/users/me/password with a token: that login survives, every other dies."""
    mine, other = login(client), login(client)
    response = client.put(
        "/api/users/me/password",
        headers=bearer(mine["token"]),
        json={"password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    assert greets(client, mine["token"])
    assert refresh(client, mine["refresh_token"]).status_code == 200
    assert not greets(client, other["token"])
    assert refresh(client, other["refresh_token"]).status_code == 401
    assert client.get("/api/token", headers=basic("miguel", PASSWORD)).status_code == 401
    assert client.get("/api/token", headers=basic("miguel", NEW_PASSWORD)).status_code == 200
    assert len(audit_events("password.changed")) == 1


def test_password_change_with_password_auth_revokes_every_token(
    client: FlaskClient, user: User
) -> None:
    """Authenticated by password there is no current login to keep: all tokens die."""
    body = login(client)
    response = client.put(
        "/api/users/me/password",
        headers=basic("miguel", PASSWORD),
        json={"password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204
    assert not greets(client, body["token"])


def test_password_change_needs_the_current_password(client: FlaskClient, user: User) -> None:
    """A wrong current password is 401 and changes nothing."""
    body = login(client)
    response = client.put(
        "/api/users/me/password",
        headers=bearer(body["token"]),
        json={"password": "wrong wrong wrong wrong", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 401
    assert client.get("/api/token", headers=basic("miguel", PASSWORD)).status_code == 200
    assert audit_events("login.failed")[-1].detail["reason"] == "wrong_password"


def test_password_change_applies_the_password_policy(client: FlaskClient, user: User) -> None:
    """A too-short new password is a 400 saying why, and no token is revoked."""
    body = login(client)
    response = client.put(
        "/api/users/me/password",
        headers=bearer(body["token"]),
        json={"password": PASSWORD, "new_password": "short"},
    )
    assert response.status_code == 400
    assert "at least" in response.get_json()["detail"]
    assert greets(client, body["token"])


def test_get_me_shows_own_account(client: FlaskClient, user: User) -> None:
    """GET /api/users/me returns id, username and account times."""
    body = login(client)
    me = client.get("/api/users/me", headers=bearer(body["token"])).get_json()
    assert me["id"] == user.id and me["username"] == "miguel"
    assert me["tokens_valid_after"] is None


def test_delete_me_needs_the_password(client: FlaskClient, user: User) -> None:
    """Without the right password the account stays."""
    body = login(client)
    response = client.delete(
        "/api/users/me", headers=bearer(body["token"]), json={"password": "nope nope nope"}
    )
    assert response.status_code == 401
    assert greets(client, body["token"])


def test_delete_me_removes_the_user_and_every_token(client: FlaskClient, user: User) -> None:
    """DELETE /api/users/me: 204, the user is gone, all their tokens and rows with them."""
    body = login(client)
    response = client.delete(
        "/api/users/me", headers=bearer(body["token"]), json={"password": PASSWORD}
    )
    assert response.status_code == 204
    assert not greets(client, body["token"])
    assert refresh(client, body["refresh_token"]).status_code == 401
    assert client.get(f"/api/users/{user.id}").status_code == 404
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(TokenFamily)) == 0
    assert db.session.scalar(select(func.count()).select_from(RefreshToken)) == 0
    assert len(audit_events("user.deleted")) == 1


def test_disabled_user_tokens_stop_at_once_and_stay_dead(client: FlaskClient, user: User) -> None:
    """Disabling refuses every token and login; re-enabling allows logins, not old tokens."""
    body = login(client)
    accounts.set_disabled(user, True)
    assert not greets(client, body["token"])
    assert client.get("/api/token", headers=basic("miguel", PASSWORD)).status_code == 401
    assert client.get("/api/resource", headers=basic("miguel", PASSWORD)).status_code == 401
    accounts.set_disabled(user, False)
    assert not greets(client, body["token"])
    assert greets(client, login(client)["token"])


def test_sessions_list_shows_live_logins(client: FlaskClient, user: User) -> None:
    """GET /api/users/me/sessions lists live families with client, IP and user agent."""
    first = login(client)
    ended = login(client)
    client.delete("/api/token", headers=bearer(ended["token"]))
    response = client.get(
        "/api/users/me/sessions",
        headers={**bearer(first["token"]), "User-Agent": "test-agent/1"},
    )
    [session] = response.get_json()["sessions"]
    assert session["current"] is True
    assert session["client_id"] is None
    assert session["ip"] == "127.0.0.1"
    assert {"id", "created_at", "last_used_at", "expires_at", "user_agent"} <= session.keys()


def test_ending_a_session_kills_its_tokens(client: FlaskClient, user: User) -> None:
    """DELETE /api/users/me/sessions/<id> ends that login only."""
    mine, other = login(client), login(client)
    sessions = client.get("/api/users/me/sessions", headers=bearer(mine["token"])).get_json()
    [target] = [s["id"] for s in sessions["sessions"] if not s["current"]]
    response = client.delete(f"/api/users/me/sessions/{target}", headers=bearer(mine["token"]))
    assert response.status_code == 204
    assert not greets(client, other["token"])
    assert refresh(client, other["refresh_token"]).status_code == 401
    assert greets(client, mine["token"])


def test_cannot_end_another_users_session(client: FlaskClient, user: User) -> None:
    """Another user's session id is a 404, and that session lives on."""
    victim = login(client)
    sid = client.get("/api/users/me/sessions", headers=bearer(victim["token"])).get_json()[
        "sessions"
    ][0]["id"]
    accounts.register("mallory", PASSWORD)
    response = client.delete(f"/api/users/me/sessions/{sid}", headers=basic("mallory", PASSWORD))
    assert response.status_code == 404
    assert greets(client, victim["token"])


@pytest.mark.parametrize("session_id", ["a%00b", "no-such-session", "x" * 300])
def test_unknown_or_malformed_session_id_is_a_404(
    client: FlaskClient, user: User, session_id: str
) -> None:
    """A session id no login can have (a NUL: a 500 on PostgreSQL before) is the same 404
    as an unknown one."""
    response = client.delete(
        f"/api/users/me/sessions/{session_id}", headers=basic("miguel", PASSWORD)
    )
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
