"""Helpers for OAuth tests: registering clients, PKCE pairs, driving the pages in-process."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from authgate import clients
from authgate.clients import Registration
from tests.conftest import PASSWORD
from tests.support import AUTHGATE, TEST_SECRET, Server

CALLBACK = "http://127.0.0.1:8000/callback"
ALL_SCOPES = "openid profile resource:read"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def register(
    client_type: str = "confidential",
    grants: tuple[str, ...] = ("authorization_code", "refresh_token"),
    scope: str = ALL_SCOPES,
    redirect_uris: tuple[str, ...] = (CALLBACK,),
    name: str = "Photo Printer",
) -> Registration:
    """Register an OAuth client (inside an app context)."""
    return clients.create(name, client_type, list(redirect_uris), scope, list(grants))


def pkce() -> tuple[str, str]:
    """A fresh ``(code_verifier, S256 code_challenge)`` pair."""
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def basic(username: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    """An RFC 6750 Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_FIELD.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client: FlaskClient, username: str = "miguel", password: str = PASSWORD) -> TestResponse:
    """Log in on the login page (GET for the CSRF token, then POST)."""
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    return client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )


def authorize_path(client_id: str, challenge: str | None, **params: str) -> str:
    """``/oauth/authorize?...`` for the code flow with S256 PKCE."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": ALL_SCOPES,
        "state": "state-" + secrets.token_urlsafe(8),
    }
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    query.update(params)
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def redirect_params(response: TestResponse) -> dict[str, str]:
    """The query parameters of a redirect to the client's callback."""
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(CALLBACK), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def decide(client: FlaskClient, path: str, decision: str = "allow") -> TestResponse:
    """Show the consent page at ``path`` and press Allow or Deny."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    token = csrf_token(page.get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "decision": decision})


def get_code(client: FlaskClient, client_id: str, challenge: str, **params: str) -> dict[str, str]:
    """As the logged-in person, allow (if asked) and return the callback parameters."""
    path = authorize_path(client_id, challenge, **params)
    first = client.get(path)
    if first.status_code == 200:
        token = csrf_token(first.get_data(as_text=True))
        first = client.post(path, data={"csrf_token": token, "decision": "allow"})
    return redirect_params(first)


def exchange(
    client: FlaskClient,
    registration: Registration,
    code: str,
    verifier: str | None,
    redirect_uri: str | None = CALLBACK,
) -> TestResponse:
    """Redeem a code at the token endpoint (Basic auth for confidential clients)."""
    form = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    if verifier is not None:
        form["code_verifier"] = verifier
    headers = {}
    if registration.client_secret is not None:
        headers = basic(registration.client.client_id, registration.client_secret)
    else:
        form["client_id"] = registration.client.client_id
    return client.post("/oauth/token", data=form, headers=headers)


def client_auth(registration: Registration) -> dict[str, str]:
    """Basic client authentication headers for a confidential client."""
    assert registration.client_secret is not None
    return basic(registration.client.client_id, registration.client_secret)


def full_flow(client: FlaskClient, registration: Registration, **params: str) -> dict[str, str]:
    """Login, consent, code, token exchange: the token response body."""
    login(client)
    verifier, challenge = pkce()
    callback = get_code(client, registration.client.client_id, challenge, **params)
    response = exchange(client, registration, callback["code"], verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def create_client(server: Server, *args: str) -> dict[str, Any]:
    """``authgate client create ... --json`` against the server's database."""
    env = {
        **os.environ,
        "AUTHGATE_ENV": "testing",
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_DATABASE_URL": server.database_url,
        "AUTHGATE_INSTANCE_PATH": str(server.instance),
    }
    result = subprocess.run(
        [AUTHGATE, "client", "create", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def approve_over_http(server: Server, client_id: str, challenge: str) -> str:
    """Log in and press Allow with plain HTTP requests (no browser); the ``code``."""
    with httpx.Client(base_url=server.url, timeout=30) as web:
        page = web.get("/login")
        web.post(
            "/login",
            data={"csrf_token": csrf_token(page.text), "username": "miguel", "password": PASSWORD},
        )
        path = authorize_path(client_id, challenge)
        consent = web.get(path)
        answer = web.post(path, data={"csrf_token": csrf_token(consent.text), "decision": "allow"})
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    return query["code"][0]
