"""The pages a person sees and the authorization endpoint: login, consent, redirects, errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import func, select

from authgate import create_app
from authgate.extensions import db
from authgate.models import AuditEvent, AuthorizationCode, Consent, User
from authgate.web.login_session import SessionInterface
from authgate.web.views import safe_next
from tests.conftest import PASSWORD, make_settings
from tests.oauth_support import (
    CALLBACK,
    authorize_path,
    csrf_token,
    decide,
    get_code,
    login,
    pkce,
    redirect_params,
    register,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Plain-HTTP test client: the session cookie must not be ``Secure``."""
    return {"insecure_cookies": True}


def audit_count(event: str) -> int:
    """How many audit events named ``event`` were recorded."""
    return db.session.scalar(select(func.count()).where(AuditEvent.event == event)) or 0


def test_login_page_is_a_plain_form_with_csrf_and_strict_headers(page_client: FlaskClient) -> None:
    """The login page has labelled fields, a CSRF token, no script, CSP and X-Frame-Options."""
    response = page_client.get("/login")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="username">' in html and '<label for="password">' in html
    assert csrf_token(html)
    assert "<script" not in html
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_session_cookie_is_secure_httponly_and_lax_by_default(
    database_url: str, tmp_path: Any
) -> None:
    """Without AUTHGATE_INSECURE_COOKIES the session cookie is Secure, HttpOnly, SameSite=Lax."""
    application = create_app(make_settings(database_url, tmp_path))
    with application.test_client() as browser:
        cookie = browser.get("/login").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_insecure_cookies_setting_drops_only_secure(page_client: FlaskClient) -> None:
    """AUTHGATE_INSECURE_COOKIES=1 keeps HttpOnly and SameSite=Lax."""
    cookie = page_client.get("/login").headers["Set-Cookie"]
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_form_without_csrf_token_is_refused(page_client: FlaskClient, user: User) -> None:
    """A login POST without the CSRF token is refused before any password check."""
    page_client.get("/login")
    response = page_client.post("/login", data={"username": "miguel", "password": PASSWORD})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form was not accepted" in html and "CSRF token is missing" in html
    assert response.headers["X-Frame-Options"] == "DENY"
    assert audit_count("login.succeeded") == 0


def test_failed_page_login_is_audited_like_an_api_login(
    page_client: FlaskClient, user: User
) -> None:
    """A wrong password on the page goes through accounts.authenticate (audit login.failed)."""
    response = login(page_client, password="wrong password here")
    assert response.status_code == 400
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert audit_count("login.failed") == 1
    unknown = login(page_client, username="nobody", password="wrong password here")
    assert "Wrong username or password." in unknown.get_data(as_text=True)
    assert audit_count("login.failed") == 2


def test_anonymous_authorization_goes_through_login_and_back(
    page_client: FlaskClient, user: User
) -> None:
    """Not logged in: authorize redirects to the login page, which returns to authorize."""
    registration = register()
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge)
    response = page_client.get(path)
    assert response.status_code == 303
    login_url = response.headers["Location"]
    assert login_url.startswith("/login?next=")
    page = page_client.get(login_url)
    html = page.get_data(as_text=True)
    assert 'name="next"' in html
    back = page_client.post(
        "/login",
        data={
            "csrf_token": csrf_token(html),
            "username": "miguel",
            "password": PASSWORD,
            "next": parse_qs(urlsplit(login_url).query)["next"][0],
        },
    )
    assert back.status_code == 303
    assert back.headers["Location"] == path
    assert "Photo Printer</span> wants to:" in page_client.get(path).get_data(as_text=True)


