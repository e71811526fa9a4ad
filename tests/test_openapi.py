"""``/openapi.json`` and ``/docs``: the document is valid OpenAPI 3.1 and covers every route.

Also the regression tests of the bugs the schemathesis fuzz found
(tests/server/test_openapi_fuzz.py).
"""

from __future__ import annotations

import base64

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from authgate import openapi
from authgate.http_hygiene import CSP_HTML
from authgate.openapi import PROBLEM, UndocumentedRoute, document, operation
from tests.conftest import PASSWORD

MAX_ID = 2**31 - 1


def _rules(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in openapi.EXEMPT_ENDPOINTS:
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
            found.add((method.lower(), path))
    return found


def test_document_is_valid_openapi_3_1(app: Flask) -> None:
    spec = document(app)
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": "http://authgate.test"}]


def test_every_route_is_in_the_document(app: Flask) -> None:
    spec = document(app)
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert documented == _rules(app)
    assert ("post", "/oauth/token") in documented
    assert ("get", "/api/users/{user_id}") in documented
    for item in spec["paths"].values():
        for op in item.values():
            assert op["summary"] and op["responses"] and "security" in op


def test_a_route_without_declaration_fails(app: Flask) -> None:
    app.add_url_rule("/undocumented", "undocumented", lambda: "x", methods=["GET", "POST"])
    with pytest.raises(UndocumentedRoute, match=r"GET /undocumented.*POST /undocumented"):
        document(app)


def test_declaring_a_route_is_one_decorator(app: Flask) -> None:
    @operation("Example", responses={200: "Status", 503: PROBLEM}, tags=["operations"])
    def example() -> str:
        """Ready when the database answers."""
        return "x"

    app.add_url_rule("/example", "example", example)
    spec = document(app)
    validate(spec)
    op = spec["paths"]["/example"]["get"]
    assert op["summary"] == "Example"
    assert op["description"] == "Ready when the database answers."
    assert op["responses"]["503"] == {"$ref": "#/components/responses/Problem503"}
    assert op["security"] == []


def test_security_schemes_and_scopes(app: Flask) -> None:
    spec = document(app)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["basic"] == {
        "type": "http",
        "scheme": "basic",
        "description": schemes["basic"]["description"],
    }
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    flows = schemes["oauth2"]["flows"]
    assert set(flows) == {"authorizationCode", "clientCredentials"}
    assert flows["authorizationCode"]["authorizationUrl"] == "/oauth/authorize"
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token"
    scopes = app.extensions["authgate"].settings.scope_catalog
    assert flows["authorizationCode"]["scopes"] == scopes
    assert set(scopes) == {"openid", "profile", "resource:read"}
    resource = spec["paths"]["/api/resource"]["get"]["security"]
    assert {"oauth2": ["resource:read"]} in resource and {"bearer": []} in resource
    assert spec["paths"]["/api/token"]["post"]["security"] == [{"basic": []}]
    assert spec["paths"]["/api/users"]["post"]["security"] == []


def test_errors_are_documented_as_problems_or_oauth_errors(app: Flask) -> None:
    spec = document(app)
    problem401 = spec["components"]["responses"]["Problem401"]
    assert problem401["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    me = spec["paths"]["/api/users/me"]["get"]["responses"]
    assert me["401"] == {"$ref": "#/components/responses/Problem401"}
    token = spec["paths"]["/oauth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert token["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OAuthError"
    }
    assert spec["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]


def test_openapi_json_is_served(client: FlaskClient, app: Flask) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document(app)


def test_docs_page_loads_only_local_assets_under_the_strict_csp(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP_HTML
    assert "unsafe-inline" not in CSP_HTML
    html = page.get_data(as_text=True)
    assert "http" not in html and "<script>" not in html
    for asset, mimetype in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("authgate-docs.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ]:
        with client.get(f"/docs/assets/{asset}") as response:
            assert response.status_code == 200
            assert response.mimetype == mimetype
    with client.get("/docs/assets/../../app.py") as response:
        assert response.status_code == 404


# Regressions found by the schemathesis fuzz.


@pytest.mark.parametrize("user_id", [0, MAX_ID + 1, 10**30])
def test_ids_outside_the_sql_integer_range_are_404(client: FlaskClient, user_id: int) -> None:
    """A number above 2**31 - 1 overflowed PostgreSQL's integer: a 500 before."""
    response = client.get(f"/api/users/{user_id}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_largest_id_is_an_ordinary_not_found(client: FlaskClient, user: object) -> None:
    response = client.get(f"/api/users/{MAX_ID}")
    assert response.status_code == 404
    assert response.get_json()["type"] == "urn:authgate:problem:not-found"
    auth = "Basic " + base64.b64encode(f"miguel:{PASSWORD}".encode()).decode()
    consent = client.delete(f"/api/users/me/consents/{MAX_ID + 1}", headers={"Authorization": auth})
    assert consent.status_code == 404


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("header", ["Basic", "Basic ", "Basic %%%", "Basic Og=="])
def test_malformed_basic_client_credentials_are_invalid_client(
    client: FlaskClient, path: str, header: str
) -> None:
    """A bare ``Authorization: Basic`` crashed Authlib's parser: a 500 before."""
    response = client.post(
        path,
        headers={"Authorization": header},
        data={"grant_type": "client_credentials", "token": "x"},
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("name", ["response_type", "client_id", "scope", "state"])
def test_non_ascii_authorize_parameters_are_a_400_page(client: FlaskClient, name: str) -> None:
    """Authlib refused to build an error description with them: a 500 before."""
    response = client.get("/oauth/authorize", query_string={name: "\u009a\u00b6x"})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert f"{name} must be printable ASCII" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("secret", ["s3cret", None])
def test_nul_in_client_id_is_invalid_client(
    client: FlaskClient, path: str, secret: str | None
) -> None:
    """A NUL reached the throttle and audit tables: a 500 on PostgreSQL before."""
    form = {"grant_type": "client_credentials", "token": "x", "client_id": "a\x00b"}
    if secret:
        form["client_secret"] = secret
    response = client.post(path, data=form)
    assert response.status_code in {400, 401}
    assert response.get_json()["error"] == "invalid_client"
    basic = base64.b64encode(b"a\x00b:s3cret").decode()
    form = {"grant_type": "client_credentials", "token": "x"}
    response = client.post(path, data=form, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
