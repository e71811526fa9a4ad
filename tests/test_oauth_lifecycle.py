"""OAuth tokens on the token-lifecycle machinery: refresh rotation and reuse detection,
revocation (RFC 7009), introspection (RFC 7662), code replay, withdrawn consents."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authgate import clients, clock
from authgate.extensions import db
from authgate.models import AuditEvent, AuthorizationCode, User
from authgate.oauth.grants import CODE_RETENTION_SECONDS
from tests.conftest import PASSWORD
from tests.oauth_support import (
    basic,
    bearer,
    client_auth,
    exchange,
    full_flow,
    get_code,
    login,
    pkce,
    register,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Plain-HTTP test client: the session cookie must not be ``Secure``."""
    return {"insecure_cookies": True}


def refresh(client: FlaskClient, registration: Any, token: str, **extra: str) -> Any:
    """A refresh_token grant request, authenticated as ``registration``'s client."""
    form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    if registration.client_secret is None:
        form["client_id"] = registration.client.client_id
        return client.post("/oauth/token", data=form)
    return client.post("/oauth/token", data=form, headers=client_auth(registration))


def introspect(client: FlaskClient, registration: Any, token: str, **extra: str) -> dict:
    """The introspection answer for ``token``, asked by ``registration``'s client."""
    response = client.post(
        "/oauth/introspect", data={"token": token, **extra}, headers=client_auth(registration)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def revoke(client: FlaskClient, registration: Any, token: str, **extra: str) -> Any:
    """A revocation request for ``token`` by ``registration``'s client."""
    return client.post(
        "/oauth/revoke", data={"token": token, **extra}, headers=client_auth(registration)
    )


def audit_count(event: str) -> int:
    """How many audit events named ``event`` were recorded."""
    return db.session.scalar(select(func.count()).where(AuditEvent.event == event)) or 0


def test_refresh_rotates_and_keeps_client_and_scope(page_client: FlaskClient, user: User) -> None:
    """A refresh returns a new access token and a new refresh token for the same grant."""
    registration = register()
    first = full_flow(page_client, registration)
    response = refresh(page_client, registration, first["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == first["scope"]
    claims = introspect(page_client, registration, second["access_token"])
    assert claims["active"] is True
    assert claims["client_id"] == registration.client.client_id
    resource = page_client.get("/api/resource", headers=bearer(second["access_token"]))
    assert resource.status_code == 200


def test_reused_refresh_token_revokes_the_whole_grant(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presenting a spent refresh token (after the grace window) kills every token of the grant."""
    registration = register()
    first = full_flow(page_client, registration)
    second = refresh(page_client, registration, first["refresh_token"]).get_json()
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 11)
    reused = refresh(page_client, registration, first["refresh_token"])
    assert reused.status_code == 400 and reused.get_json()["error"] == "invalid_grant"
    assert refresh(page_client, registration, second["refresh_token"]).status_code == 400
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert introspect(page_client, registration, token) == {"active": False}
    assert (
        page_client.get("/api/resource", headers=bearer(second["access_token"])).status_code == 401
    )
    assert audit_count("refresh.reuse_detected") == 1


def test_refresh_token_of_another_client_is_refused(page_client: FlaskClient, user: User) -> None:
    """A refresh token works only for the client it was issued to."""
    registration, other = register(), register(name="Other")
    token = full_flow(page_client, registration)["refresh_token"]
    response = refresh(page_client, other, token)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert refresh(page_client, registration, token).status_code == 200


def test_refresh_can_narrow_but_not_widen_the_scope(page_client: FlaskClient, user: User) -> None:
    """A refresh may ask for fewer scopes (RFC 6749 6), never more; a refused ask spends nothing."""
    registration = register()
    first = full_flow(page_client, registration, scope="openid resource:read")
    wider = refresh(page_client, registration, first["refresh_token"], scope="openid profile")
    assert wider.get_json()["error"] == "invalid_scope"
    narrower = refresh(page_client, registration, first["refresh_token"], scope="resource:read")
    assert narrower.status_code == 200
    assert narrower.get_json()["scope"] == "resource:read"
    claims = introspect(page_client, registration, narrower.get_json()["access_token"])
    assert claims["scope"] == "resource:read"


def test_public_client_refreshes_with_its_client_id(page_client: FlaskClient, user: User) -> None:
    """A public client refreshes with client_id only; rotation protects it (OAuth 2.1 4.3.1)."""
    registration = register("public")
    first = full_flow(page_client, registration)
    second = refresh(page_client, registration, first["refresh_token"])
    assert second.status_code == 200
    assert second.get_json()["refresh_token"] != first["refresh_token"]


def test_client_without_refresh_grant_gets_no_refresh_token(
    page_client: FlaskClient, user: User
) -> None:
    """Only clients registered for refresh_token receive one."""
    registration = register(grants=("authorization_code",))
    body = full_flow(page_client, registration)
    assert "refresh_token" not in body
    assert introspect(page_client, registration, body["access_token"])["active"] is True


def test_introspection_of_each_token_type(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access, refresh and client-credentials tokens are active; expired, foreign and junk not."""
    registration = register(grants=("authorization_code", "refresh_token", "client_credentials"))
    body = full_flow(page_client, registration)
    client_id = registration.client.client_id
    access = introspect(page_client, registration, body["access_token"])
    assert access["active"] is True and access["token_type"] == "Bearer"
    assert access["client_id"] == client_id and access["sub"] == str(user.id)
    assert access["username"] == "miguel" and access["scope"] == body["scope"]
    assert access["iss"] == "http://authgate.test" and access["exp"] > access["iat"]
    refresh_info = introspect(
        page_client, registration, body["refresh_token"], token_type_hint="refresh_token"
    )
    assert refresh_info["active"] is True and refresh_info["token_type"] == "refresh_token"
    assert refresh_info["client_id"] == client_id and refresh_info["sub"] == str(user.id)
    assert refresh_info["scope"] == body["scope"]
    # The hint is only a hint.
    hinted = introspect(
        page_client, registration, body["refresh_token"], token_type_hint="access_token"
    )
    assert hinted["active"] is True
    machine = page_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "resource:read"},
        headers=client_auth(registration),
    ).get_json()["access_token"]
    machine_info = introspect(page_client, registration, machine)
    assert machine_info["active"] is True and machine_info["sub"] == client_id
    assert "username" not in machine_info
    first_party = page_client.get("/api/token", headers=basic("miguel", PASSWORD)).get_json()
    assert introspect(page_client, registration, first_party["token"]) == {"active": False}
    assert introspect(page_client, registration, "junk") == {"active": False}
    assert introspect(page_client, registration, "a.b.c") == {"active": False}
    other = register(name="Other")
    assert introspect(page_client, other, body["access_token"]) == {"active": False}
    assert introspect(page_client, other, body["refresh_token"]) == {"active": False}
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 601)
    assert introspect(page_client, registration, body["access_token"]) == {"active": False}
    assert introspect(page_client, registration, machine) == {"active": False}


def test_introspection_needs_a_confidential_client(page_client: FlaskClient, user: User) -> None:
    """Public clients and wrong secrets cannot introspect (invalid_client)."""
    registration = register()
    token = full_flow(page_client, registration)["access_token"]
    public = register("public")
    as_public = page_client.post(
        "/oauth/introspect", data={"token": token, "client_id": public.client.client_id}
    )
    assert as_public.status_code in (400, 401)
    assert as_public.get_json()["error"] == "invalid_client"
    wrong = page_client.post(
        "/oauth/introspect",
        data={"token": token},
        headers=basic(registration.client.client_id, "wrong"),
    )
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"


def test_revoking_a_refresh_token_revokes_its_access_tokens(
    page_client: FlaskClient, user: User
) -> None:
    """RFC 7009 2.1: the refresh token and the access tokens of its grant all die."""
    registration = register()
    first = full_flow(page_client, registration)
    second = refresh(page_client, registration, first["refresh_token"]).get_json()
    response = revoke(page_client, registration, second["refresh_token"])
    assert response.status_code == 200
    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert introspect(page_client, registration, token) == {"active": False}
    assert refresh(page_client, registration, second["refresh_token"]).status_code == 400
    assert (
        page_client.get("/api/resource", headers=bearer(second["access_token"])).status_code == 401
    )
    assert (
        page_client.get("/oauth/userinfo", headers=bearer(second["access_token"])).status_code
        == 401
    )


def test_revoking_an_access_token_revokes_only_that_token(
    page_client: FlaskClient, user: User
) -> None:
    """An access token can be revoked alone; the refresh token keeps working."""
    registration = register()
    body = full_flow(page_client, registration)
    assert revoke(page_client, registration, body["access_token"]).status_code == 200
    assert introspect(page_client, registration, body["access_token"]) == {"active": False}
    assert page_client.get("/api/resource", headers=bearer(body["access_token"])).status_code == 401
    assert refresh(page_client, registration, body["refresh_token"]).status_code == 200


def test_revoking_a_machine_token(client: FlaskClient, app: Flask) -> None:
    """A client-credentials token is revoked by its jti."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=client_auth(registration),
    ).get_json()["access_token"]
    assert revoke(client, registration, token).status_code == 200
    assert introspect(client, registration, token) == {"active": False}
    assert client.get("/api/resource", headers=bearer(token)).status_code == 401


def test_revocation_rules(page_client: FlaskClient, user: User) -> None:
    """Unknown tokens: 200 (RFC 7009 2.2); another client's token: refused and kept alive."""
    registration, other = register(), register(name="Other")
    body = full_flow(page_client, registration)
    assert revoke(page_client, registration, "unknown-token").status_code == 200
    foreign = revoke(page_client, other, body["refresh_token"])
    assert foreign.status_code == 400
    assert introspect(page_client, registration, body["refresh_token"])["active"] is True
    unauthenticated = page_client.post("/oauth/revoke", data={"token": body["access_token"]})
    assert unauthenticated.status_code in (400, 401)
    assert introspect(page_client, registration, body["access_token"])["active"] is True


def test_public_client_revokes_its_own_token(page_client: FlaskClient, user: User) -> None:
    """A public client identifies itself with client_id to revoke its refresh token."""
    registration = register("public")
    body = full_flow(page_client, registration)
    response = page_client.post(
        "/oauth/revoke",
        data={"token": body["refresh_token"], "client_id": registration.client.client_id},
    )
    assert response.status_code == 200
    assert refresh(page_client, registration, body["refresh_token"]).status_code == 400


def test_code_replay_fails_and_revokes_what_the_code_bought(
    page_client: FlaskClient, user: User
) -> None:
    """A second use of a code is invalid_grant and revokes the tokens of the first use."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    first = exchange(page_client, registration, code, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    second = exchange(page_client, registration, code, verifier)
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    assert introspect(page_client, registration, tokens["access_token"]) == {"active": False}
    assert refresh(page_client, registration, tokens["refresh_token"]).status_code == 400
    assert (
        page_client.get("/api/resource", headers=bearer(tokens["access_token"])).status_code == 401
    )
    assert audit_count("oauth.code.replayed") == 1


def test_consents_are_listed_and_withdrawn_with_their_tokens(
    page_client: FlaskClient, user: User
) -> None:
    """GET lists consents; DELETE withdraws them and revokes every token issued under them."""
    registration = register()
    body = full_flow(page_client, registration)
    listed = page_client.get("/api/users/me/consents", headers=basic("miguel", PASSWORD))
    consents = listed.get_json()["consents"]
    assert [(c["client_id"], c["client_name"], c["scope"]) for c in consents] == [
        (registration.client.client_id, "Photo Printer", "openid profile resource:read")
    ]
    first_party = page_client.get("/api/token", headers=basic("miguel", PASSWORD)).get_json()
    withdrawn = page_client.delete(
        f"/api/users/me/consents/{consents[0]['id']}", headers=bearer(first_party["token"])
    )
    assert withdrawn.status_code == 204
    assert page_client.get(
        "/api/users/me/consents", headers=basic("miguel", PASSWORD)
    ).get_json() == {"consents": []}
    assert introspect(page_client, registration, body["access_token"]) == {"active": False}
    assert refresh(page_client, registration, body["refresh_token"]).status_code == 400
    assert audit_count("oauth.consent.withdrawn") == 1
    # The next authorization asks again.
    _, challenge = pkce()
    from tests.oauth_support import authorize_path

    page = page_client.get(authorize_path(registration.client.client_id, challenge))
    assert page.status_code == 200 and "wants to:" in page.get_data(as_text=True)


def test_withdrawing_all_consents(page_client: FlaskClient, user: User) -> None:
    """DELETE /api/users/me/consents withdraws every consent; unknown ids are 404."""
    first, second = register(), register(name="Second")
    tokens = [full_flow(page_client, first), full_flow(page_client, second)]
    auth = basic("miguel", PASSWORD)
    assert len(page_client.get("/api/users/me/consents", headers=auth).get_json()["consents"]) == 2
    assert page_client.delete("/api/users/me/consents", headers=auth).status_code == 204
    assert page_client.delete("/api/users/me/consents/999", headers=auth).status_code == 404
    for registration, body in zip((first, second), tokens, strict=True):
        assert introspect(page_client, registration, body["access_token"]) == {"active": False}


def test_deleting_a_client_revokes_its_grants(page_client: FlaskClient, user: User) -> None:
    """After `client delete`, the user's tokens for that client are refused."""
    registration = register()
    body = full_flow(page_client, registration)
    clients.delete_client(registration.client.client_id)
    assert page_client.get("/api/resource", headers=bearer(body["access_token"])).status_code == 401
    assert (
        page_client.get("/oauth/userinfo", headers=bearer(body["access_token"])).status_code == 401
    )


def test_withdrawing_a_consent_revokes_grants_whose_codes_were_purged(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grant older than the code retention (its code row deleted) dies with its consent."""
    registration = register()
    old = full_flow(page_client, registration)
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + CODE_RETENTION_SECONDS + 3600)
    rotated = refresh(page_client, registration, old["refresh_token"]).get_json()
    full_flow(page_client, registration)  # a new code: the old one is purged
    assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 1
    withdrawn = page_client.delete("/api/users/me/consents", headers=basic("miguel", PASSWORD))
    assert withdrawn.status_code == 204
    assert refresh(page_client, registration, rotated["refresh_token"]).status_code == 400
    assert introspect(page_client, registration, rotated["access_token"]) == {"active": False}
    assert (
        page_client.get("/api/resource", headers=bearer(rotated["access_token"])).status_code == 401
    )


def test_withdrawing_one_consent_keeps_grants_only_another_consent_covers(
    page_client: FlaskClient, user: User
) -> None:
    """Withdrawing the consent for "openid" revokes its grant, not the wider consent's grant."""
    registration = register()
    narrow = full_flow(page_client, registration, scope="openid")
    wide = full_flow(page_client, registration)
    auth = basic("miguel", PASSWORD)
    listed = page_client.get("/api/users/me/consents", headers=auth).get_json()["consents"]
    narrow_id = next(c["id"] for c in listed if c["scope"] == "openid")
    withdrawn = page_client.delete(f"/api/users/me/consents/{narrow_id}", headers=auth)
    assert withdrawn.status_code == 204
    assert refresh(page_client, registration, narrow["refresh_token"]).status_code == 400
    assert refresh(page_client, registration, wide["refresh_token"]).status_code == 200


def test_withdrawing_the_wider_consent_keeps_the_narrow_consents_grant(
    page_client: FlaskClient, user: User
) -> None:
    """Withdrawing the wider consent revokes its grant; the grant of the "openid" consent,
    which still stands, lives on."""
    registration = register()
    narrow = full_flow(page_client, registration, scope="openid")
    wide = full_flow(page_client, registration)
    auth = basic("miguel", PASSWORD)
    listed = page_client.get("/api/users/me/consents", headers=auth).get_json()["consents"]
    wide_id = next(c["id"] for c in listed if c["scope"] != "openid")
    assert page_client.delete(f"/api/users/me/consents/{wide_id}", headers=auth).status_code == 204
    assert refresh(page_client, registration, wide["refresh_token"]).status_code == 400
    assert refresh(page_client, registration, narrow["refresh_token"]).status_code == 200