def test_only_requests_with_the_session_cookie_build_its_signer(
    app: Flask, page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request without the session cookie (every API call) gets an empty session without
    the signer being built; a logged-in page still finds its session through it."""
    built: list[str] = []
    original = SessionInterface.get_signing_serializer

    def counting(self: SessionInterface, application: Flask) -> Any:
        built.append(request.path)
        return original(self, application)

    monkeypatch.setattr(SessionInterface, "get_signing_serializer", counting)
    with app.test_client() as api:
        assert api.get("/healthz").status_code == 200
        assert api.get("/healthz", headers={"Cookie": "unrelated=1"}).status_code == 200
    assert built == []
    registration = register()
    login(page_client)
    built.clear()
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge)
    assert "Photo Printer</span> wants to:" in page_client.get(path).get_data(as_text=True)
    assert "/oauth/authorize" in built


def test_consent_page_names_the_client_and_each_scope(page_client: FlaskClient, user: User) -> None:
    """The consent page reads "<client> wants to:" and lists every requested scope."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    response = page_client.get(authorize_path(registration.client.client_id, challenge))
    html = response.get_data(as_text=True)
    assert "Photo Printer</span> wants to:" in html
    for text in ("Confirm who you are", "See your username", "Read your protected resource"):
        assert text in html
    assert 'value="allow">Allow</button>' in html and 'value="deny">Deny</button>' in html
    assert response.headers["X-Frame-Options"] == "DENY"


def test_allow_redirects_with_code_state_and_issuer(page_client: FlaskClient, user: User) -> None:
    """Allow: 302 to the exact redirect URI with code, the same state, and iss (RFC 9207)."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, state="s-123 with space")
    params = redirect_params(decide(page_client, path, "allow"))
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == "s-123 with space"
    assert params["iss"] == "http://authgate.test"
    assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 1
    stored = db.session.scalar(select(AuthorizationCode))
    assert stored is not None and stored.code_digest != params["code"]


def test_deny_redirects_with_access_denied(page_client: FlaskClient, user: User) -> None:
    """Deny: access_denied, the state and iss go back to the client; no code, no consent."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, state="deny-state")
    params = redirect_params(decide(page_client, path, "deny"))
    assert params["error"] == "access_denied"
    assert params["state"] == "deny-state"
    assert params["iss"] == "http://authgate.test"
    assert "code" not in params
    assert db.session.scalar(select(func.count()).select_from(Consent)) == 0


def test_consent_post_without_csrf_token_is_refused(page_client: FlaskClient, user: User) -> None:
    """A forged Allow (no CSRF token) is refused and issues no code."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge)
    page_client.get(path)
    response = page_client.post(path, data={"decision": "allow"})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "c_unknown"},
        {"redirect_uri": "http://127.0.0.1:8000/other"},
        {"redirect_uri": "https://attacker.example/callback"},
        {"redirect_uri": CALLBACK + "/"},
        {"redirect_uri": CALLBACK + "?x=1"},
    ],
)
def test_unsafe_errors_are_shown_on_a_page_never_redirected(
    page_client: FlaskClient, user: User, params: dict[str, str]
) -> None:
    """Unknown client or unregistered redirect URI: an error page, never a redirect (4.1.2.1)."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    query = {"client_id": registration.client.client_id, **params}
    response = page_client.get(authorize_path(query.pop("client_id"), challenge, **query))
    assert response.status_code == 400
    assert "Location" not in response.headers
    html = response.get_data(as_text=True)
    assert "This authorization request cannot be completed" in html
    assert "<a " not in html  # not even a link back to the unverified URI


def test_missing_pkce_is_refused(page_client: FlaskClient, user: User) -> None:
    """No code_challenge: invalid_request redirected to the (verified) client, with state."""
    registration = register()
    login(page_client)
    response = page_client.get(authorize_path(registration.client.client_id, None, state="st"))
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]
    assert params["state"] == "st" and params["iss"] == "http://authgate.test"


