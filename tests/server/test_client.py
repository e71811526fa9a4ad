"""``authgate.client.Client`` against real servers: login, refresh, logout, threads, token file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authgate.client import (
    Client,
    Conflict,
    ConnectionFailed,
    InsecureTokenFile,
    NotLoggedIn,
    SessionExpired,
    Tokens,
    Unauthorized,
)
from tests.support import Server, TestClock

PASSWORD = "a long enough password"
ACCESS_TTL = 600
THREADS = 16


class FakeClock:
    """The client's wall clock, moved by the test."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Recorder:
    """httpx event hooks: every request and response the client makes, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, int | None]] = []

    def hooks(self) -> dict[str, list[Callable[..., None]]]:
        """``event_hooks`` for httpx."""
        return {"response": [self._response]}

    def _response(self, response: httpx.Response) -> None:
        with self.lock:
            request = response.request
            self.events.append((request.method, request.url.path, response.status_code))

    def count(self, method: str, path: str) -> int:
        """How many requests went to ``method path``."""
        return sum(1 for m, p, _ in self.events if (m, p) == (method, path))


@pytest.fixture
def server(start_server: Callable[..., Server], test_clock: TestClock) -> Server:
    """One server process (revocations are seen at once), on a test clock."""
    return start_server(env=test_clock.env(), workers=1, threads=4)


@pytest.fixture
def recorder() -> Recorder:
    """Records the client's HTTP traffic."""
    return Recorder()


@pytest.fixture
def clock() -> FakeClock:
    """The client's clock."""
    return FakeClock()


@pytest.fixture
def client(server: Server, recorder: Recorder, clock: FakeClock) -> Iterator[Client]:
    """A client of ``server`` with user ``ada`` registered and logged in."""
    with Client(server.url, clock=clock, event_hooks=recorder.hooks()) as api:
        api.register("ada", PASSWORD)
        api.login("ada", PASSWORD)
        recorder.events.clear()
        yield api


def resource_status(server: Server, token: str) -> int:
    """Status of ``GET /api/resource`` with ``token``, sent without the client."""
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/api/resource", headers=headers).status_code


def refresh_status(server: Server, refresh_token: str) -> int:
    """Status of a refresh with ``refresh_token``, sent without the client."""
    body = {"refresh_token": refresh_token}
    return httpx.post(f"{server.url}/api/token/refresh", json=body).status_code


def test_register_login_me(server: Server) -> None:
    with Client(server.url) as api:
        created = api.register("grace", PASSWORD)
        assert created["username"] == "grace"
        with pytest.raises(NotLoggedIn):
            api.me()
        tokens = api.login("grace", PASSWORD)
        me = api.me()
        assert me["id"] == created["id"] and me["username"] == "grace"
        assert api.get("/api/resource").json() == {"data": "Hello, grace!"}
        assert tokens.access_token not in repr(tokens)
        assert tokens.refresh_token not in repr(tokens)


def test_errors_carry_the_servers_problem(server: Server) -> None:
    with Client(server.url) as api:
        api.register("grace", PASSWORD)
        with pytest.raises(Conflict) as taken:
            api.register("grace", PASSWORD)
        assert taken.value.status == 409
        assert taken.value.type == "urn:authgate:problem:username-taken"
        with pytest.raises(Unauthorized) as refused:
            api.login("grace", "not the password at all")
        assert refused.value.problem["type"] == "urn:authgate:problem:unauthorized"
        assert refused.value.detail == "Unauthorized Access"
        assert not api.logged_in


def test_refresh_before_expiry(client: Client, clock: FakeClock, recorder: Recorder) -> None:
    first = client.tokens
    assert first is not None
    client.me()
    assert client.tokens == first  # far from expiry: no refresh
    clock.now = first.expires_at - client.refresh_margin + 1
    client.me()
    assert recorder.events[1:] == [
        ("POST", "/api/token/refresh", 200),
        ("GET", "/api/users/me", 200),
    ]
    second = client.tokens
    assert second is not None and second.refresh_token != first.refresh_token
    assert second.expires_at == clock.now + ACCESS_TTL


def test_refresh_on_401_then_retry_once(
    client: Client, server: Server, test_clock: TestClock, recorder: Recorder
) -> None:
    test_clock.advance(ACCESS_TTL + 1)  # the server sees the token expired, the client not
    assert client.me()["username"] == "ada"
    assert recorder.events == [
        ("GET", "/api/users/me", 401),
        ("POST", "/api/token/refresh", 200),
        ("GET", "/api/users/me", 200),
    ]


def test_request_passes_other_statuses_through(client: Client, recorder: Recorder) -> None:
    response = client.get("/api/users/999999", check=False)
    assert response.status_code == 404
    assert recorder.count("POST", "/api/token/refresh") == 0


