"""HTTP hygiene of every response (ASVS 3.4, 4.1, 13): headers, CORS, trusted proxies.

- Security headers on every response, error responses included (they pass through
  ``after_request`` like any other).
- CORS through Flask-CORS, for exact configured origins only, never on
  ``/oauth/authorize`` (RFC 9700 2.6: the authorization endpoint is navigated to, not
  fetched).
- ``X-Forwarded-For``/``-Proto`` believed only when the peer is a configured proxy,
  through Werkzeug's ProxyFix (one hop), so a client cannot pick its own address to
  reset or split a throttle counter.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from authgate.config import Settings

#: Two years, the HSTS preload list's minimum (RFC 6797).
HSTS = "max-age=63072000; includeSubDomains"
#: JSON needs no resources at all; HTML pages load only their own styles and scripts.
CSP_API = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
CSP_HTML = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
#: Where browsers may call us cross-origin: the API, public keys, the OAuth back channel.
CORS_RESOURCES = r"^/(api/.*|\.well-known/.*|oauth/(?!authorize).*)$"
EXPOSED_HEADERS = ["Location", "Retry-After", "X-Request-ID", "WWW-Authenticate"]
#: Set on every response whose view did not set them (``Cache-Control`` a view may relax).
COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
API_HEADERS = (*COMMON_HEADERS, ("Content-Security-Policy", CSP_API))
HTML_HEADERS = (
    *COMMON_HEADERS,
    ("Content-Security-Policy", CSP_HTML),
    ("X-Frame-Options", "DENY"),
)


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from trusted proxies, nothing for the rest."""

    def __init__(
        self,
        app: WSGIApplication,
        networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
    ) -> None:
        self.plain = app
        self.fixed = ProxyFix(self._checked, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)
        self.networks = list(networks)

    def _checked(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """Keep the forwarded client address only if it is an IP address: a proxy that
        passes client text on must not put log fields, or a string too long for the audit
        table's column, where the address goes. Else the proxy's own address stays."""
        forwarded = environ.get("REMOTE_ADDR", "")
        try:
            address = ipaddress.ip_address(forwarded)
        except ValueError:
            address = None
        if address is None or getattr(address, "scope_id", None):
            environ["REMOTE_ADDR"] = environ["werkzeug.proxy_fix.orig"]["REMOTE_ADDR"]
        else:
            environ["REMOTE_ADDR"] = str(address)
        return self.plain(environ, start_response)

    def trusts(self, peer: str) -> bool:
        """True when ``peer`` (the TCP peer address) is one of the trusted proxies."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """Route the request through ProxyFix only when its peer is trusted."""
        if self.networks and self.trusts(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.plain(environ, start_response)


def install(app: Flask, settings: Settings) -> None:
    """Install trusted-proxy handling, CORS and the security headers on ``app``."""
    app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxy_networks)  # type: ignore[method-assign]
    origins = settings.cors_origin_list
    if origins:
        CORS(
            app,
            resources={CORS_RESOURCES: {"origins": origins}},
            supports_credentials=False,  # Authorization headers, never cookies
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=EXPOSED_HEADERS,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            max_age=600,
            always_send=False,
            send_wildcard=False,
        )
    app.after_request(functools.partial(security_headers, hsts=settings.hsts))


def security_headers(response: Response, hsts: bool) -> Response:
    """Add each header of :data:`API_HEADERS` or :data:`HTML_HEADERS` that the view did
    not set, HSTS when ``hsts`` or the request came over TLS, and ``Cache-Control:
    no-store`` (with ``Pragma: no-cache``) to every response to a credentialed request.

    It reads the header list once instead of searching it once per header
    (``setdefault``), which cost more than half of its time (bench/README.md, item 9).
    """
    headers = response.headers
    present = {name.lower() for name, _ in headers}
    if "HTTP_AUTHORIZATION" in request.environ:
        # A response to a credentialed request may carry a token or personal data.
        headers["Cache-Control"] = "no-store"
        present.add("cache-control")
    defaults = HTML_HEADERS if response.mimetype == "text/html" else API_HEADERS
    for name, value in defaults:
        if name.lower() not in present:
            headers.add(name, value)
    if (hsts or request.is_secure) and "strict-transport-security" not in present:
        headers.add("Strict-Transport-Security", HSTS)
    if "pragma" not in present and headers.get("Cache-Control") == "no-store":
        headers.add("Pragma", "no-cache")
    return response
