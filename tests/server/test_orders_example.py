"""examples/orders against a real AuthGate: two kinds of real processes.

AuthGate (``authgate serve``) issues tokens; the orders example runs under gunicorn twice,
once verifying tokens offline only and once with introspection, and is called with
allowed, wrong-scope, expired and revoked tokens.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.oauth_support import create_client
from tests.support import Server, TestClock, free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orders"
PASSWORD = "a long enough password"
SCOPES = (
    "openid=Confirm who you are;profile=See your username;"
    "resource:read=Read your protected resource;"
    "orders:read=See your orders;orders:write=Place orders"
)
#: The introspecting example trusts an answer this long (AUTHGATE_INTROSPECT_CACHE_SECONDS).
INTROSPECT_CACHE_SECONDS = 1
#: How long the test waits for a revocation to reach the introspecting example (cache + slack).
REVOCATION_DEADLINE_SECONDS = 10.0


@dataclass
class Example:
    """The orders example served by gunicorn on a free loopback port."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Example:
        """Start gunicorn (one worker, four threads) and wait for /healthz."""
        command = [sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLE)]
        command += ["--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4"]
        command.append("--no-control-socket")  # gunicorn 27: one shared default path
        command.append("app:create_app()")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"example exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"example did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def call(self, method: str, path: str, token: str | None, **kwargs: object) -> httpx.Response:
        """One request, with ``token`` as a Bearer credential if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@dataclass
class Setup:
    """AuthGate, its clients, and both examples."""

    authgate: Server
    clock: TestClock
    machine: dict[str, str]
    offline: Example
    checked: Example
    expired_token: str

    def client_token(self, scope: str) -> str:
        """A client-credentials access token for ``scope``."""
        return _client_token(self.authgate, self.machine, scope)


def _client_token(authgate: Server, machine: dict[str, str], scope: str) -> str:
    response = httpx.post(
        f"{authgate.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(machine["client_id"], machine["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@contextlib.contextmanager
def _set_up(start_server: Callable[..., Server], tmp: Path) -> Iterator[Setup]:
    """AuthGate on a test clock, one client-credentials client, one introspector, two examples.

    The expired token is issued while AuthGate's clock stands an hour in the past, so it is
    already expired by the examples' (real) clock; then AuthGate's clock returns to now.
    """
    test_clock = TestClock(tmp / "clock")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AUTHGATE_OAUTH_SCOPES", SCOPES)  # for the server and the CLI
        real_now = test_clock.now
        test_clock.set(real_now - 3600)
        authgate = start_server(env=test_clock.env())
        machine = create_client(
            authgate,
            *("--name", "Warehouse robot", "--type", "confidential"),
            *("--grant", "client_credentials", "--scope", "orders:read orders:write"),
        )
        introspector = create_client(
            authgate, "--name", "Orders API", "--type", "confidential", "--introspect"
        )
    assert introspector["introspect"] is True
    expired_token = _client_token(authgate, machine, "orders:read")
    test_clock.set(real_now)

    base = {"AUTHGATE_ISSUER": authgate.url}
    offline = Example(base, tmp / "offline.log")
    checked = Example(
        {
            **base,
            "AUTHGATE_INTROSPECT_CLIENT_ID": introspector["client_id"],
            "AUTHGATE_INTROSPECT_CLIENT_SECRET": introspector["client_secret"],
            "AUTHGATE_INTROSPECT_CACHE_SECONDS": str(INTROSPECT_CACHE_SECONDS),
        },
        tmp / "checked.log",
    )
    try:
        offline.start()
        checked.start()
        yield Setup(authgate, test_clock, machine, offline, checked, expired_token)
    finally:
        offline.stop()
        checked.stop()


@pytest.fixture(scope="module")
def setup(
    start_module_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """One AuthGate and its two examples, shared by the tests that leave AuthGate running
    (each uses its own token or user; starting them costs about 8 s)."""
    with _set_up(start_module_server, tmp_path_factory.mktemp("orders")) as shared:
        yield shared


@pytest.fixture
def own_setup(start_server: Callable[..., Server], tmp_path: Path) -> Iterator[Setup]:
    """A setup of the test's own, for a test that stops AuthGate."""
    with _set_up(start_server, tmp_path) as own:
        yield own


