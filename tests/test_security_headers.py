"""Security headers and CORS configuration, in-process (HTML pages, 500s, refused origins)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from authgate.config import ConfigError, Settings


def test_html_gets_strict_csp_and_no_framing(app: Flask) -> None:
    """An HTML page gets a self-only CSP with frame-ancestors 'none' and X-Frame-Options DENY."""
    app.add_url_rule("/page", "page", lambda: "<p>hello</p>")
    response = app.test_client().get("/page")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"


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
