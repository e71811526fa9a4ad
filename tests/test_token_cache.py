"""The per-process cache of verified access tokens: it saves the signature check only."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from authgate import clock, revocation, tokens
from authgate.app_state import state
from authgate.errors import InvalidToken, TokenRevoked
from authgate.models import User
from tests.conftest import PASSWORD
from tests.oauth_support import client_auth, register
from tests.test_tokens import basic, bearer


def login(client: FlaskClient) -> str:
    """Log in as miguel; the access token."""
    response = client.post("/api/token", headers=basic("miguel", PASSWORD))
    assert response.status_code == 200
    return response.get_json()["token"]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature joserfc checks from now on."""
    seen: list[str] = []
    real = tokens.jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", counting)
    return seen


def test_a_repeated_token_is_verified_once(
    app: Flask, client: FlaskClient, user: User, decodes: list[str]
) -> None:
    token = login(client)
    state().verified_tokens.clear()
    for _ in range(3):
        assert client.get("/api/resource", headers=bearer(token)).status_code == 200
    assert decodes == [token]


def test_entries_are_keyed_by_digest_not_by_token(
    app: Flask, client: FlaskClient, user: User
) -> None:
    token = login(client)
    tokens.verify_access_token(token)
    cache = state().verified_tokens
    assert len(cache) >= 1
    assert token not in cache._entries
    assert cache.get(tokens._digest(token)) is not None


def test_a_cached_token_still_expires(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = login(client)
    claims = tokens.verify_access_token(token)
    assert state().verified_tokens.get(tokens._digest(token)) is not None
    monkeypatch.setattr(clock, "timestamp", lambda *_: float(claims["exp"]))
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(token)


def test_a_cached_token_is_still_checked_for_revocation(
    app: Flask, client: FlaskClient, user: User
) -> None:
    token = login(client)
    claims = tokens.verify_access_token(token)
    revocation.deny_token(claims["jti"], claims["exp"])
    with pytest.raises(TokenRevoked):
        tokens.verify_access_token(token)
    assert client.get("/api/resource", headers=bearer(token)).status_code == 401


def test_a_cached_token_of_a_key_no_longer_published_is_refused(
    app: Flask, client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = login(client)
    tokens.verify_access_token(token)
    monkeypatch.setattr(tokens.keys, "is_published", lambda kid, cache=None: False)
    monkeypatch.setattr(tokens.keys, "verification_keys", lambda kid, cache=None: KeySet([]))
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(token)


def test_the_cache_is_bounded_and_can_be_switched_off() -> None:
    cache = tokens.VerifiedTokens(2)
    far = {"exp": 4_000_000_000}
    for n in range(5):
        cache.put(bytes([n]), tokens.Verified({}, far, "k"))
    assert len(cache) == 2
    off = tokens.VerifiedTokens(0)
    off.put(b"x", tokens.Verified({}, far, "k"))
    assert off.get(b"x") is None
    expired = tokens.VerifiedTokens(10)
    expired.put(b"y", tokens.Verified({}, {"exp": 1}, "k"))
    assert expired.get(b"y") is None


@pytest.mark.parametrize("settings_overrides", [{"token_cache_size": 0}])
def test_without_the_cache_every_request_checks_the_signature(
    app: Flask, client: FlaskClient, user: User, decodes: list[str]
) -> None:
    token = login(client)
    for _ in range(2):
        assert client.get("/api/resource", headers=bearer(token)).status_code == 200
    assert decodes.count(token) >= 2


def _forged_oauth_token(real: str) -> str:
    """``real``'s header and claims as an OAuth client's token, signed with another key."""
    header = jws.extract_compact(real.encode()).headers()
    claims = json.loads(jws.extract_compact(real.encode()).payload)
    claims.update(client_id="c_forged", scope="resource:read")
    header["typ"] = tokens.DELEGATED_TYPE
    return jwt.encode(header, claims, ECKey.generate_key("P-256"), algorithms=["ES256"])


def test_a_token_is_signature_checked_once_per_request(
    app: Flask, client: FlaskClient, user: User, decodes: list[str]
) -> None:
    """/api/resource tries the first-party check, then the OAuth one: an OAuth client's
    token, forged or genuine, still costs one signature check, not one per path."""
    forged = _forged_oauth_token(login(client))
    response = client.get("/api/resource", headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers.getlist("WWW-Authenticate")[-1].endswith('error="invalid_token"')
    assert decodes == [forged]

    registration = register(grants=("client_credentials",), redirect_uris=(), scope="resource:read")
    grant = {"grant_type": "client_credentials", "scope": "resource:read"}
    issued = client.post("/oauth/token", data=grant, headers=client_auth(registration))
    genuine = issued.get_json()["access_token"]
    state().verified_tokens.clear()
    assert client.get("/api/resource", headers=bearer(genuine)).status_code == 200
    assert decodes == [forged, genuine]
