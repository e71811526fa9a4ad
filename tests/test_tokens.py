"""Access tokens: ES256 JWTs, three ways to present them, every forgery refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt as pyjwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import event

from authgate import clock, keys, tokens
from authgate.auth import token_auth
from authgate.extensions import db
from authgate.models import SigningKey, User
from tests.conftest import PASSWORD


def basic(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    """An RFC 6750 Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def get_token(client: FlaskClient) -> str:
    """Log in as miguel and return the access token."""
    response = client.get("/api/token", headers=basic("miguel", PASSWORD))
    assert response.status_code == 200
    return response.get_json()["token"]


def test_token_response_has_original_and_rfc6749_fields(client: FlaskClient, user: User) -> None:
    """The body carries token and duration (the original) plus token_type and expires_in."""
    response = client.post("/api/token", headers=basic("miguel", PASSWORD))
    body = response.get_json()
    assert body["duration"] == 600
    assert body["expires_in"] == 600
    assert body["token_type"] == "Bearer"
    assert response.headers["Cache-Control"] == "no-store"


def test_token_claims(client: FlaskClient, user: User) -> None:
    """The JWT names its key and carries iss, aud, sub, iat, exp and jti."""
    token = get_token(client)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = tokens.verify_access_token(token)
    assert header["alg"] == "ES256"
    assert header["kid"]
    assert claims["iss"] == claims["aud"] == "http://authgate.test"
    assert claims["sub"] == str(user.id)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]


@pytest.mark.parametrize("way", ["bearer", "basic-username"])
def test_token_grants_access(client: FlaskClient, user: User, way: str) -> None:
    """The token works as a Bearer token and as the Basic username with any password."""
    token = get_token(client)
    headers = bearer(token) if way == "bearer" else basic(token, "unused")
    response = client.get("/api/resource", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"data": "Hello, miguel!"}


def test_password_grants_access(client: FlaskClient, user: User) -> None:
    """Basic username:password works on the resource."""
    response = client.get("/api/resource", headers=basic("miguel", PASSWORD))
    assert response.get_json() == {"data": "Hello, miguel!"}


def test_password_request_is_one_transaction(page_client: FlaskClient, user: User) -> None:
    """A Basic request reads its user once and commits its audit event with nothing reloaded
    afterwards (each statement is a round trip on PostgreSQL, paid with cold caches after
    the hash)."""
    statements: list[str] = []

    def executed(*args: object) -> None:
        statements.append(str(args[2]).split()[0].upper())

    def committed(_connection: object) -> None:
        statements.append("COMMIT")

    listeners = (("before_cursor_execute", executed), ("commit", committed))
    for name, listener in listeners:
        event.listen(db.engine, name, listener)
    try:
        response = page_client.get("/api/resource", headers=basic("miguel", PASSWORD))
    finally:
        for name, listener in listeners:
            event.remove(db.engine, name, listener)
    assert response.get_json() == {"data": "Hello, miguel!"}
    assert statements == ["SELECT", "INSERT", "COMMIT"]


@pytest.mark.parametrize("way", ["bearer", "basic-username"])
def test_token_cannot_buy_a_new_token(client: FlaskClient, user: User, way: str) -> None:
    """/api/token accepts only a password, so a stolen token cannot renew itself."""
    token = get_token(client)
    headers = bearer(token) if way == "bearer" else basic(token, "unused")
    assert client.get("/api/token", headers=headers).status_code == 401


def test_missing_credentials_get_basic_challenge(client: FlaskClient) -> None:
    """401 with the original realm and a JSON body."""
    response = client.get("/api/resource")
    assert response.status_code == 401
    assert response.headers.getlist("WWW-Authenticate") == ['Basic realm="Authentication Required"']
    assert response.get_json(force=True)["detail"] == "Unauthorized Access"


def test_bad_bearer_token_gets_bearer_challenge_too(client: FlaskClient) -> None:
    """A failed Bearer token adds an RFC 6750 challenge with error=invalid_token."""
    response = client.get("/api/resource", headers=bearer("a.b.c"))
    challenges = response.headers.getlist("WWW-Authenticate")
    assert response.status_code == 401
    assert 'Basic realm="Authentication Required"' in challenges
    assert any(c.startswith("Bearer") and 'error="invalid_token"' in c for c in challenges)


def _forge(app: Flask, header: dict, claims: dict, key) -> str:  # noqa: ANN001
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def _claims(user: User, **changes: object) -> dict:
    now = int(clock.timestamp())
    claims = {
        "iss": "http://authgate.test",
        "aud": "http://authgate.test",
        "sub": str(user.id),
        "iat": now,
        "exp": now + 600,
        "jti": "forged",
    }
    claims.update(changes)
    return claims


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def assert_refused(client: FlaskClient, token: str) -> None:
    """Both presentations of ``token`` answer 401."""
    assert client.get("/api/resource", headers=bearer(token)).status_code == 401
    assert client.get("/api/resource", headers=basic(token, "x")).status_code == 401


