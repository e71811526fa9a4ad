"""The token endpoint and what its tokens open: RFC 9068 access tokens, id_tokens, userinfo,
``/api/resource`` scopes, code single use, client authentication and client credentials."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select

from authgate import clock
from authgate.extensions import db
from authgate.models import AuditEvent, User
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

ISSUER = "http://authgate.test"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Plain-HTTP test client: the session cookie must not be ``Secure``."""
    return {"insecure_cookies": True}


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS."""
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def verify_with_jwks(client: FlaskClient, token: str) -> dict[str, Any]:
    """Verify a JWT with the published JWKS only (as a relying party would); its claims."""
    keyset = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    return jwt.decode(token, keyset, algorithms=["ES256"]).claims


def audit_count(event: str) -> int:
    """How many audit events named ``event`` were recorded."""
    return db.session.scalar(select(func.count()).where(AuditEvent.event == event)) or 0


def test_code_exchange_returns_an_rfc9068_access_token(
    page_client: FlaskClient, user: User
) -> None:
    """The access token is an at+jwt naming the client, the scope, the API audience and user."""
    registration = register()
    body = full_flow(page_client, registration)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["scope"] == "openid profile resource:read"
    token = body["access_token"]
    header = header_of(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = verify_with_jwks(page_client, token)
    assert claims["iss"] == ISSUER and claims["aud"] == ISSUER
    assert claims["client_id"] == registration.client.client_id
    assert claims["sub"] == str(user.id)
    assert claims["scope"] == "openid profile resource:read"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]
    assert claims["sid"]  # the grant: a token family of the lifecycle machinery
    assert audit_count("token.issued") == 1


def test_token_response_is_not_cached(page_client: FlaskClient, user: User) -> None:
    """Token responses carry Cache-Control: no-store (RFC 6749 5.1)."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    response = exchange(page_client, registration, code, verifier)
    assert response.headers["Cache-Control"] == "no-store"


def test_id_token_has_nonce_at_hash_auth_time_and_username(
    page_client: FlaskClient, user: User
) -> None:
    """openid yields an ES256 id_token for the client: nonce, at_hash, auth_time; profile: name."""
    registration = register()
    before = int(clock.timestamp())
    body = full_flow(page_client, registration, nonce="n-0S6_WzA2Mj")
    claims = verify_with_jwks(page_client, body["id_token"])
    assert header_of(body["id_token"])["kid"] == header_of(body["access_token"])["kid"]
    assert claims["iss"] == ISSUER
    assert claims["aud"] == registration.client.client_id
    assert claims["sub"] == str(user.id)
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert before <= claims["auth_time"] <= claims["iat"]
    assert claims["exp"] > claims["iat"]
    assert claims["preferred_username"] == "miguel"


def test_without_profile_the_id_token_names_no_username(
    page_client: FlaskClient, user: User
) -> None:
    """Scope openid alone: sub, but no preferred_username."""
    registration = register()
    body = full_flow(page_client, registration, scope="openid")
    claims = verify_with_jwks(page_client, body["id_token"])
    assert claims["sub"] == str(user.id)
    assert "preferred_username" not in claims


def test_without_openid_there_is_no_id_token(page_client: FlaskClient, user: User) -> None:
    """A plain OAuth request (no openid scope) gets no id_token."""
    registration = register()
    body = full_flow(page_client, registration, scope="resource:read")
    assert "id_token" not in body


def test_reused_nonce_is_refused(page_client: FlaskClient, user: User) -> None:
    """A nonce this client already used is a replayed authentication request."""
    registration = register()
    full_flow(page_client, registration, nonce="same-nonce")
    _, challenge = pkce()
    from tests.oauth_support import authorize_path, redirect_params

    path = authorize_path(registration.client.client_id, challenge, nonce="same-nonce")
    assert redirect_params(page_client.get(path))["error"] == "invalid_request"


def test_userinfo_returns_claims_for_the_token_scope(page_client: FlaskClient, user: User) -> None:
    """userinfo answers sub, and preferred_username with profile."""
    registration = register()
    token = full_flow(page_client, registration)["access_token"]
    response = page_client.get("/oauth/userinfo", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"sub": str(user.id), "preferred_username": "miguel"}
    narrow = full_flow(page_client, register(scope="openid"), scope="openid")["access_token"]
    assert page_client.post("/oauth/userinfo", headers=bearer(narrow)).get_json() == {
        "sub": str(user.id)
    }


