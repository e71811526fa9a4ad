"""The OpenAPI 3.1 document (``/openapi.json``), generated from the code, and ``/docs``.

Every view carries an :func:`operation` declaration (summary, request body, responses,
security); :func:`document` walks ``app.url_map`` and assembles them with apispec. A route
without a declaration raises :class:`UndocumentedRoute`, so a new route cannot ship
undocumented (the test suite builds the document). Declaring a route is one line::

    @bp.get("/readyz")
    @operation("Readiness", responses={200: "Status", 503: PROBLEM})
    def readyz(): ...

``/docs`` is Swagger UI, served from the installed ``flask-swagger-ui`` package (never a
CDN) under the app's usual Content-Security-Policy: every script and stylesheet is a
file of this origin, the page has no inline script.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import flask_swagger_ui
from apispec import APISpec
from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from werkzeug.routing import Rule

import authgate

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute :func:`operation` stores its declarations under (per HTTP method).
ATTRIBUTE = "__openapi__"
#: Endpoints that are files, not API operations: static files and the docs page assets.
EXEMPT_ENDPOINTS = frozenset({"static", "web.static", "openapi.asset"})
#: The largest value of an ``<int:...>`` path segment (see :class:`authgate.app.DatabaseId`).
MAX_ID = 2**31 - 1
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"

#: Security requirement shorthands for :func:`operation`.
PUBLIC: tuple[dict[str, list[str]], ...] = ()
BASIC = ({"basic": []},)
BEARER = ({"bearer": []},)
USER = ({"basic": []}, {"bearer": []})  # a password or a first-party access token
CLIENT = ({"basic": []}, {})  # client_secret_basic, or client_secret_post / none in the form
#: ``{resource_scope}`` is replaced by ``AUTHGATE_RESOURCE_SCOPE`` in the document.
RESOURCE = ({"basic": []}, {"bearer": []}, {"oauth2": ["{resource_scope}"]})
USERINFO = ({"oauth2": ["openid"]},)
FORM = "application/x-www-form-urlencoded"

PROBLEM = "Problem"
OAUTH_ERROR = "OAuthError"
HTML = "text/html"
#: A redirect (``Location``), e.g. to the login page or back to an OAuth client.
REDIRECT: dict[str, Any] = {
    "description": "Redirect",
    "headers": {"Location": {"schema": {"type": "string"}}},
}
#: The query of ``/oauth/authorize`` (RFC 6749 4.1.1, RFC 7636, OpenID Connect).
AUTHORIZE_PARAMETERS = tuple(
    {
        "name": name,
        "in": "query",
        "required": name in {"response_type", "client_id"},
        "schema": {"type": "string"},
    }
    for name in (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "prompt",
        "max_age",
    )
)


class UndocumentedRoute(RuntimeError):
    """Raised by :func:`document` for a route that has no :func:`operation` declaration."""


@dataclass(frozen=True)
class Operation:
    """One declared operation: what :func:`operation` records on a view."""

    summary: str
    responses: Mapping[int, Any]
    body: str | Mapping[str, Any] | None = None
    body_type: str = "application/json"
    security: tuple[dict[str, list[str]], ...] = PUBLIC
    tags: tuple[str, ...] = ()
    parameters: tuple[Mapping[str, Any], ...] = ()
    description: str | None = None


def operation(
    summary: str,
    *,
    responses: Mapping[int, Any],
    body: str | Mapping[str, Any] | None = None,
    body_type: str = "application/json",
    security: Iterable[dict[str, list[str]]] = PUBLIC,
    tags: Iterable[str] = (),
    parameters: Iterable[Mapping[str, Any]] = (),
    methods: Iterable[str] | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Declare the OpenAPI operation of a view (for ``methods``, default: all its methods).

    ``responses`` maps a status code to a component schema name (a JSON body, or a
    problem for ``PROBLEM``), ``None`` (no body), :data:`HTML` (a page) or a full
    OpenAPI response object. ``body`` is a component schema name or a schema object,
    sent as ``body_type``. The description defaults to the view's docstring.
    """
    declared = Operation(
        summary=summary,
        responses=dict(responses),
        body=body,
        body_type=body_type,
        security=tuple(security),
        tags=tuple(tags),
        parameters=tuple(parameters),
        description=description,
    )

    def decorate(view: F) -> F:
        table = dict(getattr(view, ATTRIBUTE, {}))
        for method in methods or ("*",):
            table[method.upper()] = declared
        setattr(view, ATTRIBUTE, table)
        return view

    return decorate


def _settings() -> Any:
    """The current app's settings (not through authgate.app_state, which imports metrics,
    which declares its view with this module)."""
    return current_app.extensions["authgate"].settings


