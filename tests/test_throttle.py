"""The throttle in-process (cheap hashing, monkeypatched clock): cap, order, audit, public API."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authgate import clock, passwords
from tests.conftest import PASSWORD
from tests.support import REDIS_URL, delete_redis_keys

WRONG = "wrong password, but long enough"


@pytest.fixture
def settings_overrides() -> Iterator[dict[str, object]]:
    """On the PostgreSQL + Redis run, these tests count in Redis (a random prefix each)."""
    if not REDIS_URL:
        yield {}
        return
    prefix = f"test-{secrets.token_hex(6)}:"
    yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
    delete_redis_keys(REDIS_URL, prefix)


def test_throttle_uses_redis_when_configured(app: Flask) -> None:
    """With AUTHGATE_REDIS_URL the counters live in Redis, otherwise in this process."""
    throttle = app.extensions["authgate"].throttle
    assert (throttle.redis is not None) == bool(REDIS_URL)
    assert throttle.storage() is (throttle.redis or throttle.memory)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Freeze authgate.clock; the returned function moves it forward."""
    now = [clock.timestamp()]
    monkeypatch.setattr(clock, "timestamp", lambda *_: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def basic(client: FlaskClient, username: str, password: str) -> int:
    """GET /api/token in-process; the status code."""
    return client.get("/api/token", auth=(username, password)).status_code


def test_hundred_consecutive_failures_is_the_default_cap(
    client: FlaskClient, user, frozen_clock: Callable[[float], None]
) -> None:  # noqa: ANN001
    """With default settings exactly 100 consecutive failures are ever checked."""
    checked = 0
    for _ in range(130):
        frozen_clock(3601)
        checked += basic(client, "miguel", WRONG) == 401
    assert checked == 100
    frozen_clock(3601)
    assert basic(client, "miguel", PASSWORD) == 429


def test_throttle_refuses_before_any_hashing(
    client: FlaskClient, user, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """A throttled request never reaches argon2."""
    for _ in range(5):
        basic(client, "miguel", WRONG)
    calls: list[str] = []
    hasher = passwords.hasher()
    monkeypatch.setattr(hasher, "verify_argon2", lambda e, p: calls.append(e) or False)
    assert basic(client, "miguel", PASSWORD) == 429
    assert calls == []


def test_usernames_are_throttled_after_normalisation(client: FlaskClient, user) -> None:  # noqa: ANN001
    """MIGUEL and full-width ｍｉｇｕｅｌ count against the same account as miguel."""
    for name in ("miguel", "MIGUEL", "Miguel", "\uff4d\uff49\uff47\uff55\uff45\uff4c", "miguel"):
        assert basic(client, name, WRONG) == 401
    assert basic(client, "miguel", PASSWORD) == 429


def test_throttle_events_are_audited(client: FlaskClient, user, app: Flask) -> None:  # noqa: ANN001
    """A refused check is recorded as login.throttled with the account's user id."""
    from authgate import audit

    for _ in range(6):
        basic(client, "miguel", WRONG)
    events = audit.query(event="login.throttled")
    assert [(e.user_id, e.detail["retry_after"]) for e in events] == [(user.id, 30)]


def test_guard_counts_client_secret_failures_separately_from_users(
    app: Flask, user, frozen_clock: Callable[[float], None]
) -> None:  # noqa: ANN001
    """The public guard throttles client secrets, apart from users of the same name."""
    from authgate import throttle
    from authgate.errors import InvalidCredentials, Throttled

    with app.test_request_context():
        for _ in range(5):
            with pytest.raises(InvalidCredentials), throttle.guard("client:miguel"):
                raise InvalidCredentials("bad client secret")
        with pytest.raises(Throttled) as refused, throttle.guard("client:miguel"):
            pytest.fail("the block must not run while throttled")
        assert refused.value.retry_after == 30
        with throttle.guard("user:miguel") as attempt:
            assert attempt.failures == 0
        frozen_clock(30)
        with throttle.guard("client:miguel") as attempt:
            assert attempt.failures == 5
        with throttle.guard("client:miguel") as attempt:
            assert attempt.failures == 0


def test_password_change_and_account_deletion_share_the_throttle(
    client: FlaskClient, user, app: Flask
) -> None:  # noqa: ANN001
    """Wrong current passwords on password change and deletion count against the account."""
    token = client.get("/api/token", auth=("miguel", PASSWORD)).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    change = {"password": WRONG, "new_password": "a brand new passphrase here"}
    for _ in range(3):
        assert client.put("/api/users/me/password", json=change, headers=bearer).status_code == 401
    for _ in range(2):
        response = client.delete("/api/users/me", json={"password": WRONG}, headers=bearer)
        assert response.status_code == 401
    refused = client.delete("/api/users/me", json={"password": PASSWORD}, headers=bearer)
    assert refused.status_code == 429
    assert basic(client, "miguel", PASSWORD) == 429


def test_password_change_applies_the_password_policy(client: FlaskClient, user) -> None:  # noqa: ANN001
    """A new password from the common list, or containing the username, is refused with why."""
    token = client.get("/api/token", auth=("miguel", PASSWORD)).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for new, reason in (("1qaz2wsx3edc4rfv", "common"), ("miguel's new password", "username")):
        body = {"password": PASSWORD, "new_password": new}
        response = client.put("/api/users/me/password", json=body, headers=bearer)
        assert response.status_code == 400
        assert reason in response.get_json()["detail"]


def test_disabled_account_right_password_counts_as_a_failure(client: FlaskClient, user) -> None:  # noqa: ANN001
    """The right password of a disabled account does not reset the streak (no oracle)."""
    from authgate import accounts

    accounts.set_disabled(user, True)
    for _ in range(4):
        assert basic(client, "miguel", WRONG) == 401
    assert basic(client, "miguel", PASSWORD) == 401
    assert basic(client, "miguel", WRONG) == 429