def test_userinfo_requires_the_openid_scope(page_client: FlaskClient, user: User) -> None:
    """Without openid, userinfo is 403 insufficient_scope with a Bearer challenge."""
    registration = register()
    token = full_flow(page_client, registration, scope="resource:read")["access_token"]
    response = page_client.get("/oauth/userinfo", headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_userinfo_refuses_first_party_and_forged_tokens(client: FlaskClient, user: User) -> None:
    """A first-party /api/token token or garbage is invalid_token at userinfo."""
    first_party = client.get("/api/token", headers=basic("miguel", PASSWORD)).get_json()["token"]
    for token in (first_party, "not.a.token"):
        response = client.get("/oauth/userinfo", headers=bearer(token))
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_resource_accepts_an_oauth_token_with_the_declared_scope(
    page_client: FlaskClient, user: User
) -> None:
    """/api/resource greets the user behind an OAuth token carrying resource:read."""
    token = full_flow(page_client, register())["access_token"]
    response = page_client.get("/api/resource", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"data": "Hello, miguel!"}


def test_resource_without_the_scope_is_403_insufficient_scope(
    page_client: FlaskClient, user: User
) -> None:
    """An OAuth token without resource:read: 403 and WWW-Authenticate insufficient_scope."""
    token = full_flow(page_client, register(), scope="openid profile")["access_token"]
    response = page_client.get("/api/resource", headers=bearer(token))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge and 'scope="resource:read"' in challenge
    assert response.get_json()["type"] == "urn:authgate:problem:insufficient-scope"


def test_resource_scope_comes_from_configuration(app: Flask, user: User) -> None:
    """The scope /api/resource needs is AUTHGATE_RESOURCE_SCOPE."""
    settings = app.extensions["authgate"].settings
    assert settings.resource_scope == "resource:read"
    assert "resource:read" in settings.scope_catalog


def test_oauth_token_is_never_a_first_party_login(page_client: FlaskClient, user: User) -> None:
    """An OAuth token cannot act as the user elsewhere: not as Basic username, not at /api/token."""
    token = full_flow(page_client, register())["access_token"]
    as_basic = page_client.get("/api/resource", headers=basic(token, "unused"))
    assert as_basic.status_code == 401
    assert page_client.get("/api/token", headers=basic(token, "unused")).status_code == 401
    consents = page_client.get("/api/users/me/consents", headers=bearer(token))
    assert consents.status_code == 401


def test_public_client_redeems_with_pkce_and_no_secret(
    page_client: FlaskClient, user: User
) -> None:
    """A public client authenticates with client_id only; PKCE protects its code."""
    registration = register("public")
    body = full_flow(page_client, registration)
    assert body["access_token"]


def test_wrong_code_verifier_is_refused(page_client: FlaskClient, user: User) -> None:
    """A code_verifier that does not hash to the challenge: invalid_grant."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    other, _ = pkce()
    response = exchange(page_client, registration, code, other)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("client_type", ["public", "confidential"])
def test_missing_code_verifier_is_refused(
    page_client: FlaskClient, user: User, client_type: str
) -> None:
    """Every client must send the code_verifier, confidential ones too (OAuth 2.1)."""
    registration = register(client_type)
    login(page_client)
    _, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    response = exchange(page_client, registration, code, None)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_redirect_uri_must_match_at_the_token_endpoint(
    page_client: FlaskClient, user: User
) -> None:
    """The token request must repeat the exact redirect_uri of the authorization request."""
    registration = register(
        redirect_uris=("http://127.0.0.1:8000/callback", "http://127.0.0.1:8000/other")
    )
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    for wrong in ("http://127.0.0.1:8000/other", None):
        response = exchange(page_client, registration, code, verifier, redirect_uri=wrong)
        assert response.get_json()["error"] == "invalid_grant"


def test_expired_code_is_refused(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code older than AUTHGATE_OAUTH_CODE_TTL is invalid_grant (clock moved, no sleeping)."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 61)
    response = exchange(page_client, registration, code, verifier)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_code_of_another_client_is_refused(page_client: FlaskClient, user: User) -> None:
    """A code is bound to the client it was issued to."""
    victim, thief = register(), register(name="Thief")
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, victim.client.client_id, challenge)["code"]
    response = exchange(page_client, thief, code, verifier)
    assert response.get_json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client_and_audited(
    page_client: FlaskClient, user: User
) -> None:
    """A wrong secret: 401 invalid_client with a Basic challenge, recorded in the audit log."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    response = page_client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": "http://127.0.0.1:8000/callback",
        },
        headers=basic(registration.client.client_id, "wrong-secret"),
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert audit_count("oauth.client.auth_failed") == 1
    assert exchange(page_client, registration, code, verifier).status_code == 200


