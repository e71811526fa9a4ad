"""The authorization-code + PKCE flow end to end against a real server.

The person's part (login, consent) happens in real headless Chromium (Debian's, driven by
Playwright); the client's part is Authlib's ``OAuth2Session`` (requests flavour). A
screenshot of every page lands in ``test-artifacts/``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749 import MismatchingStateException
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import PASSWORD
from tests.oauth_support import create_client
from tests.support import Server, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCOPE = "openid profile resource:read"

pytestmark = pytest.mark.server


@pytest.fixture
def oauth_server(start_server: Any) -> Server:
    """A real AuthGate over plain HTTP on loopback, with the user miguel registered."""
    # Revocation cache 0: every worker sees a revocation at once, so the flow can assert
    # right after revoking (propagation within 1 s is the lifecycle tests' subject).
    server = start_server(
        env={"AUTHGATE_INSECURE_COOKIES": "1", "AUTHGATE_REVOCATION_CACHE_MS": "0"}
    )
    response = httpx.post(
        f"{server.url}/api/users", json={"username": "miguel", "password": PASSWORD}
    )
    assert response.status_code == 201
    return server


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium (never a downloaded browser)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def session_for(server: Server, registration: dict[str, Any], callback: str) -> OAuth2Session:
    """Authlib's client session, configured from the server's discovery document."""
    metadata = httpx.get(f"{server.url}/.well-known/openid-configuration").json()
    return OAuth2Session(
        client_id=registration["client_id"],
        client_secret=registration.get("client_secret"),
        scope=SCOPE,
        redirect_uri=callback,
        code_challenge_method="S256",
        token_endpoint=metadata["token_endpoint"],
        token_endpoint_auth_method=(
            "client_secret_basic" if "client_secret" in registration else "none"
        ),
    )


def shot(page: Page, name: str) -> None:
    """Keep a screenshot of the current page as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"oauth-{name}.png"), full_page=True)


def person_decides(browser: Browser, url: str, callback: str, decision: str, prefix: str) -> str:
    """In Chromium: open ``url``, log in, press Allow or Deny; the callback URL reached."""
    page = browser.new_page()
    page.route(
        f"{callback}**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<h1>Client callback reached</h1>"
        ),
    )
    try:
        page.goto(url)
        page.wait_for_selector("h1:has-text('Sign in')")
        shot(page, f"{prefix}-1-login")
        page.get_by_label("Username").fill("miguel")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("text=wants to:")
        shot(page, f"{prefix}-2-consent")
        assert page.get_by_role("heading").inner_text() == "Photo Printer wants to:"
        page.get_by_role("button", name=decision).click()
        page.wait_for_url(f"{callback}**")
        shot(page, f"{prefix}-3-callback")
        return page.url
    finally:
        page.close()


def verify_id_token(server: Server, token: dict[str, Any], client_id: str, nonce: str) -> dict:
    """Verify the id_token against the published JWKS, as a relying party does."""
    keyset = KeySet.import_key_set(httpx.get(f"{server.url}/.well-known/jwks.json").json())
    claims = jwt.decode(token["id_token"], keyset, algorithms=["ES256"]).claims
    assert claims["iss"] == server.url
    assert claims["aud"] == client_id
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == create_half_hash(token["access_token"], "ES256").decode()
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]
    return claims