@pytest.mark.parametrize("method", ["plain", None, "S512"])
def test_plain_or_missing_pkce_method_is_refused(
    page_client: FlaskClient, user: User, method: str | None
) -> None:
    """code_challenge_method plain, absent (which means plain) or unknown: invalid_request."""
    registration = register()
    login(page_client)
    verifier, _ = pkce()
    response = page_client.get(
        authorize_path(
            registration.client.client_id,
            None,
            code_challenge=verifier,
            code_challenge_method=method,  # type: ignore[arg-type]
        )
    )
    assert redirect_params(response)["error"] == "invalid_request"


@pytest.mark.parametrize("scope", ["openid profile", "resource:read"])
@pytest.mark.parametrize("nonce", ["a\x00b", "caf\u00e9", "n" * 256])
def test_malformed_nonce_is_invalid_request(
    page_client: FlaskClient, user: User, nonce: str, scope: str
) -> None:
    """A nonce with a NUL, non-ASCII or over 255 characters: invalid_request back to the
    verified client, with state, and no code stored (a 500 on PostgreSQL before)."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(
        registration.client.client_id, challenge, nonce=nonce, scope=scope, state="st"
    )
    params = redirect_params(page_client.get(path))
    assert params["error"] == "invalid_request"
    assert "nonce" in params["error_description"]
    assert params["state"] == "st" and params["iss"] == "http://authgate.test"
    assert db.session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0


def test_longest_nonce_is_accepted(page_client: FlaskClient, user: User) -> None:
    """A nonce of 255 printable ASCII characters (the stored maximum) gets a code."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    nonce = "~ " * 127 + "n"
    params = get_code(page_client, registration.client.client_id, challenge, nonce=nonce)
    row = db.session.scalar(select(AuthorizationCode))
    assert "code" in params and row is not None and row.nonce == nonce


def test_implicit_response_type_is_refused(page_client: FlaskClient, user: User) -> None:
    """response_type=token (implicit grant) is unsupported_response_type."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, response_type="token")
    assert redirect_params(page_client.get(path))["error"] == "unsupported_response_type"


def test_undeclared_scope_is_refused(page_client: FlaskClient, user: User) -> None:
    """A scope the client is not registered for: invalid_scope back to the client."""
    registration = register(scope="openid")
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, scope="openid profile")
    assert redirect_params(page_client.get(path))["error"] == "invalid_scope"


def test_remembered_consent_skips_the_page(page_client: FlaskClient, user: User) -> None:
    """Once allowed, the same (or a smaller) scope set is granted without asking again."""
    registration = register()
    login(page_client)
    client_id = registration.client.client_id
    _, challenge = pkce()
    get_code(page_client, client_id, challenge)
    again = page_client.get(authorize_path(client_id, challenge))
    assert "code" in redirect_params(again)
    smaller = page_client.get(authorize_path(client_id, challenge, scope="openid"))
    assert "code" in redirect_params(smaller)
    assert db.session.scalar(select(func.count()).select_from(Consent)) == 1


def test_larger_scope_set_asks_again(page_client: FlaskClient, user: User) -> None:
    """A consent covers its own scope set only; asking for more shows the page again."""
    registration = register()
    login(page_client)
    client_id = registration.client.client_id
    _, challenge = pkce()
    get_code(page_client, client_id, challenge, scope="openid")
    response = page_client.get(authorize_path(client_id, challenge))
    assert response.status_code == 200
    assert "wants to:" in response.get_data(as_text=True)


def test_prompt_none_without_consent_is_consent_required(
    page_client: FlaskClient, user: User
) -> None:
    """prompt=none never shows a page: consent_required goes back to the client."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, prompt="none", state="p")
    params = redirect_params(page_client.get(path))
    assert params["error"] == "consent_required" and params["state"] == "p"


def test_prompt_none_without_login_is_login_required(page_client: FlaskClient, user: User) -> None:
    """prompt=none and nobody logged in: login_required goes back to the client."""
    registration = register()
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, prompt="none")
    assert redirect_params(page_client.get(path))["error"] == "login_required"


