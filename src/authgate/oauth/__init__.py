"""OAuth 2.1 / OpenID Connect authorization server, assembled from Authlib.

``/oauth/token``, ``/oauth/revoke``, ``/oauth/introspect`` and ``/oauth/userinfo`` live
here; the pages a person sees (login, consent at ``/oauth/authorize``) in
:mod:`authgate.web`; the discovery documents in :mod:`authgate.wellknown`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authlib.integrations.flask_oauth2 import ResourceProtector
from flask import Blueprint, Flask

from authgate.app_state import state

if TYPE_CHECKING:
    from authgate.oauth.server import AuthorizationServer

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


def init_app(app: Flask) -> None:
    """Assemble the authorization server and resource protector of ``app``."""
    from authgate.oauth.protection import create_protector
    from authgate.oauth.server import create_server

    protector = create_protector()
    app_state = app.extensions["authgate"]
    app_state.resource_protector = protector
    app_state.authorization_server = create_server(app, protector)
    app.register_blueprint(bp)


def authorization_server() -> AuthorizationServer:
    """The current app's authorization server."""
    return state().authorization_server


def resource_protector() -> ResourceProtector:
    """The current app's resource protector for OAuth access tokens."""
    return state().resource_protector


from authgate.oauth import views  # noqa: E402,F401