def test_code_flow_with_pkce_in_chromium_and_authlib(
    oauth_server: Server, browser: Browser
) -> None:
    """Login, consent, code, token, userinfo, id_token, refresh, revoke, introspect."""
    server = oauth_server
    callback = f"http://127.0.0.1:{free_port()}/callback"
    registration = create_client(
        server,
        "--name",
        "Photo Printer",
        "--redirect-uri",
        callback,
        "--scope",
        SCOPE,
        "--type",
        "confidential",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
    )
    client_id = registration["client_id"]
    session = session_for(server, registration, callback)
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    url, state = session.create_authorization_url(
        f"{server.url}/oauth/authorize", code_verifier=verifier, nonce=nonce
    )
    callback_url = person_decides(browser, url, callback, "Allow", "allow")
    params = parse_qs(urlsplit(callback_url).query)
    assert params["state"] == [state] and params["iss"] == [server.url]

    token = session.fetch_token(
        authorization_response=callback_url, state=state, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer" and token["refresh_token"]
    userinfo = session.get(f"{server.url}/oauth/userinfo").json()
    assert userinfo == {"sub": userinfo["sub"], "preferred_username": "miguel"}
    claims = verify_id_token(server, token, client_id, nonce)
    assert claims["sub"] == userinfo["sub"] and claims["preferred_username"] == "miguel"
    resource = session.get(f"{server.url}/api/resource")
    assert resource.json() == {"data": "Hello, miguel!"}

    first_access, first_refresh = token["access_token"], token["refresh_token"]
    refreshed = session.refresh_token(session.metadata["token_endpoint"])
    assert refreshed["refresh_token"] != first_refresh
    assert refreshed["access_token"] != first_access
    assert session.get(f"{server.url}/api/resource").status_code == 200

    introspect = f"{server.url}/oauth/introspect"
    active = session.introspect_token(introspect, token=refreshed["access_token"]).json()
    assert active["active"] is True and active["client_id"] == client_id
    assert active["scope"] == SCOPE and active["username"] == "miguel"

    revoked = session.revoke_token(
        f"{server.url}/oauth/revoke",
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert revoked.status_code == 200
    for value in (refreshed["access_token"], refreshed["refresh_token"], first_access):
        assert session.introspect_token(introspect, token=value).json() == {"active": False}
    assert session.get(f"{server.url}/api/resource").status_code == 401


def test_denial_in_chromium_returns_access_denied(oauth_server: Server, browser: Browser) -> None:
    """Deny sends the browser back with error=access_denied, the state and iss; no code."""
    server = oauth_server
    callback = f"http://127.0.0.1:{free_port()}/callback"
    registration = create_client(
        server,
        "--name",
        "Photo Printer",
        "--redirect-uri",
        callback,
        "--scope",
        SCOPE,
        "--type",
        "public",
        "--grant",
        "authorization_code",
    )
    session = session_for(server, registration, callback)
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(
        f"{server.url}/oauth/authorize", code_verifier=verifier
    )
    params = parse_qs(urlsplit(person_decides(browser, url, callback, "Deny", "deny")).query)
    assert params["error"] == ["access_denied"] and "code" not in params
    assert params["state"] == [state] and params["iss"] == [server.url]


def test_wrong_redirect_uri_is_an_error_page_in_chromium(
    oauth_server: Server, browser: Browser
) -> None:
    """An unregistered redirect_uri shows an error page; the browser never leaves AuthGate."""
    server = oauth_server
    callback = f"http://127.0.0.1:{free_port()}/callback"
    registration = create_client(
        server,
        "--name",
        "Photo Printer",
        "--redirect-uri",
        callback,
        "--scope",
        SCOPE,
        "--type",
        "public",
        "--grant",
        "authorization_code",
    )
    session = session_for(server, registration, "https://attacker.example/callback")
    url, _ = session.create_authorization_url(
        f"{server.url}/oauth/authorize", code_verifier=secrets.token_urlsafe(48)
    )
    page = browser.new_page()
    try:
        response = page.goto(url)
        assert response is not None and response.status == 400
        assert page.url.startswith(server.url)
        assert "cannot be completed" in page.get_by_role("heading").inner_text()
        shot(page, "error-wrong-redirect-uri")
    finally:
        page.close()


def test_client_library_refuses_a_callback_with_another_state(
    oauth_server: Server, browser: Browser
) -> None:
    """The server returns state verbatim, so a forged callback is caught by the client."""
    server = oauth_server
    callback = f"http://127.0.0.1:{free_port()}/callback"
    registration = create_client(
        server,
        "--name",
        "Photo Printer",
        "--redirect-uri",
        callback,
        "--scope",
        SCOPE,
        "--type",
        "public",
        "--grant",
        "authorization_code",
    )
    session = session_for(server, registration, callback)
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(
        f"{server.url}/oauth/authorize", code_verifier=verifier
    )
    callback_url = person_decides(browser, url, callback, "Allow", "state")
    forged = callback_url.replace(f"state={state}", "state=attacker-state")
    with pytest.raises(MismatchingStateException):
        session.fetch_token(authorization_response=forged, state=state, code_verifier=verifier)
    token = session.fetch_token(
        authorization_response=callback_url, state=state, code_verifier=verifier
    )
    assert token["access_token"]