@pytest.mark.parametrize("params", [{"prompt": "login"}, {"max_age": "0"}])
def test_prompt_login_or_max_age_zero_asks_for_the_password_again(
    page_client: FlaskClient, user: User, params: dict[str, str]
) -> None:
    """prompt=login, and max_age=0 alike, send a logged-in person back to the login page
    once, then give a code."""
    registration = register()
    login(page_client)
    client_id = registration.client.client_id
    _, challenge = pkce()
    get_code(page_client, client_id, challenge)
    path = authorize_path(client_id, challenge, **params)
    response = page_client.get(path)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    login(page_client)
    assert "code" in redirect_params(page_client.get(path))


def test_login_older_than_max_age_is_asked_again_and_id_token_has_auth_time(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login older than max_age (clock moved) sends the person to the login page; a younger
    one does not; the id_token's auth_time is the new login (OIDC Core 3.1.2.1)."""
    from authgate import clock
    from tests.oauth_support import exchange
    from tests.test_oauth_tokens import verify_with_jwks

    registration = register()
    client_id = registration.client.client_id
    start = float(int(clock.timestamp()))  # auth_time is whole seconds
    now = {"t": start}
    monkeypatch.setattr(clock, "timestamp", lambda *_: now["t"])
    login(page_client)
    verifier, challenge = pkce()
    get_code(page_client, client_id, challenge)
    now["t"] = start + 100
    assert "code" in redirect_params(
        page_client.get(authorize_path(client_id, challenge, max_age="100"))
    )
    path = authorize_path(client_id, challenge, max_age="99")
    response = page_client.get(path)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    login(page_client)
    code = redirect_params(page_client.get(path))["code"]
    body = exchange(page_client, registration, code, verifier).get_json()
    assert verify_with_jwks(page_client, body["id_token"])["auth_time"] == int(start + 100)


def test_a_login_no_authorization_followed_does_not_count_as_fresh_later(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login on /login sets a one-use "just typed" flag for the authorization request it
    leads to. Left unused, it must not satisfy max_age or prompt=login minutes later."""
    from authgate import clock

    registration = register()
    client_id = registration.client.client_id
    start = float(int(clock.timestamp()))
    now = {"t": start}
    monkeypatch.setattr(clock, "timestamp", lambda *_: now["t"])
    login(page_client)
    _, challenge = pkce()
    get_code(page_client, client_id, challenge)  # consent remembered; the flag used up
    for params in ({"max_age": "60"}, {"prompt": "login"}):
        login(page_client)  # a login that no authorization request follows
        now["t"] += 1000
        response = page_client.get(authorize_path(client_id, challenge, **params))
        assert response.status_code == 303, params
        assert response.headers["Location"].startswith("/login"), params


def test_max_age_exceeded_with_prompt_none_is_login_required(
    page_client: FlaskClient, user: User
) -> None:
    """prompt=none never shows the login page: a too old login is login_required."""
    registration = register()
    login(page_client)
    client_id = registration.client.client_id
    _, challenge = pkce()
    get_code(page_client, client_id, challenge)
    path = authorize_path(client_id, challenge, max_age="0", prompt="none", state="mn")
    params = redirect_params(page_client.get(path))
    assert params["error"] == "login_required" and params["state"] == "mn"


@pytest.mark.parametrize("max_age", ["-1", "1.5", "abc", "", "1e3", "\u0661", "12345678901"])
def test_malformed_max_age_is_invalid_request(
    page_client: FlaskClient, user: User, max_age: str
) -> None:
    """max_age must be a non-negative integer: anything else is invalid_request to the client."""
    registration = register()
    login(page_client)
    _, challenge = pkce()
    path = authorize_path(registration.client.client_id, challenge, max_age=max_age, state="ma")
    params = redirect_params(page_client.get(path))
    assert params["error"] == "invalid_request" and "max_age" in params["error_description"]
    assert params["state"] == "ma"


def test_login_session_expires(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After AUTHGATE_LOGIN_SESSION_TTL the person must log in again (clock moved)."""
    from authgate import clock

    registration = register()
    login(page_client)
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 12 * 3600 + 1)
    _, challenge = pkce()
    response = page_client.get(authorize_path(registration.client.client_id, challenge))
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/oauth/authorize?x",
        "//evil.example/oauth/authorize",
        "/\\evil.example",
        "/api/users",
        "javascript:alert(1)",
        "",
    ],
)
def test_login_next_only_returns_to_the_authorization_endpoint(app: Flask, value: str) -> None:
    """The post-login target is never another site or another page (no open redirect)."""
    assert safe_next(value) is None