def json_response(schema: str | Mapping[str, Any], description: str) -> dict[str, Any]:
    """A JSON response object with ``schema`` (a component name or a schema)."""
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _ref(schema: str | Mapping[str, Any]) -> Any:
    return {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema


def _response(status: int, value: Any) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    if value is None:
        return {"description": phrase}
    if value == HTML:
        return {"description": phrase, "content": {HTML: {"schema": {"type": "string"}}}}
    if value == PROBLEM:
        return {"$ref": f"#/components/responses/Problem{status}"}
    if isinstance(value, str):
        return json_response(value, phrase)
    return dict(value)


_PARAMETER = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\((?P<args>.*?)\))?:)?(?P<name>\w+)>")


def _path_and_parameters(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of ``rule`` and its path parameters."""
    parameters: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        name, converter = match["name"], match["converter"] or "default"
        if converter == "int":
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        elif converter == "path":
            schema = {"type": "string"}
        else:
            schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PARAMETER.sub(replace, rule.rule), parameters


def _requirements(declared: Operation, resource_scope: str) -> list[dict[str, list[str]]]:
    """The security requirements, ``{resource_scope}`` filled in from the settings."""
    return [
        {
            name: [scope.format(resource_scope=resource_scope) for scope in scopes]
            for name, scopes in requirement.items()
        }
        for requirement in declared.security
    ]


def _operation_object(rule: Rule, method: str, declared: Operation) -> dict[str, Any]:
    path_parameters = _path_and_parameters(rule)[1]
    view = current_app.view_functions[rule.endpoint]
    description = declared.description or inspect.cleandoc(view.__doc__ or "") or None
    result: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}",
        "summary": declared.summary,
        "responses": {
            str(status): _response(status, value)
            for status, value in sorted(declared.responses.items())
        },
        "security": _requirements(
            declared, current_app.extensions["authgate"].settings.resource_scope
        ),
    }
    if description:
        result["description"] = description
    tag = declared.tags or (rule.endpoint.split(".")[0] if "." in rule.endpoint else "default",)
    result["tags"] = list(tag)
    parameters = [*path_parameters, *(dict(p) for p in declared.parameters)]
    if parameters:
        result["parameters"] = parameters
    if declared.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {declared.body_type: {"schema": _ref(declared.body)}},
        }
    return result


def declared_operations(app: Flask) -> list[tuple[Rule, str, Operation]]:
    """Every (rule, method, declaration) of ``app``; raises UndocumentedRoute for a gap."""
    found = []
    missing = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in EXEMPT_ENDPOINTS:
            continue
        table = getattr(app.view_functions[rule.endpoint], ATTRIBUTE, {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            declared = table.get(method) or table.get("*")
            if declared is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
            else:
                found.append((rule, method, declared))
    if missing:
        raise UndocumentedRoute(
            "routes without an OpenAPI declaration (add @operation): " + ", ".join(missing)
        )
    return found


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``, built from its routes' declarations."""
    with app.app_context():
        config = _settings()
        spec = APISpec(
            title="AuthGate",
            version=authgate.__version__,
            openapi_version="3.1.0",
            info={
                "description": "Authentication for REST APIs: passwords, signed tokens, "
                "refresh, revocation, OAuth 2.1 / OpenID Connect.",
                "license": {"name": "MIT", "identifier": "MIT"},
            },
            servers=[{"url": config.issuer}],
        )
        _components(spec, config.scope_catalog)
        paths: dict[str, dict[str, Any]] = {}
        for rule, method, declared in declared_operations(app):
            path = _path_and_parameters(rule)[0]
            paths.setdefault(path, {})[method.lower()] = _operation_object(rule, method, declared)
        for path, operations in paths.items():
            spec.path(path=path, operations=operations)
        return spec.to_dict()


def _components(spec: APISpec, scopes: Mapping[str, str]) -> None:
    components = spec.components
    components.security_scheme(
        "basic",
        {
            "type": "http",
            "scheme": "basic",
            "description": "username:password (or an OAuth client's client_id:client_secret)",
        },
    )
    components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "description": "OAuth 2.1: authorization code with PKCE (S256), client credentials.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": "/oauth/token",
                    "refreshUrl": "/oauth/token",
                    "scopes": dict(scopes),
                },
                "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": dict(scopes)},
            },
        },
    )
    for name, schema in SCHEMAS.items():
        components.schema(name, schema)
    for status in PROBLEM_STATUSES:
        components.response(
            f"Problem{status}",
            {
                "description": f"{HTTPStatus(status).phrase} (RFC 9457 problem)",
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
        )


def _string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra}


