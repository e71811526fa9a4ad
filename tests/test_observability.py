"""/readyz, /metrics and request logs, in-process (Flask test client)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from werkzeug.test import EnvironBuilder

from authgate import create_app
from authgate.config import ConfigError, Settings
from authgate.extensions import db
from authgate.health import bounded
from authgate.logs import JSONFormatter
from authgate.models import AuditEvent, User
from tests.conftest import PASSWORD, make_settings
from tests.oauth_support import full_flow, register
from tests.support import free_port
from tests.test_refresh import login, refresh
from tests.test_tokens import basic, bearer

WRONG = "wrong password, but long enough"
METRICS_TOKEN = "metrics-token-9f3Kq2Lw8Zp5Xv"


def samples(client: FlaskClient, **kwargs: Any) -> dict[tuple[str, frozenset], float]:
    """GET /metrics and parse it: {(sample name, labels): value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data
    parsed = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(parsed: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a labelled counter appears on first use)."""
    return parsed.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung dependency)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


# --- /readyz ---------------------------------------------------------------------------


def test_readyz_reports_each_dependency_ok(client: FlaskClient, app: Flask) -> None:
    """The database (and Redis when configured) answer: 200 with a status per check."""
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = {"database": {"status": "ok"}}
    if app.extensions["authgate"].settings.redis_url:
        checks["redis"] = {"status": "ok"}
    assert response.get_json() == {"status": "ok", "checks": checks}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path, closed_port: int) -> None:
    """A database URL pointing at a closed port: 503 problem with Retry-After, no 500."""
    url = f"postgresql+psycopg://postgres:pw-not-shown@127.0.0.1:{closed_port}/nowhere"
    app = create_app(make_settings(url, tmp_path, redis_url=None))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["checks"] == {"database": {"status": "error"}}
    assert body["detail"] == "not ready: database"
    assert "pw-not-shown" not in response.get_data(as_text=True)


@pytest.mark.parametrize("settings_overrides", [{"redis_url": "redis://127.0.0.1:1/0"}])
def test_readyz_is_503_when_redis_is_unreachable(client: FlaskClient) -> None:
    """Redis configured but nothing listens: 503, the database still reported ok."""
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {
        "database": {"status": "ok"},
        "redis": {"status": "error"},
    }


def test_readyz_does_not_hang_on_a_silent_redis(
    app: Flask, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that accepts the connection and never answers is not ready, within the bound."""
    import dataclasses

    state = app.extensions["authgate"]
    changed = dataclasses.replace(
        state.settings, redis_url=f"redis://127.0.0.1:{silent_port}/0", readyz_timeout_ms=200
    )
    monkeypatch.setattr(state, "settings", changed)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"]["status"] in {"timeout", "error"}


def test_bounded_check_gives_up_on_a_hung_dependency() -> None:
    """A check that never returns is reported as a timeout; the caller is not held."""
    release = threading.Event()
    assert bounded(lambda: release.wait(), 0.05) == "timeout"
    release.set()
    assert bounded(lambda: None, 1) == "ok"
    assert bounded(lambda: 1 / 0, 1) == "error"  # type: ignore[func-returns-value]


# --- /metrics: what is counted ----------------------------------------------------------


def test_auth_events_move_their_counters(client: FlaskClient, user: User) -> None:
    """Logins ok/failed, tokens issued/refreshed/revoked and refresh reuse are counted."""
    first = login(client)
    assert client.post("/api/token", headers=basic("miguel", WRONG)).status_code == 401
    second = refresh(client, first["refresh_token"]).get_json()
    assert refresh(client, second["refresh_token"]).status_code == 200
    assert refresh(client, first["refresh_token"]).status_code == 401  # reuse
    other = login(client)
    assert client.delete("/api/token", headers=bearer(other["token"])).status_code == 204
    parsed = samples(client)
    assert value(parsed, "authgate_logins_total", result="ok") == 2
    assert value(parsed, "authgate_logins_total", result="failed") == 1
    assert value(parsed, "authgate_tokens_issued_total") == 2
    assert value(parsed, "authgate_tokens_refreshed_total") == 2
    assert value(parsed, "authgate_refresh_reuse_detected_total") == 1
    assert value(parsed, "authgate_tokens_revoked_total", scope="token") == 1
    assert value(parsed, "authgate_audit_events_total", event="user.created") == 1


@pytest.mark.parametrize("settings_overrides", [{"ratelimit_pair": "2/minute"}])
def test_throttled_requests_are_counted(client: FlaskClient, user: User) -> None:
    """A login refused by the throttle (429) counts as throttled, not as a failed login."""
    statuses = [
        client.post("/api/token", headers=basic("miguel", WRONG)).status_code for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    parsed = samples(client)
    assert value(parsed, "authgate_throttled_requests_total", kind="login") == 1
    assert value(parsed, "authgate_logins_total", result="failed") == 2


def test_requests_are_counted_by_url_rule_not_path(client: FlaskClient) -> None:
    """Route labels are URL rules (bounded); unmatched paths and odd methods share one label."""
    client.get("/api/users/12345")
    client.get("/api/users/67890")
    client.get("/no/such/path/secret-looking-thing")
    client.open("/healthz", method="BREW")
    parsed = samples(client)
    assert (
        value(
            parsed,
            "authgate_http_requests_total",
            method="GET",
            route="/api/users/<int:user_id>",
            status="404",
        )
        == 2
    )
    assert (
        value(
            parsed, "authgate_http_requests_total", method="GET", route="<unmatched>", status="404"
        )
        == 1
    )
    assert (
        value(
            parsed,
            "authgate_http_requests_total",
            method="OTHER",
            route="<unmatched>",
            status="405",
        )
        == 1
    )
    assert (
        value(
            parsed,
            "authgate_http_request_duration_seconds_count",
            method="GET",
            route="/api/users/<int:user_id>",
        )
        == 2
    )
    labels = json.dumps([sorted(k[1]) for k in parsed])
    assert "12345" not in labels and "secret-looking-thing" not in labels


def test_password_hashing_time_is_observed(client: FlaskClient) -> None:
    """Each registration hashes once, each password check verifies once."""
    body = {"username": "alice", "password": PASSWORD}
    assert client.post("/api/users", json=body).status_code == 201
    client.post("/api/token", headers=basic("alice", PASSWORD))
    client.post("/api/token", headers=basic("nobody", PASSWORD))
    parsed = samples(client)
    assert value(parsed, "authgate_password_hash_seconds_count", operation="hash") == 1
    assert value(parsed, "authgate_password_hash_seconds_count", operation="verify") == 2


# --- /metrics: who may read it ------------------------------------------------------------


def test_metrics_default_refuses_public_addresses(client: FlaskClient) -> None:
    """Loopback and private networks may read the metrics; an Internet address sees a 404."""
    assert client.get("/metrics").status_code == 200
    for address in ("10.1.2.3", "192.168.0.7", "fd00::1"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200
    public = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert public.status_code == 404
    assert public.mimetype == "application/problem+json"


def test_metrics_refuses_requests_through_an_untrusted_proxy(client: FlaskClient) -> None:
    """Behind a local proxy that is not trusted, every client looks like loopback: refuse."""
    response = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.1"}])
def test_metrics_through_a_trusted_proxy_use_the_forwarded_address(client: FlaskClient) -> None:
    """A trusted proxy's X-Forwarded-For decides: an internal client yes, a public one no."""
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.5"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.1"}])
@pytest.mark.parametrize(
    "forwarded",
    ["9.9.9.9 user_id=1 ip=8.8.8.8", "1" * 100, "fe80::1%" + "x" * 80, "not an address"],
)
def test_a_forwarded_address_that_is_no_ip_address_is_not_the_clients(
    client: FlaskClient, user: User, forwarded: str
) -> None:
    """What a trusted proxy forwards becomes the client's address only if it is an IP
    address; anything else (log fields, a string longer than the audit column) leaves the
    proxy's own address, and the request is answered normally."""
    headers = {"X-Forwarded-For": forwarded, **basic("miguel", "wrong password here")}
    assert client.get("/api/token", headers=headers).status_code == 401
    row = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert row is not None and row.ip == "127.0.0.1"


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": METRICS_TOKEN}])
def test_metrics_token_is_required_when_configured(client: FlaskClient) -> None:
    """With a metrics token: no or a wrong Bearer token is a 401, the right one reads."""
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", headers=bearer(METRICS_TOKEN + "x")).status_code == 401
    assert client.get("/metrics", headers=basic("metrics", METRICS_TOKEN)).status_code == 401
    ok = client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert ok.status_code == 200
    assert ok.headers["Cache-Control"] == "no-store"
    assert ok.content_type.startswith("text/plain")
    assert events("metrics.refused") == 3