def test_login_ignores_a_foreign_next(page_client: FlaskClient, user: User) -> None:
    """A login POST with next=https://evil... lands on our own page."""
    page = page_client.get("/login")
    response = page_client.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "username": "miguel",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response.headers["Location"] == "/login"
    assert "signed in as <strong>miguel</strong>" in page_client.get("/login").get_data(
        as_text=True
    )


def test_logout_ends_the_session(page_client: FlaskClient, user: User) -> None:
    """After logout, authorize asks for the password again."""
    registration = register()
    login(page_client)
    page = page_client.get("/login")
    page_client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    _, challenge = pkce()
    response = page_client.get(authorize_path(registration.client.client_id, challenge))
    assert response.headers["Location"].startswith("/login")


def test_logout_everywhere_also_ends_the_page_session(
    page_client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELETE /api/users/me/tokens (logout everywhere) logs the person out of the pages too."""
    from authgate import clock
    from tests.oauth_support import basic

    registration = register()
    login(page_client)
    now = clock.timestamp()
    monkeypatch.setattr(clock, "timestamp", lambda *_: now + 5)
    assert (
        page_client.delete("/api/users/me/tokens", headers=basic("miguel", PASSWORD)).status_code
        == 204
    )
    _, challenge = pkce()
    response = page_client.get(authorize_path(registration.client.client_id, challenge))
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


def test_password_change_with_a_token_ends_the_page_session(
    page_client: FlaskClient, user: User
) -> None:
    """A password change ends the page login however it was authenticated: here with a
    Bearer token, which keeps its own login (family) but not anyone's page session."""
    from tests.oauth_support import basic, bearer

    registration = register()
    login(page_client)
    token = page_client.post("/api/token", headers=basic("miguel", PASSWORD)).get_json()["token"]
    changed = page_client.put(
        "/api/users/me/password",
        json={"password": PASSWORD, "new_password": "a brand new passphrase for me"},
        headers=bearer(token),
    )
    assert changed.status_code == 204
    assert page_client.get("/api/resource", headers=bearer(token)).status_code == 200
    _, challenge = pkce()
    response = page_client.get(authorize_path(registration.client.client_id, challenge))
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert "signed in as" not in page_client.get("/login").get_data(as_text=True)


def test_a_deleted_users_page_session_is_nobody_elses(page_client: FlaskClient) -> None:
    """Deleting an account ends its page login, and the next account registered neither
    gets its id (ids are never reused, SQLite included) nor its session."""
    from tests.oauth_support import basic

    created = page_client.post("/api/users", json={"username": "mallory", "password": PASSWORD})
    mallory_id = created.get_json()["id"]
    login(page_client, "mallory")
    assert "signed in as <strong>mallory</strong>" in page_client.get("/login").get_data(
        as_text=True
    )
    deleted = page_client.delete(
        "/api/users/me", json={"password": PASSWORD}, headers=basic("mallory", PASSWORD)
    )
    assert deleted.status_code == 204
    alice = page_client.post(
        "/api/users", json={"username": "alice", "password": "purple elephants dance at noon"}
    )
    assert alice.status_code == 201 and alice.get_json()["id"] > mallory_id
    assert "signed in as" not in page_client.get("/login").get_data(as_text=True)
