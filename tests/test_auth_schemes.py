"""``auth._MultiAuth`` answers every ``Authorization`` header exactly as Flask-HTTPAuth's
own ``MultiAuth`` does, including the Bearer requests it hands straight to the token
callback (the hot path of ``/api/resource``)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_httpauth import MultiAuth

from authgate import auth
from authgate.auth import basic_auth, multi_auth, token_auth
from authgate.models import User
from tests.conftest import PASSWORD
from tests.test_tokens import basic, get_token


def _who() -> dict[str, Any]:
    identity = multi_auth.current_user()
    return {"who": None if identity is None else identity.username}


@pytest.fixture
def routes(app: Flask) -> dict[str, str]:
    """The same view behind AuthGate's MultiAuth and behind Flask-HTTPAuth's, required and
    optional: ``{"ours-required": path, ...}``."""
    library = MultiAuth(basic_auth, token_auth)
    paths = {}
    for name, guard in (("ours", multi_auth), ("library", library)):
        for optional in (False, True):
            key = f"{name}-{'optional' if optional else 'required'}"
            paths[key] = f"/test/{key}"
            view = guard.login_required(optional=optional)(_who)
            app.add_url_rule(paths[key], key, view, methods=["GET", "OPTIONS"])
    return paths


def _headers(token: str) -> dict[str, str | None]:
    head, payload, signature = token.split(".")
    return {
        "none": None,
        "valid": f"Bearer {token}",
        "lower-case scheme": f"bearer {token}",
        "two spaces": f"Bearer  {token}",
        "trailing blank": f"Bearer {token} ",
        "trailing =": f"Bearer {token}=",
        "= inside": f"Bearer {head}.{payload}=x.{signature}",
        "tampered": f"Bearer {head}.{payload}x.{signature}",
        "not a JWT": "Bearer not-a-jwt",
        "JWT-shaped garbage": "Bearer a.b.c",
        "too long": f"Bearer {token}{'A' * 5000}",
        "scheme only": "Bearer",
        "scheme and blank": "Bearer ",
        "Basic password": basic("miguel", PASSWORD)["Authorization"],
        "Basic token": basic(token, "unused")["Authorization"],
        "Basic wrong": basic("miguel", "wrong")["Authorization"],
    }


def _answer(client: FlaskClient, method: str, path: str, header: str | None) -> tuple:
    headers = {} if header is None else {"Authorization": header}
    response = client.open(path, method=method, headers=headers)
    return (
        response.status_code,
        response.get_json(force=True, silent=True),
        response.headers.getlist("WWW-Authenticate"),
        response.headers.get("Cache-Control"),
    )


@pytest.mark.parametrize("kind", ["required", "optional"])
def test_every_header_gets_flask_httpauths_answer(
    page_client: FlaskClient, user: User, routes: dict[str, str], kind: str
) -> None:
    """Status, body, challenges and cache headers match Flask-HTTPAuth's for each header
    (``page_client``: a fresh ``g`` for every request, as on a server)."""
    client = page_client
    token = get_token(client)
    answers = {}
    for label, header in _headers(token).items():
        ours = _answer(client, "GET", routes[f"ours-{kind}"], header)
        assert ours == _answer(client, "GET", routes[f"library-{kind}"], header), label
        answers[label] = ours[:2]
    assert answers["valid"] == (200, {"who": "miguel"})
    assert answers["Basic password"] == (200, {"who": "miguel"})
    refused = (401, None) if kind == "required" else (200, {"who": None})
    assert answers["tampered"][0] == answers["JWT-shaped garbage"][0] == refused[0]
    if kind == "optional":
        assert answers["tampered"][1] == answers["lower-case scheme"][1] == refused[1]


def test_bearer_requests_reach_the_token_callback_once(
    client: FlaskClient, user: User, routes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid and a forged token are each checked once per request (no second check on
    failure, so a forged token costs no more than one signature check)."""
    token = get_token(client)
    checked: list[str] = []
    original = auth.token_identity

    def counting(value: str) -> auth.TokenIdentity:
        checked.append(value)
        return original(value)

    monkeypatch.setattr(auth, "token_identity", counting)
    for value in (token, "a.b.c"):
        client.get(routes["ours-required"], headers={"Authorization": f"Bearer {value}"})
    assert checked == [token, "a.b.c"]


def test_options_requests_skip_authentication_as_flask_httpauth_does(
    page_client: FlaskClient, user: User, routes: dict[str, str]
) -> None:
    """Flask-HTTPAuth lets ``OPTIONS`` through unauthenticated (CORS preflights); so do we."""
    token = get_token(page_client)
    for header in (f"Bearer {token}", "Bearer a.b.c", None):
        ours = _answer(page_client, "OPTIONS", routes["ours-required"], header)
        assert ours == _answer(page_client, "OPTIONS", routes["library-required"], header)
        assert ours[:2] == (200, {"who": None})
