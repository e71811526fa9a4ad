"""Security headers and CORS configuration, in-process (HTML pages, 500s, refused origins)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, Response

from authgate.config import ConfigError, Settings
from authgate.http_hygiene import HSTS


def test_html_gets_strict_csp_and_no_framing(app: Flask) -> None:
    """An HTML page gets a self-only CSP with frame-ancestors 'none' and X-Frame-Options DENY."""
    app.add_url_rule("/page", "page", lambda: "<p>hello</p>")
    response = app.test_client().get("/page")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_view_keeps_its_own_headers_unless_the_request_carried_credentials(
    app: Flask,
) -> None:
    """Headers a view set are kept, each default is added once, and a credentialed request
    always gets ``Cache-Control: no-store`` with ``Pragma: no-cache``."""

    def cached() -> Response:
        response = Response('{"a": 1}', mimetype="application/json")
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        return response

    app.add_url_rule("/cached", "cached", cached)
    client = app.test_client()
    plain = client.get("/cached").headers
    assert plain.getlist("Cache-Control") == ["public, max-age=60"]
    assert "Pragma" not in plain
    assert plain.getlist("Content-Security-Policy") == ["default-src 'self'"]
    assert plain.getlist("X-Content-Type-Options") == ["nosniff"]
    assert plain.getlist("Referrer-Policy") == ["no-referrer"]
    assert "X-Frame-Options" not in plain and "Strict-Transport-Security" not in plain
    credentialed = client.get("/cached", headers={"Authorization": "Bearer x"}).headers
    assert credentialed.getlist("Cache-Control") == ["no-store"]
    assert credentialed.getlist("Pragma") == ["no-cache"]
    secure = client.get("/cached", base_url="https://localhost").headers
    assert secure.getlist("Strict-Transport-Security") == [HSTS]


def test_unexpected_error_is_json_without_traceback(app: Flask) -> None:
    """A bug in a view answers a JSON 500 with the security headers and no traceback."""

    def broken() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/broken", "broken", broken)
    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "origins", ["*", "null", "https://*.example.com", "app.example.com", "https://a.com/path"]
)
def test_cors_config_refuses_wildcards_null_and_non_origins(tmp_path: Path, origins: str) -> None:
    """Only exact scheme://host[:port] origins are accepted in AUTHGATE_CORS_ORIGINS."""
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        Settings.from_env(
            {"AUTHGATE_CORS_ORIGINS": origins, "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
        )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AUTHGATE_TRUSTED_PROXIES", "not-an-address", "TRUSTED_PROXIES"),
        ("AUTHGATE_RATELIMIT_ADDRESS", "lots per day", "RATELIMIT_ADDRESS"),
        ("AUTHGATE_RATELIMIT_ACCOUNT_MAX_WAIT", "0", "RATELIMIT_ACCOUNT_MAX_WAIT"),
        ("AUTHGATE_RATELIMIT", "maybe", "AUTHGATE_RATELIMIT must be 0 or 1"),
        ("AUTHGATE_HASH_MEMORY_MIB", "0", "HASH_MEMORY_MIB"),
    ],
)
def test_hardening_settings_are_validated(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """Malformed throttle, proxy and hashing settings stop the start with a message naming them."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({variable: value, "AUTHGATE_INSTANCE_PATH": str(tmp_path)})


def test_hardening_settings_parse(tmp_path: Path) -> None:
    """Booleans, limit strings, proxy networks and origins are read from AUTHGATE_* variables."""
    settings = Settings.from_env(
        {
            "AUTHGATE_INSTANCE_PATH": str(tmp_path),
            "AUTHGATE_RATELIMIT": "off",
            "AUTHGATE_HSTS": "1",
            "AUTHGATE_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "AUTHGATE_CORS_ORIGINS": "https://a.example.com, http://localhost:3000",
            "AUTHGATE_RATELIMIT_PAIR": "3/minute;10/hour",
        }
    )
    assert settings.ratelimit is False
    assert settings.hsts is True
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "::1/128"]
    assert settings.cors_origin_list == ["https://a.example.com", "http://localhost:3000"]
    assert settings.ratelimit_pair == "3/minute;10/hour"