def test_tampered_token_is_refused(client: FlaskClient, user: User) -> None:
    """Changing the payload breaks the signature."""
    header, _, signature = get_token(client).split(".")
    other = _b64(_claims(user, sub="2"))
    assert_refused(client, f"{header}.{other}.{signature}")


def test_expired_token_is_refused(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After exp the token is refused (clock moved, no sleeping)."""
    token = get_token(client)
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 601)
    assert_refused(client, token)


def test_alg_none_is_refused(client: FlaskClient, user: User) -> None:
    """An unsigned token is refused."""
    get_token(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."
    assert_refused(client, token)


def test_hs256_signed_with_public_key_is_refused(client: FlaskClient, user: User) -> None:
    """The classic key-confusion attack: HMAC keyed with the public key."""
    get_token(client)
    row = keys.ensure_active_key()
    public_pem = ECKey.import_key(dict(row.public_jwk)).as_pem(private=False)
    signing_input = f"{_b64({'alg': 'HS256', 'kid': row.kid})}.{_b64(_claims(user))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert_refused(client, f"{signing_input}.{signature}")


def test_unknown_kid_is_refused(client: FlaskClient, user: User) -> None:
    """A token signed by a key we never published is refused."""
    get_token(client)
    stranger = ECKey.generate_key("P-256")
    assert_refused(
        client, _forge(client.application, {"alg": "ES256", "kid": "nope"}, _claims(user), stranger)
    )


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_wrong_issuer_or_audience_is_refused(client: FlaskClient, user: User, claim: str) -> None:
    """A validly signed token for another issuer or audience is refused."""
    get_token(client)
    kid, key = keys.signing_key()
    token = _forge(
        client.application,
        {"alg": "ES256", "kid": kid},
        _claims(user, **{claim: "https://evil.example"}),
        key,
    )
    assert_refused(client, token)


@pytest.mark.parametrize(("ahead", "accepted"), [(4, True), (30, False)])
def test_a_token_from_a_clock_a_little_ahead_is_valid_at_once(
    client: FlaskClient, user: User, ahead: int, accepted: bool
) -> None:
    """Instances' clocks differ a little: a token whose ``iat`` is up to the skew allowance
    (5 s) in this instance's future is valid here at once, and can be revoked here at once;
    one further ahead is refused."""
    get_token(client)
    kid, key = keys.signing_key()
    now = int(clock.timestamp())
    claims = _claims(user, iat=now + ahead, exp=now + ahead + 600, jti=f"ahead-{ahead}")
    token = _forge(client.application, {"alg": "ES256", "kid": kid}, claims, key)
    if not accepted:
        assert_refused(client, token)
        return
    assert client.get("/api/resource", headers=bearer(token)).status_code == 200
    assert client.post("/api/token/revoke", json={"token": token}).status_code == 200
    assert client.get("/api/resource", headers=bearer(token)).status_code == 401


def test_token_of_deleted_user_is_refused(client: FlaskClient, user: User) -> None:
    """A token naming a user who no longer exists grants nothing."""
    from authgate import accounts

    token = get_token(client)
    accounts.delete(user, PASSWORD)
    assert_refused(client, token)


def test_jwks_verifies_tokens_with_a_standard_library(client: FlaskClient, user: User) -> None:
    """PyJWT, knowing only the published JWKS, verifies our token offline."""
    token = get_token(client)
    jwks = client.get("/.well-known/jwks.json").get_json()
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    assert "d" not in jwk
    key = pyjwt.PyJWK(jwk).key
    claims = pyjwt.decode(
        token,
        key,
        algorithms=["ES256"],
        audience="http://authgate.test",
        issuer="http://authgate.test",
    )
    assert claims["sub"] == str(user.id)


def test_private_key_is_encrypted_at_rest(app: Flask) -> None:
    """The stored private key is an encrypted PKCS#8 PEM that needs the derived password."""
    row: SigningKey = keys.ensure_active_key()
    assert row.private_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(ValueError):
        ECKey.import_key(row.private_pem, password="wrong password")
    password = keys.encryption_password(app.config["SECRET_KEY"])
    assert ECKey.import_key(row.private_pem, password=password).as_dict(private=False)["x"]


def test_auth_callbacks_and_views_must_be_synchronous() -> None:
    """Flask-HTTPAuth's per-call coroutine check is skipped (``auth._SyncCallbacks``), so a
    coroutine view or callback is refused loudly instead of returning an un-awaited coroutine."""

    async def view() -> None:
        return None

    def plain() -> None:
        return None

    assert token_auth.ensure_sync(plain) is plain
    with pytest.raises(TypeError, match="synchronous"):
        token_auth.ensure_sync(view)