def events(name: str) -> int:
    """How many audit events named ``name`` are stored."""
    return db.session.scalar(select(func.count()).where(AuditEvent.event == name)) or 0


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": METRICS_TOKEN}])
def test_metrics_token_guesses_are_throttled_per_address(app: Flask, client: FlaskClient) -> None:
    """Wrong metrics tokens count like wrong passwords: after AUTHGATE_RATELIMIT_ACCOUNT_FREE
    of them that address waits (429, even with the right token); a scraper elsewhere reads."""
    free = app.extensions["authgate"].settings.ratelimit_account_free
    guesser = {"REMOTE_ADDR": "10.0.0.66"}
    for _ in range(free):
        wrong = client.get("/metrics", environ_base=guesser, headers=bearer(METRICS_TOKEN + "x"))
        assert wrong.status_code == 401
    refused = client.get("/metrics", environ_base=guesser, headers=bearer(METRICS_TOKEN))
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert client.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 200
    assert events("metrics.refused") == free
    assert events("login.throttled") == 1


@pytest.mark.parametrize(
    "settings_overrides",
    [{"metrics_allow": "0.0.0.0/0,::/0", "metrics_token": METRICS_TOKEN}],
)
def test_metrics_open_to_every_network_with_a_token(client: FlaskClient) -> None:
    """Opening the network rule keeps the token rule."""
    public = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=public).status_code == 401
    assert (
        client.get("/metrics", environ_base=public, headers=bearer(METRICS_TOKEN)).status_code
        == 200
    )


