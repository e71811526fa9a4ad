"""/metrics, /readyz and JSON logs on real ``authgate serve`` processes (2 workers)."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORD
from tests.server.test_lifecycle import audit_count
from tests.support import RedisServer, Server, delete_redis_keys, free_port

pytestmark = pytest.mark.server

WRONG = "wrong password, but long enough"
Samples = dict[tuple[str, frozenset], float]


def scrape(http: httpx.Client) -> Samples:
    """GET /metrics and parse it: {(sample name, labels): value}."""
    response = http.get("/metrics")
    assert response.status_code == 200
    parsed = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(parsed: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return parsed.get((name, frozenset(labels.items())), 0.0)


def json_lines(server: Server, logger: str) -> list[dict[str, Any]]:
    """The server's JSON log lines of ``logger``."""
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == logger:
                lines.append(entry)
    return lines


def test_metrics_add_up_across_worker_processes(start_server: Callable[..., Server]) -> None:
    """Requests served by both workers are all in one /metrics answer, whichever worker
    answers the scrape."""
    server = start_server(env={"AUTHGATE_LOG_FORMAT": "json"}, workers=2)
    directory = metrics_directory(server)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sent = 0
    with server.client() as http:
        pids: set[int] = set()
        while len(pids) < 2 and sent < 500:
            # A new connection each time: granian keeps a connection on one worker.
            assert http.get("/healthz", headers={"Connection": "close"}).status_code == 200
            sent += 1
            pids = {
                e["pid"] for e in json_lines(server, "authgate.request") if e["route"] == "/healthz"
            }
        assert len(pids) == 2, "the two workers never both served"
        for _ in range(4):  # each scrape may land on either worker: all see the same totals
            parsed = scrape(http)
            assert (
                value(
                    parsed,
                    "authgate_http_requests_total",
                    method="GET",
                    route="/healthz",
                    status="200",
                )
                == sent
            )
            assert (
                value(
                    parsed,
                    "authgate_http_request_duration_seconds_count",
                    method="GET",
                    route="/healthz",
                )
                == sent
            )
    server.stop()
    assert not directory.exists()


def metrics_directory(server: Server) -> Path:
    """The private metrics directory ``authgate serve`` made for its workers (it says which)."""
    for entry in json_lines(server, "authgate"):
        if entry["message"].startswith("metrics directory: "):
            return Path(entry["message"].removeprefix("metrics directory: "))
    raise AssertionError("serve named no metrics directory")


def test_auth_counters_move_and_logs_hold_no_secret(start_server: Callable[..., Server]) -> None:
    """Logins ok/failed, issued/refreshed/revoked tokens, reuse and throttling are counted
    across workers; the JSON log holds one line per request and no password or token."""
    server = start_server(
        env={"AUTHGATE_LOG_FORMAT": "json", "AUTHGATE_RATELIMIT_PAIR": "3/minute"}, workers=2
    )
    with server.client() as http:
        assert http.post("/api/users", json={"username": "ana", "password": PASSWORD}).is_success
        first = http.post("/api/token", auth=("ana", PASSWORD)).json()
        second = http.post("/api/token/refresh", json={"refresh_token": first["refresh_token"]})
        third = http.post(
            "/api/token/refresh", json={"refresh_token": second.json()["refresh_token"]}
        )
        assert third.status_code == 200
        reuse = http.post("/api/token/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        other = http.post("/api/token", auth=("ana", PASSWORD)).json()
        revoked = http.delete("/api/token", headers={"Authorization": f"Bearer {other['token']}"})
        assert revoked.status_code == 204
        # Without Redis each worker counts its own failures: go on until one refuses.
        statuses = []
        while 429 not in statuses and len(statuses) < 30:
            statuses.append(http.post("/api/token", auth=("ana", WRONG)).status_code)
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
        parsed = scrape(http)
        # The readiness probe of the test harness asks for the JWKS: not ours to count.
        lines = [e for e in json_lines(server, "authgate.request") if "jwks" not in str(e["route"])]
    assert value(parsed, "authgate_logins_total", result="ok") == 2
    assert value(parsed, "authgate_logins_total", result="failed") == len(statuses) - 1
    assert value(parsed, "authgate_tokens_issued_total") == 2
    assert value(parsed, "authgate_tokens_refreshed_total") == 2
    assert value(parsed, "authgate_refresh_reuse_detected_total") == 1
    assert value(parsed, "authgate_tokens_revoked_total", scope="token") == 1
    assert value(parsed, "authgate_throttled_requests_total", kind="login") == 1
    assert value(parsed, "authgate_password_hash_seconds_count", operation="hash") == 1
    # One log line per request: the scrape's own line is written before its answer.
    sent = 8 + len(statuses)
    assert len(lines) == sent
    counted = [
        v
        for (name, labels), v in parsed.items()
        if name == "authgate_http_requests_total" and "jwks" not in dict(labels)["route"]
    ]
    assert sum(counted) == sent - 1
    log = server.log()
    secrets = [PASSWORD, WRONG, first["token"], first["refresh_token"], other["token"]]
    secrets += [second.json()["refresh_token"], third.json()["refresh_token"], "Bearer ", "Basic "]
    for secret in secrets:
        assert secret not in log


def test_readyz_follows_redis_down_and_back(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Redis stopped: /readyz says 503 with Retry-After, quickly; Redis back: 200 again."""
    redis_server = RedisServer(tmp_path).start()
    prefix = "observe-readyz:"
    try:
        server = start_server(
            env={"AUTHGATE_REDIS_URL": redis_server.url, "AUTHGATE_REDIS_PREFIX": prefix}
        )
        with server.client() as http:
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["redis"] == {"status": "ok"}
            redis_server.stop()
            down = http.get("/readyz")
            assert down.status_code == 503
            assert down.headers["Retry-After"] == "5"
            assert down.headers["Content-Type"] == "application/problem+json"
            assert down.json()["checks"] == {
                "database": {"status": "ok"},
                "redis": {"status": "error"},
            }
            redis_server = RedisServer(tmp_path, port=redis_server.port).start()
            assert http.get("/readyz").status_code == 200
    finally:
        if redis_server.process is not None and redis_server.process.poll() is None:
            delete_redis_keys(redis_server.url, prefix)
        redis_server.stop()


def test_metrics_listener_serves_on_its_own_address(start_server: Callable[..., Server]) -> None:
    """AUTHGATE_METRICS_LISTEN: the API port has no /metrics, the listener has them (token
    required when configured), and the listener ends with the server."""
    port = free_port()
    token = "listener-token-Hq7Vx2Lp9Rw4"
    server = start_server(
        env={"AUTHGATE_METRICS_LISTEN": f"127.0.0.1:{port}", "AUTHGATE_METRICS_TOKEN": token}
    )
    listener = f"http://127.0.0.1:{port}"
    with server.client() as http:
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
        assert http.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 404
    response = None
    for _ in range(100):  # the listener process may still be binding its port
        try:
            response = httpx.get(f"{listener}/metrics", timeout=5)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    assert response is not None and response.status_code == 401
    assert audit_count(server.database_url, "metrics.refused") == 1  # by the listener
    scraped = httpx.get(f"{listener}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert scraped.headers["Cache-Control"] == "no-store"
    parsed = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    healthz = value(
        parsed, "authgate_http_requests_total", method="GET", route="/healthz", status="200"
    )
    assert healthz == 3
    assert httpx.get(f"{listener}/other").status_code == 404
    server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{listener}/metrics", timeout=5)