def test_confidential_client_must_authenticate(page_client: FlaskClient, user: User) -> None:
    """A confidential client presenting only its client_id (method none) is refused."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    response = page_client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": "http://127.0.0.1:8000/callback",
            "client_id": registration.client.client_id,
        },
    )
    assert response.get_json()["error"] == "invalid_client"


def test_client_secret_post_is_accepted(page_client: FlaskClient, user: User) -> None:
    """client_secret_post works as well as client_secret_basic."""
    registration = register()
    login(page_client)
    verifier, challenge = pkce()
    code = get_code(page_client, registration.client.client_id, challenge)["code"]
    response = page_client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": "http://127.0.0.1:8000/callback",
            "client_id": registration.client.client_id,
            "client_secret": registration.client_secret,
        },
    )
    assert response.status_code == 200


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:unknown"])
def test_password_and_implicit_grants_are_unsupported(
    client: FlaskClient, user: User, grant_type: str
) -> None:
    """No password grant, no implicit grant (OAuth 2.1)."""
    registration = register()
    response = client.post(
        "/oauth/token",
        data={"grant_type": grant_type, "username": "miguel", "password": PASSWORD},
        headers=client_auth(registration),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_client_credentials_token_carries_client_id_and_no_user(
    client: FlaskClient, app: Flask
) -> None:
    """A machine token: sub and client_id are the client, scope as asked, no refresh token."""
    registration = register(grants=("client_credentials",), redirect_uris=(), scope="resource:read")
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "resource:read"},
        headers=client_auth(registration),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert "refresh_token" not in body and "id_token" not in body
    claims = verify_with_jwks(client, body["access_token"])
    client_id = registration.client.client_id
    assert claims["client_id"] == claims["sub"] == client_id
    assert claims["scope"] == "resource:read"
    resource = client.get("/api/resource", headers=bearer(body["access_token"]))
    assert resource.get_json() == {"data": "Hello, Photo Printer!"}
    userinfo = client.get("/oauth/userinfo", headers=bearer(body["access_token"]))
    assert userinfo.status_code == 403


def test_client_credentials_needs_registration_for_the_grant(
    client: FlaskClient, app: Flask
) -> None:
    """A client not registered for client_credentials gets unauthorized_client."""
    registration = register()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=client_auth(registration),
    )
    assert response.get_json()["error"] == "unauthorized_client"


def test_client_credentials_scope_outside_registration_is_refused(
    client: FlaskClient, app: Flask
) -> None:
    """Asking for a scope the client is not registered for: invalid_scope."""
    registration = register(grants=("client_credentials",), redirect_uris=(), scope="openid")
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "resource:read"},
        headers=client_auth(registration),
    )
    assert response.get_json()["error"] == "invalid_scope"


def test_metadata_documents_describe_the_server(app: Flask, client: FlaskClient) -> None:
    """RFC 8414 and OpenID discovery documents list S256 only, iss support, ES256, endpoints."""
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

    oauth = client.get("/.well-known/oauth-authorization-server").get_json()
    oidc = client.get("/.well-known/openid-configuration").get_json()
    assert oauth["issuer"] == oidc["issuer"] == ISSUER
    assert oauth["code_challenge_methods_supported"] == ["S256"]
    assert oauth["response_types_supported"] == ["code"]
    assert "implicit" not in oauth["grant_types_supported"]
    assert "password" not in oauth["grant_types_supported"]
    assert oauth["authorization_response_iss_parameter_supported"] is True
    assert oidc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert oidc["userinfo_endpoint"] == f"{ISSUER}/oauth/userinfo"
    assert oauth["scopes_supported"] == ["openid", "profile", "resource:read"]

    # Authlib's validators require https issuers; check everything else against the RFCs.
    def https(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.replace("http://", "https://", 1) if isinstance(v, str) else v
            for k, v in doc.items()
        }

    AuthorizationServerMetadata(https(oauth)).validate(metadata_classes=[IssMetadata])
    provider = OpenIDProviderMetadata(https(oidc))
    for key in provider.REGISTRY_KEYS:
        # Known deviation: ids tokens are ES256 only (OIDC Core 15.1 lists RS256 as MTI).
        if key != "id_token_signing_alg_values_supported":
            object.__getattribute__(provider, f"validate_{key}")()