def test_logout(client: Client, server: Server) -> None:
    tokens = client.tokens
    assert tokens is not None
    client.logout()
    assert not client.logged_in
    assert resource_status(server, tokens.access_token) == 401
    assert refresh_status(server, tokens.refresh_token) == 401
    with pytest.raises(NotLoggedIn):
        client.me()
    client.logout()  # logging out twice is fine


def test_logout_keeps_the_tokens_when_the_server_cannot_be_told(
    server: Server, tmp_path: Path
) -> None:
    """With the server unreachable the logout fails and the login is kept (on the server it
    is still alive), so the same logout succeeds once the server is back."""
    token_file = tmp_path / "tokens.json"
    with Client(server.url, token_file=token_file) as api:
        api.register("ada", PASSWORD)
        api.login("ada", PASSWORD)
    server.stop()
    with Client.from_token_file(token_file) as api, pytest.raises(ConnectionFailed):
        api.logout()
    server.start()
    with Client.from_token_file(token_file) as api:
        tokens = api.tokens
        assert tokens is not None
        api.logout()
        assert not api.logged_in
    assert resource_status(server, tokens.access_token) == 401


def test_logout_everywhere(server: Server, client: Client) -> None:
    with Client(server.url) as laptop:
        laptop.login("ada", PASSWORD)
        client.logout_everywhere()
        assert not client.logged_in
        with pytest.raises(SessionExpired) as expired:
            laptop.me()  # 401, then the refresh is refused too
        assert expired.value.status == 401
        assert not laptop.logged_in
        laptop.login("ada", PASSWORD)  # a new login works at once
        assert laptop.me()["username"] == "ada"


def run_threads(action: Callable[[], Any]) -> list[Any]:
    """Run ``action`` in :data:`THREADS` threads released together; their results."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def work(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except Exception as error:  # recorded, asserted on below
            results[index] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_threads_share_one_refresh_before_expiry(
    client: Client, clock: FakeClock, recorder: Recorder, server: Server
) -> None:
    first = client.tokens
    assert first is not None
    clock.now = first.expires_at  # every thread sees an expiring token
    results = run_threads(lambda: client.me()["username"])
    assert results == ["ada"] * THREADS
    assert recorder.count("POST", "/api/token/refresh") == 1
    current = client.tokens
    assert current is not None and resource_status(server, current.access_token) == 200


def test_threads_share_one_refresh_on_401(
    client: Client, test_clock: TestClock, recorder: Recorder
) -> None:
    test_clock.advance(ACCESS_TTL + 1)
    results = run_threads(lambda: client.get("/api/resource").json())
    assert results == [{"data": "Hello, ada!"}] * THREADS
    assert recorder.count("POST", "/api/token/refresh") == 1
    assert recorder.count("GET", "/api/resource") == 2 * THREADS


def test_token_file_is_private_and_shared(
    server: Server, tmp_path: Path, clock: FakeClock, recorder: Recorder
) -> None:
    path = tmp_path / "config" / "authgate" / "tokens.json"
    with Client(server.url, token_file=path, clock=clock) as api:
        api.register("ada", PASSWORD)
        api.login("ada", PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(os.listdir(path.parent)) == ["tokens.json"]  # no temporary file left
    with (
        Client.from_token_file(path, clock=clock) as one,
        Client.from_token_file(path, clock=clock, event_hooks=recorder.hooks()) as other,
    ):
        assert one.me()["username"] == "ada"  # no new login needed
        stale = one.tokens
        assert stale is not None
        one.refresh()
        assert other.refresh() == one.tokens  # read from the file, not refreshed again
        assert recorder.count("POST", "/api/token/refresh") == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        one.logout()
    assert not path.exists()


def test_token_file_with_wider_permissions_is_refused_then_replaced(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.json"
    with Client(server.url, token_file=path) as api:
        api.register("ada", PASSWORD)
        api.login("ada", PASSWORD)
    path.chmod(0o644)
    with pytest.raises(InsecureTokenFile):
        Client(server.url, token_file=path)
    with Client(server.url, token_file=path, load_tokens=False) as api:
        api.login("ada", PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Client.from_token_file(path) as api:
        assert api.me()["username"] == "ada"


def test_importing_the_client_loads_no_server_stack() -> None:
    code = (
        "import sys, authgate.client, authgate.cli\n"
        "heavy = ('flask', 'sqlalchemy', 'authlib', 'authgate.app')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"


def test_tokens_from_a_response_that_is_not_authgates() -> None:
    from authgate.client import ClientError

    with pytest.raises(ClientError):
        Tokens.from_response({"access_token": "x"}, 0.0)