def _object(required: Iterable[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


_NULLABLE_STRING = {"type": ["string", "null"]}
PROBLEM_STATUSES = (400, 401, 403, 404, 409, 413, 415, 429, 503)
SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": _object(
        ["type", "title", "status", "detail"],
        type=_string(description="a URI; urn:authgate:problem:<slug> for AuthGate's own"),
        title=_string(),
        status={"type": "integer"},
        detail=_string(),
    ),
    "OAuthError": _object(
        ["error"], error=_string(), error_description=_string(), error_uri=_string()
    ),
    "Credentials": _object(["username", "password"], username=_string(), password=_string()),
    "User": _object(["id", "username"], id={"type": "integer"}, username=_string()),
    "PrivateUser": _object(
        ["id", "username", "created_at"],
        id={"type": "integer"},
        username=_string(),
        created_at=_string(format="date-time"),
        tokens_valid_after=_NULLABLE_STRING,
    ),
    "TokenPair": _object(
        ["token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"],
        token=_string(description="the access token (a JWT)"),
        duration={"type": "integer"},
        token_type=_string(),
        expires_in={"type": "integer"},
        refresh_token=_string(),
        refresh_expires_in={"type": "integer"},
    ),
    "RefreshRequest": _object(["refresh_token"], refresh_token=_string()),
    "RevokeRequest": _object(
        ["token"],
        token=_string(),
        token_type_hint=_string(enum=["access_token", "refresh_token"]),
    ),
    "PasswordChange": _object(
        ["password", "new_password"], password=_string(), new_password=_string()
    ),
    "PasswordConfirmation": _object(["password"], password=_string()),
    "Sessions": _object(["sessions"], sessions={"type": "array", "items": {"type": "object"}}),
    "Events": _object(["events"], events={"type": "array", "items": {"type": "object"}}),
    "Consents": _object(["consents"], consents={"type": "array", "items": {"type": "object"}}),
    "Resource": _object(["data"], data=_string()),
    "Status": _object(["status"], status=_string()),
    "JWKS": _object(["keys"], keys={"type": "array", "items": {"type": "object"}}),
    "Metadata": {"type": "object", "description": "RFC 8414 / OpenID Connect Discovery"},
    "OpenAPI": {"type": "object", "description": "this document"},
    "TokenRequest": _object(
        ["grant_type"],
        grant_type=_string(enum=["authorization_code", "refresh_token", "client_credentials"]),
        code=_string(),
        redirect_uri=_string(),
        code_verifier=_string(),
        refresh_token=_string(),
        scope=_string(),
        client_id=_string(),
        client_secret=_string(),
    ),
    "TokenResponse": _object(
        ["access_token", "token_type", "expires_in"],
        access_token=_string(),
        token_type=_string(),
        expires_in={"type": "integer"},
        refresh_token=_string(),
        scope=_string(),
        id_token=_string(),
    ),
    "TokenForm": _object(
        ["token"],
        token=_string(),
        token_type_hint=_string(),
        client_id=_string(),
        client_secret=_string(),
    ),
    "Introspection": _object(["active"], active={"type": "boolean"}),
    "UserInfo": _object(["sub"], sub=_string(), preferred_username=_string()),
    "LoginForm": _object(
        ["username", "password", "csrf_token"],
        username=_string(),
        password=_string(),
        csrf_token=_string(),
        next=_string(),
    ),
    "CsrfForm": _object(["csrf_token"], csrf_token=_string()),
    "ConsentForm": _object(
        ["csrf_token", "decision"], csrf_token=_string(), decision=_string(enum=["allow", "deny"])
    ),
}

#: Problems any JSON body can cause: malformed (400), too large (413), not JSON (415).
BODY_PROBLEMS: dict[int, Any] = {400: PROBLEM, 413: PROBLEM, 415: PROBLEM}
#: Problems of a password check: wrong (401), throttled (429), all hash slots busy (503).
PASSWORD_PROBLEMS: dict[int, Any] = {401: PROBLEM, 429: PROBLEM, 503: PROBLEM}
#: What an OAuth endpoint answers with on error (RFC 6749 5.2), throttling included.
OAUTH_ERRORS: dict[int, Any] = {
    400: OAUTH_ERROR,
    401: OAUTH_ERROR,
    413: PROBLEM,
    429: OAUTH_ERROR,
    503: PROBLEM,
}

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
@operation("This OpenAPI document", responses={200: "OpenAPI"}, tags=["docs"])
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of this server, generated from its routes."""
    state = current_app.extensions.setdefault("authgate.openapi", {})
    if "document" not in state:
        state["document"] = document(current_app._get_current_object())  # type: ignore[attr-defined]
    response = jsonify(state["document"])
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs")
@operation("Interactive API documentation (Swagger UI)", responses={200: HTML}, tags=["docs"])
def docs() -> Response:
    """Swagger UI for ``/openapi.json``: scripts and styles from this server only."""
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:filename>")
def asset(filename: str) -> Response:
    """Swagger UI's files, from the installed package (exempt from the document)."""
    if filename == "authgate-docs.js":
        return Response(DOCS_SCRIPT, mimetype="text/javascript")
    return send_from_directory(SWAGGER_UI, filename, max_age=3600)


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>AuthGate API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/authgate-docs.js"></script>
</body>
</html>
"""

DOCS_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  oauth2RedirectUrl: window.location.origin + "/docs/assets/oauth2-redirect.html",
});
window.ui.initOAuth({ usePkceWithAuthorizationCodeGrant: true });
"""
