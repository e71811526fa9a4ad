"""HTTP hygiene (ASVS 3.4, 4.1, 13, 16.5): headers, CORS, malformed input, tokens not in URLs."""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.support import Server

ORIGIN = "https://app.example.com"


def basic_header(raw: bytes) -> dict[str, str]:
    """An Authorization header carrying ``raw`` as Basic credentials, bytes as given."""
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assert_hygienic(response: httpx.Response) -> None:
    """The security headers every response carries, errors included."""
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in headers  # plain http, AUTHGATE_HSTS unset
    assert not any(char.isdigit() for char in headers.get("Server", ""))
    assert headers["X-Request-ID"]


def assert_json_error(response: httpx.Response, status: int) -> None:
    """A JSON problem with ``status``, and no traceback text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert "Traceback" not in response.text


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """One server, one worker, throttle on."""
    return start_server(workers=1)


@pytest.fixture
def http(server: Server) -> httpx.Client:
    """A client of ``server`` with user miguel registered."""
    with server.client() as client:
        response = client.post("/api/users", json={"username": "miguel", "password": PASSWORD})
        assert response.status_code == 201
        yield client


@pytest.mark.server
def test_security_headers_on_every_response(http: httpx.Client) -> None:
    """Success, 401, 404, 405, 413, 415 and 429 answers all carry the security headers."""
    responses = [
        http.get("/.well-known/jwks.json"),
        http.get("/api/token", auth=("miguel", PASSWORD)),
        http.get("/api/resource"),
        http.get("/api/users/999"),
        http.get("/nowhere"),
        http.request("PATCH", "/api/users"),
        http.post("/api/users", content=b"{" + b" " * 100_000 + b"}", headers=_json()),
        http.post("/api/users", content=b"x", headers={"Content-Type": "text/plain"}),
    ]
    for _ in range(6):
        responses.append(http.get("/api/token", auth=("ghost", "wrong password here")))
    assert [r.status_code for r in responses][:8] == [200, 200, 401, 404, 404, 405, 413, 415]
    assert responses[-1].status_code == 429
    for response in responses:
        assert_hygienic(response)


@pytest.mark.server
def test_responses_carrying_credentials_are_not_stored(http: httpx.Client) -> None:
    """Token responses, 401s and anything answering a credentialed request say no-store."""
    token = http.get("/api/token", auth=("miguel", PASSWORD))
    resource = http.get(
        "/api/resource", headers={"Authorization": f"Bearer {token.json()['token']}"}
    )
    unauthorized = http.get("/api/resource")
    jwks_with_credentials = http.get("/.well-known/jwks.json", auth=("miguel", PASSWORD))
    for response in (token, resource, unauthorized, jwks_with_credentials):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
    # Public keys fetched anonymously may be cached.
    assert http.get("/.well-known/jwks.json").headers["Cache-Control"].startswith("public")


@pytest.mark.server
def test_hsts_when_configured_or_https_via_trusted_proxy(
    start_server: Callable[..., Server],
) -> None:
    """AUTHGATE_HSTS=1 or X-Forwarded-Proto https from a trusted proxy adds HSTS; spoofs don't."""
    forced = start_server(env={"AUTHGATE_HSTS": "1"}, workers=1)
    with forced.client() as http:
        assert "max-age=63072000" in http.get("/nowhere").headers["Strict-Transport-Security"]
    proxied = start_server(env={"AUTHGATE_TRUSTED_PROXIES": "127.0.0.2"}, workers=1)
    proxy = httpx.Client(
        base_url=proxied.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.1"}
    with proxy, proxied.client() as direct:
        assert "Strict-Transport-Security" in proxy.get("/nowhere", headers=https).headers
        assert "Strict-Transport-Security" not in direct.get("/nowhere", headers=https).headers


# -- CORS ---------------------------------------------------------------------------


@pytest.mark.server
def test_cors_allows_exact_configured_origins_only(start_server: Callable[..., Server]) -> None:
    """A preflight from the configured origin may send Authorization; others, null and * may not."""
    server = start_server(env={"AUTHGATE_CORS_ORIGINS": f"{ORIGIN},http://localhost:3000"})
    preflight = {"Access-Control-Request-Method": "GET"}
    preflight["Access-Control-Request-Headers"] = "authorization, content-type"
    with server.client() as http:
        allowed = http.options("/api/resource", headers={"Origin": ORIGIN, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
        assert "Access-Control-Allow-Credentials" not in allowed.headers
        simple = http.get("/api/resource", headers={"Origin": ORIGIN})
        assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Retry-After" in simple.headers["Access-Control-Expose-Headers"]
        for origin in ("https://evil.example.com", "null", "https://app.example.com.evil.io"):
            refused = http.options("/api/resource", headers={"Origin": origin, **preflight})
            assert "Access-Control-Allow-Origin" not in refused.headers
        no_origin = http.get("/api/resource")
        assert "Access-Control-Allow-Origin" not in no_origin.headers


@pytest.mark.server
def test_cors_never_on_the_authorization_endpoint(start_server: Callable[..., Server]) -> None:
    """/oauth/authorize gets no CORS headers, even from an allowed origin (RFC 9700 2.6)."""
    server = start_server(env={"AUTHGATE_CORS_ORIGINS": ORIGIN})
    with server.client() as http:
        for method in ("GET", "OPTIONS"):
            response = http.request(
                method,
                "/oauth/authorize",
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
            )
            assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.server
def test_no_cors_headers_unless_configured(server: Server) -> None:
    """Without AUTHGATE_CORS_ORIGINS no origin is allowed."""
    with server.client() as http:
        response = http.options(
            "/api/resource",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert "Access-Control-Allow-Origin" not in response.headers


# -- malformed input --------------------------------------------------------------


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


MALFORMED_BODIES = [
    (b'{"username": "miguel", "pass', 400),
    (b"not json at all", 400),
    (b'{"username": 1, "password": ["x"]}', 400),
    (b'{"username": null, "password": null}', 400),
    (b"null", 400),
    (b"[" * 10_000 + b"]" * 10_000, 400),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
    (b'{"username": "\xff\xfe", "password": "x"}', 400),
    (b'{"username": "nul\\u0000name", "password": "correct horse battery staple"}', 400),
    (b'{"username": "nulpass", "password": "correct horse\\u0000 battery staple"}', 400),
    (b'{"username": "x", "password": "' + b"y" * 70_000 + b'"}', 413),
]


@pytest.mark.server
def test_malformed_json_bodies_never_yield_500(http: httpx.Client, server: Server) -> None:
    """Truncated, invalid, mistyped, null, deep, non-UTF-8, NUL-bearing, huge bodies: 4xx JSON."""
    for body, status in MALFORMED_BODIES:
        assert_json_error(http.post("/api/users", content=body, headers=_json()), status)
    assert_json_error(
        http.post("/api/users", content=b"username=x", headers={"Content-Type": "text/plain"}),
        415,
    )
    assert "Traceback" not in server.log()


@pytest.mark.server
def test_malformed_credentials_never_yield_500(http: httpx.Client, server: Server) -> None:
    """Garbage, non-UTF-8, NUL-bearing and oversized Authorization headers answer 401 JSON."""
    headers = [
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a.b.c" * 800},
        {"Authorization": "Negotiate abc"},
        basic_header(b"\xff\xfe\xfd:password"),
        basic_header(b"mig\x00uel:" + PASSWORD.encode()),
        basic_header(b"miguel:" + b"\x00" * 20),
        basic_header(b"miguel:" + b"p" * 5000),
        basic_header(b"no-colon-at-all"),
    ]
    for header in headers:
        assert_json_error(http.get("/api/resource", headers=header), 401)
    assert "Traceback" not in server.log()


@pytest.mark.server
def test_unknown_methods_are_405_json(http: httpx.Client) -> None:
    """Methods a route does not serve, including invented ones, answer JSON 405 with Allow."""
    for method in ("PATCH", "DELETE", "BREW", "PROPFIND"):
        response = http.request(method, "/api/users")
        assert_json_error(response, 405)
        assert "POST" in response.headers["Allow"]


@pytest.mark.server
def test_sql_looking_usernames_are_plain_text(start_server: Callable[..., Server]) -> None:
    """SQL in a username is stored or refused as text (201/400/401) and costs no extra time."""
    server = start_server(env={"AUTHGATE_RATELIMIT": "0"}, workers=1)
    sql_names = ["x' OR '1'='1", "admin'--", "'; DROP TABLE users; --", '" OR ""="']
    with server.client() as http:
        for name in sql_names:
            response = http.post("/api/users", json={"username": name, "password": PASSWORD})
            assert response.status_code in (201, 400), response.text
            assert http.get("/api/token", auth=(name + "x", PASSWORD)).status_code == 401
        assert (
            http.post("/api/users", json={"username": "miguel", "password": PASSWORD}).status_code
            == 201
        )

        def median_seconds(username: str) -> float:
            samples = []
            for _ in range(15):
                start = time.perf_counter()
                http.get("/api/token", auth=(username, "wrong password, long enough"))
                samples.append(time.perf_counter() - start)
            return statistics.median(samples)

        plain = median_seconds("nobody-by-this-name")
        injected = median_seconds("' OR 1=1 --")
    assert 0.5 < injected / plain < 2.0


@pytest.mark.server
def test_tokens_in_the_query_string_are_refused(http: httpx.Client) -> None:
    """A valid token in ?access_token= or ?token= does not authenticate (only headers do)."""
    token = http.get("/api/token", auth=("miguel", PASSWORD)).json()["token"]
    for name in ("access_token", "token", "bearer"):
        response = http.get("/api/resource", params={name: token})
        assert_json_error(response, 401)
    assert (
        http.get("/api/resource", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
