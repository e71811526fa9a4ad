"""Login, logout and the authorization (consent) page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Response, make_response, redirect, render_template, request, url_for

from authgate import accounts, audit, clock, consents, oauth
from authgate.app_state import settings
from authgate.errors import AuthGateError, InvalidCredentials
from authgate.models import is_vschar
from authgate.oauth.grants import Approval
from authgate.oauth.server import Issuer
from authgate.openapi import AUTHORIZE_PARAMETERS, FORM, HTML, PROBLEM, REDIRECT, operation
from authgate.web import bp, login_session

AUTHORIZE_PATH = "/oauth/authorize"
#: Authorization request parameters RFC 6749 defines as VSCHAR (printable ASCII): Authlib
#: quotes some of them in error descriptions, which must be printable ASCII too.
ASCII_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path to our authorization endpoint, else None (no open redirect)."""
    if not value or "\\" in value or any(ord(c) < 0x21 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path != AUTHORIZE_PATH:
        return None
    return value


def _page(template: str, status: int = 200, **context: object) -> Response:
    response = make_response(render_template(template, **context), status)
    return response


@bp.route("/login", methods=["GET", "POST"])
@operation("The login page", methods=["GET"], responses={200: HTML}, tags=["pages"])
@operation(
    "Log in (form)",
    methods=["POST"],
    body="LoginForm",
    body_type=FORM,
    responses={303: REDIRECT, 400: HTML, 413: PROBLEM, 429: HTML, 503: HTML},
    tags=["pages"],
)
def login() -> Response:
    """Show the login form; on POST check the password (throttled, audited) and continue."""
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        person = login_session.current()
        return _page("login.html", next_url=next_url, person=person)
    username = request.form.get("username", "")
    try:
        user = accounts.authenticate(username, request.form.get("password", ""))
    except AuthGateError as error:
        wrong = isinstance(error, InvalidCredentials)
        response = _page(
            "login.html",
            status=400 if wrong else error.status,
            next_url=next_url,
            username=username,
            error="Wrong username or password." if wrong else error.detail,
        )
        response.headers.update(error.headers())
        return response
    login_session.log_in(user)
    return redirect(next_url or url_for("web.login"), code=303)


@bp.post("/logout")
@operation(
    "Log out of the pages",
    body="CsrfForm",
    body_type=FORM,
    responses={303: REDIRECT, 400: HTML, 413: PROBLEM},
    tags=["pages"],
)
def logout() -> Response:
    """End the page session."""
    person = login_session.current()
    login_session.log_out()
    if person is not None:
        audit.record("logout", user_id=person.user.id)
    return redirect(url_for("web.login"), code=303)


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
@operation(
    "Authorization endpoint: login, then consent",
    methods=["GET"],
    parameters=AUTHORIZE_PARAMETERS,
    responses={200: HTML, 302: REDIRECT, 303: REDIRECT, 400: HTML},
    tags=["oauth"],
)
@operation(
    "Authorization endpoint: the consent answer",
    methods=["POST"],
    parameters=AUTHORIZE_PARAMETERS,
    body="ConsentForm",
    body_type=FORM,
    responses={302: REDIRECT, 303: REDIRECT, 400: HTML, 413: PROBLEM},
    tags=["oauth"],
)
def authorize() -> Response:
    """The authorization endpoint (RFC 6749 3.1): login, then consent, then the redirect.

    Authlib validates the request; errors that cannot be sent safely to the client
    (unknown client, unregistered redirect URI) are shown on a page, never redirected.
    GET shows the consent page (or skips it for a remembered consent); POST is the answer.
    """
    bad = [name for name in ASCII_PARAMETERS if not _vschar(request.values.get(name, ""))]
    if bad:
        return _page(
            "error.html",
            status=400,
            error="invalid_request",
            description=f"{bad[0]} must be printable ASCII",
        )
    person = login_session.current()
    try:
        grant = oauth.authorization_server().get_consent_grant(
            end_user=person.user if person else None
        )
    except OAuth2Error as error:
        return _refused(error)
    fresh = login_session.take_fresh_login() if request.method == "GET" else True
    if person is not None and _must_log_in_again(grant, person, fresh):
        if "none" in (request.args.get("prompt") or "").split():
            return _refused(LoginRequiredError(redirect_uri=grant.redirect_uri))
        person = None
    if person is None:
        return redirect(url_for("web.login", next=request.full_path), code=303)
    if request.method == "POST":
        return _decided(grant, person, request.form.get("decision") == "allow")
    return _ask(grant, person)


def _must_log_in_again(grant: Any, person: login_session.Person, fresh: bool) -> bool:
    """True when the request wants the password typed again (OIDC Core 3.1.2.1).

    ``prompt=login`` and ``max_age=0`` want it typed for this request (``fresh``: just
    before it); any other ``max_age`` wants a login at most that many seconds old,
    judged by ``auth_time`` alone.
    """
    if grant.prompt == "login" or grant.max_age == 0:
        return not fresh
    return grant.max_age is not None and clock.timestamp() - person.auth_time > grant.max_age


def _vschar(value: str) -> bool:
    """True when ``value`` holds only RFC 6749 VSCHAR characters (0x20-0x7E), or is empty."""
    return value == "" or is_vschar(value, len(value))


def _ask(grant: Any, person: login_session.Person) -> Response:
    """Show the consent page, unless a remembered consent covers the request."""
    client, scope = grant.client, grant.request.scope or ""
    consent = consents.find_covering(person.user.id, client.client_id, scope)
    prompt = (request.args.get("prompt") or "").split()
    if consent is not None and "consent" not in prompt:
        return _approve(grant, person, consent.id)
    if "none" in prompt:
        return _refused(ConsentRequiredError(redirect_uri=grant.redirect_uri))
    catalog = settings().scope_catalog
    return _page(
        "consent.html",
        client=client,
        user=person.user,
        scopes=[(name, catalog.get(name, name)) for name in scope.split()],
        action=request.full_path,
    )


def _decided(grant: Any, person: login_session.Person, allowed: bool) -> Response:
    """Allow: remember the consent and issue a code. Deny: ``access_denied`` to the client."""
    client_id = grant.client.client_id
    if allowed:
        consent = consents.remember(person.user.id, client_id, grant.request.scope or "")
        return _approve(grant, person, consent.id)
    audit.record("oauth.authorization.denied", user_id=person.user.id, client_id=client_id)
    return oauth.authorization_server().create_authorization_response(grant=grant, grant_user=None)


def _approve(grant: Any, person: login_session.Person, consent_id: int) -> Response:
    approval = Approval(user=person.user, auth_time=person.auth_time, consent_id=consent_id)
    audit.record(
        "oauth.authorization.granted", user_id=person.user.id, client_id=grant.client.client_id
    )
    server = oauth.authorization_server()
    return server.create_authorization_response(grant=grant, grant_user=approval)


def _refused(error: OAuth2Error) -> Response:
    """Redirect an error to a verified redirect URI; otherwise show it on a page."""
    if error.redirect_uri:
        error.state = error.state or request.args.get("state")
        server = oauth.authorization_server()
        response = server.handle_error_response(None, error)
        Issuer().add_issuer_parameter(server, response)
        return response
    return _page(
        "error.html",
        status=error.status_code if 400 <= error.status_code < 500 else 400,
        error=error.error,
        description=error.get_error_description(),
    )