@pytest.mark.parametrize("settings_overrides", [{"metrics_allow": ""}])
def test_metrics_allow_empty_means_nobody(client: FlaskClient) -> None:
    """An empty allow list switches the API port's /metrics off."""
    assert client.get("/metrics").status_code == 404


def test_empty_metrics_allow_variable_means_nobody(tmp_path: Path) -> None:
    """``AUTHGATE_METRICS_ALLOW=`` is an empty list, not an unset variable (the defaults)."""
    environ = {"AUTHGATE_METRICS_ALLOW": "", "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    settings = Settings.from_env(environ)
    assert settings.metrics_allow == "" and settings.metrics_allow_networks == []
    unset = Settings.from_env({"AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    assert unset.metrics_allow_networks != []


@pytest.mark.parametrize("settings_overrides", [{"metrics_listen": "127.0.0.1:9100"}])
def test_metrics_move_off_the_api_port_with_a_listener(client: FlaskClient) -> None:
    """With AUTHGATE_METRICS_LISTEN the API port no longer answers /metrics."""
    assert client.get("/metrics").status_code == 404


# --- request logs ------------------------------------------------------------------------


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The authgate.request records captured so far."""
    return [r for r in caplog.records if r.name == "authgate.request"]


def test_one_log_line_per_request_with_its_facts(
    client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """Method, URL rule, status, duration, request id, user id and client address."""
    caplog.set_level(logging.INFO, logger="authgate.request")
    token = login(client)["token"]
    caplog.clear()
    client.get("/api/users/me", headers={**bearer(token), "X-Request-ID": "req-7"})
    client.get("/nowhere")
    records = request_records(caplog)
    assert len(records) == 2
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields.pop("duration_ms") >= 0
    assert fields == {
        "event": "request",
        "method": "GET",
        "route": "/api/users/me",
        "status": 200,
        "request_id": "req-7",
        "user_id": user.id,
        "ip": "127.0.0.1",
    }
    assert records[1].fields["route"] is None  # type: ignore[attr-defined]
    assert records[1].fields["status"] == 404  # type: ignore[attr-defined]


@pytest.mark.parametrize("settings_overrides", [{"insecure_cookies": True}])
def test_request_line_of_an_oauth_bearer_request_names_the_user(
    page_client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """A third-party client's token speaks for a person: the request line carries their id."""
    token = full_flow(page_client, register())["access_token"]
    caplog.set_level(logging.INFO, logger="authgate.request")
    caplog.clear()
    assert page_client.get("/api/resource", headers=bearer(token)).status_code == 200
    (record,) = request_records(caplog)
    assert record.fields["route"] == "/api/resource"  # type: ignore[attr-defined]
    assert record.fields["user_id"] == user.id  # type: ignore[attr-defined]


def test_request_logs_hold_no_secret(
    client: FlaskClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """Passwords, tokens, Authorization headers and query strings never reach a log line."""
    caplog.set_level(logging.DEBUG)
    tokens = login(client)
    refresh(client, tokens["refresh_token"])
    client.get(f"/api/resource?access_token={tokens['token']}")
    client.get("/api/resource", headers=bearer(tokens["token"]))
    client.post("/api/token", headers=basic("miguel", WRONG))
    formatter = JSONFormatter()
    text = "\n".join(formatter.format(r) + r.getMessage() for r in caplog.records)
    assert "authgate.request" in text
    for secret in (PASSWORD, WRONG, tokens["token"], tokens["refresh_token"], "Basic ", "Bearer "):
        assert secret not in text


def test_json_formatter_writes_one_object_per_line() -> None:
    """Structured fields become keys; a plain message stays a message; newlines stay escaped."""
    formatter = JSONFormatter()
    record = logging.LogRecord("authgate.request", logging.INFO, __file__, 1, "x", None, None)
    record.fields = {"route": "/a\nb", "status": 200}
    line = formatter.format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["route"] == "/a\nb" and parsed["status"] == 200
    assert parsed["logger"] == "authgate.request" and parsed["level"] == "INFO"
    plain = logging.LogRecord("authgate", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    assert json.loads(formatter.format(plain))["message"] == "hi there"


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("AUTHGATE_LOG_FORMAT", "xml"),
        ("AUTHGATE_METRICS_ALLOW", "10.0.0.0/8,not-a-network"),
        ("AUTHGATE_METRICS_TOKEN", "short"),
        ("AUTHGATE_METRICS_LISTEN", "9100"),
        ("AUTHGATE_METRICS_LISTEN", "127.0.0.1:99999"),
        ("AUTHGATE_READYZ_TIMEOUT_MS", "0"),
    ],
)
def test_bad_observability_settings_are_refused(variable: str, raw: str, tmp_path: Path) -> None:
    """Malformed values stop the process at start with a ConfigError."""
    with pytest.raises(ConfigError):
        Settings.from_env({variable: raw, "AUTHGATE_INSTANCE_PATH": str(tmp_path)})


def test_metrics_token_file_is_read(tmp_path: Path) -> None:
    """AUTHGATE_METRICS_TOKEN_FILE supplies the token (kept out of the environment)."""
    path = tmp_path / "metrics-token"
    path.write_text(METRICS_TOKEN + "\n")
    path.chmod(0o600)  # whatever the umask: group-writable would be refused
    settings = Settings.from_env(
        {"AUTHGATE_METRICS_TOKEN_FILE": str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    )
    assert settings.metrics_token == METRICS_TOKEN
    assert settings.metrics_listen_address is None
    listen = Settings.from_env(
        {"AUTHGATE_METRICS_LISTEN": "[::1]:9100", "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    )
    assert listen.metrics_listen_address == ("::1", 9100)


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": METRICS_TOKEN}])
def test_metrics_listener_applies_the_same_access_rules(app: Flask) -> None:
    """The separate listener refuses public and proxied clients, other paths and a missing
    token, as the API port's /metrics does; refused tokens are audited and throttled."""
    from authgate import metrics_listener

    listener = metrics_listener.application(app)

    def call(path: str, address: str, **headers: str) -> str:
        statuses: list[str] = []
        base = {"REMOTE_ADDR": address, **headers}
        environ = EnvironBuilder(path=path, environ_base=base).get_environ()
        b"".join(listener(environ, lambda status, _headers: statuses.append(status)))  # type: ignore[arg-type]
        return statuses[0]

    assert call("/metrics", "203.0.113.9") == "404 Not Found"
    assert call("/metrics", "127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9") == "404 Not Found"
    assert call("/other", "127.0.0.1") == "404 Not Found"
    assert call("/metrics", "127.0.0.1") == "401 Unauthorized"
    wrong = f"Bearer {METRICS_TOKEN}x"
    assert call("/metrics", "127.0.0.1", HTTP_AUTHORIZATION=wrong) == "401 Unauthorized"
    assert events("metrics.refused") == 2
    for _ in range(app.extensions["authgate"].settings.ratelimit_account_free - 2):
        assert call("/metrics", "127.0.0.1", HTTP_AUTHORIZATION=wrong) == "401 Unauthorized"
    right = f"Bearer {METRICS_TOKEN}"
    assert call("/metrics", "127.0.0.1", HTTP_AUTHORIZATION=right) == "429 Too Many Requests"


def test_request_line_reads_the_user_id_without_a_query(app: Flask, user: User) -> None:
    """After a rollback (the database went away mid-request) the User row is expired: the
    request line must take its id from the identity key, not reload it (a 500 otherwise)."""
    from sqlalchemy import event

    from authgate.extensions import db
    from authgate.logs import _loaded_id

    expected = user.id
    db.session.expire(user)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert _loaded_id(user) == expected
        assert statements == []
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