def _first_party_token(authgate: Server, username: str) -> str:
    created = httpx.post(
        f"{authgate.url}/api/users", json={"username": username, "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    response = httpx.post(f"{authgate.url}/api/token", auth=(username, PASSWORD))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def _refused_within_deadline(example: Example, path: str, token: str) -> httpx.Response:
    """Poll until the example refuses ``token`` (it trusts cached answers for a second)."""
    deadline = time.monotonic() + REVOCATION_DEADLINE_SECONDS
    while True:
        response = example.call("GET", path, token)
        if response.status_code != 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_allowed_token_places_and_lists_orders(setup: Setup) -> None:
    """A token with orders:read and orders:write works on both examples."""
    token = setup.client_token("orders:read orders:write")
    for example in (setup.offline, setup.checked):
        before = example.call("GET", "/orders", token).json()["orders"]
        placed = example.call("POST", "/orders", token, json={"item": "tea", "quantity": 2})
        assert placed.status_code == 201, placed.text
        listed = example.call("GET", "/orders", token)
        assert listed.status_code == 200
        assert listed.json()["orders"] == [*before, placed.json()]
        who = example.call("GET", "/whoami", token).json()
        assert who["client_id"] == setup.machine["client_id"] == who["sub"]


def test_wrong_scope_is_forbidden(setup: Setup) -> None:
    """A token for orders:write only may place orders but not read them: 403 insufficient_scope."""
    token = setup.client_token("orders:write")
    for example in (setup.offline, setup.checked):
        assert example.call("POST", "/orders", token, json={"item": "x"}).status_code == 201
        response = example.call("GET", "/orders", token)
        assert response.status_code == 403
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="orders", error="insufficient_scope"')
        assert 'scope="orders:read"' in challenge
        assert response.json()["error"] == "insufficient_scope"


def test_first_party_token_passes_plain_check_but_has_no_scope(setup: Setup) -> None:
    """AuthGate's own login token is accepted by @require_token, refused where a scope is needed."""
    token = _first_party_token(setup.authgate, "susan")
    for example in (setup.offline, setup.checked):
        who = example.call("GET", "/whoami", token)
        assert who.status_code == 200
        assert who.json()["client_id"] is None and who.json()["sub"].isdigit()
        assert example.call("GET", "/orders", token).status_code == 403


def test_missing_garbage_and_expired_tokens_are_unauthorized(setup: Setup) -> None:
    """No token: 401 with a bare Bearer challenge; bad or expired token: 401 invalid_token."""
    for example in (setup.offline, setup.checked):
        missing = example.call("GET", "/orders", None)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="orders"'
        garbage = example.call("GET", "/orders", "not-a-token")
        assert garbage.status_code == 401
        assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
        expired = example.call("GET", "/orders", setup.expired_token)
        assert expired.status_code == 401
        assert expired.json() == {"error": "invalid_token", "error_description": "token expired"}


def test_revoked_oauth_token_is_refused_only_with_introspection(setup: Setup) -> None:
    """After /oauth/revoke, the introspecting example refuses the token within its cache time;
    the offline one, which never asks AuthGate, accepts it until it expires."""
    token = setup.client_token("orders:read")
    for example in (setup.offline, setup.checked):
        assert example.call("GET", "/orders", token).status_code == 200
    revoked = httpx.post(
        f"{setup.authgate.url}/oauth/revoke",
        data={"token": token},
        auth=(setup.machine["client_id"], setup.machine["client_secret"]),
    )
    assert revoked.status_code == 200
    refused = _refused_within_deadline(setup.checked, "/orders", token)
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "token revoked or unknown to the issuer"
    assert setup.offline.call("GET", "/orders", token).status_code == 200


def test_logged_out_first_party_token_is_refused_only_with_introspection(setup: Setup) -> None:
    """DELETE /api/token (logout) is seen by the introspecting example, not the offline one."""
    token = _first_party_token(setup.authgate, "lena")
    for example in (setup.offline, setup.checked):
        assert example.call("GET", "/whoami", token).status_code == 200
    logout = httpx.delete(
        f"{setup.authgate.url}/api/token", headers={"Authorization": f"Bearer {token}"}
    )
    assert logout.status_code == 204
    assert _refused_within_deadline(setup.checked, "/whoami", token).status_code == 401
    assert setup.offline.call("GET", "/whoami", token).status_code == 200


def test_issuer_down_fails_closed_for_introspection_only(own_setup: Setup) -> None:
    """With AuthGate stopped, the offline example still verifies with its cached keys; the
    introspecting one answers 503 with Retry-After once its cached answer is stale."""
    token = own_setup.client_token("orders:read")
    for example in (own_setup.offline, own_setup.checked):
        assert example.call("GET", "/orders", token).status_code == 200
    own_setup.authgate.stop()
    assert own_setup.offline.call("GET", "/orders", token).status_code == 200
    deadline = time.monotonic() + REVOCATION_DEADLINE_SECONDS
    response = own_setup.checked.call("GET", "/orders", token)
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = own_setup.checked.call("GET", "/orders", token)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
