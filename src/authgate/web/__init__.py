"""The HTML pages a person sees: login, consent (``/oauth/authorize``), logout.

Server-rendered Jinja, no JavaScript. Every form carries a CSRF token (Flask-WTF),
every page forbids framing and scripts, and nothing on them is cached.
"""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template, request
from flask_wtf.csrf import CSRFError

from authgate.extensions import csrf

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/web",
)

#: Scripts, plugins and framing are off; only our own stylesheet loads. No
#: ``form-action``: browsers apply it to the redirect that carries the authorization
#: response to the client, which would block every login.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@bp.before_request
def _check_csrf() -> None:
    """Refuse any form submission without a valid CSRF token (400)."""
    if request.method in UNSAFE_METHODS:
        csrf.protect()


@bp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> Response:
    """A form without a valid CSRF token (forged, or left open too long): a page, 400."""
    page = render_template("form_expired.html", reason=error.description)
    return make_response(page, 400)


@bp.after_request
def _page_headers(response: Response) -> Response:
    """Anti-clickjacking, CSP and no caching on every page (and its redirects)."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


from authgate.web import views  # noqa: E402,F401
