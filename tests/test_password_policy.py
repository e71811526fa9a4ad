"""Password policy (NIST SP 800-63B-4 3.1.1.2, ASVS 6.2): length, blocklist, context words."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authgate import passwords
from authgate.errors import PasswordRejected

#: On zxcvbn's list and 16 characters long, so it passes the default minimum length.
COMMON_AND_LONG = "1qaz2wsx3edc4rfv"


def test_blocklist_holds_at_least_30000_passwords(app: Flask) -> None:
    """The offline list loaded from the zxcvbn package has the 30,000 entries it ships."""
    blocklist = passwords.policy().blocklist
    assert blocklist is not None
    assert len(blocklist) >= 30_000
    assert {"password", "123456", "qwerty", "dragon", COMMON_AND_LONG} <= blocklist


def test_common_password_is_rejected_with_zxcvbn_reason(app: Flask) -> None:
    """A long listed password is refused; the message says it is common and why."""
    with pytest.raises(PasswordRejected, match="list of common passwords") as rejected:
        passwords.check_new_password(COMMON_AND_LONG, "miguel")
    assert "common" in rejected.value.detail.lower()


def test_blocklist_is_case_insensitive(app: Flask) -> None:
    """Capitalising a listed password does not get it through."""
    with pytest.raises(PasswordRejected, match="common"):
        passwords.check_new_password(COMMON_AND_LONG.upper(), "miguel")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("miguel-is-my-name-2024", "contains the username|contain the username"),
        ("xx MIGUEL xx long enough", "username"),
        ("my authgate password 1", "service name"),
        ("AuthGate rocks, really!", "service name"),
    ],
)
def test_context_words_are_rejected(app: Flask, password: str, reason: str) -> None:
    """Passwords containing the username or the service name are refused, saying which."""
    with pytest.raises(PasswordRejected, match=reason):
        passwords.check_new_password(password, "miguel")


def test_short_usernames_are_not_searched_inside_passwords(app: Flask) -> None:
    """A two-letter username does not veto every passphrase that contains its letters."""
    assert passwords.check_new_password("algebra is lovely today", "al")


def test_sixty_four_and_1024_characters_are_accepted_and_verified_whole(app: Flask) -> None:
    """64 and 1,024 characters are accepted; a change in the last character fails to verify."""
    for length in (64, 1024):
        secret = "ü" * (length - 1) + "1"
        assert passwords.check_new_password(secret, "miguel") == secret
        encoded = passwords.hash_password(secret)
        assert passwords.matches(encoded, secret)
        assert not passwords.matches(encoded, secret[:-1] + "2")


def test_over_long_password_is_refused_before_any_hashing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1,025-character candidate costs a length check, never an argon2 call."""
    encoded = passwords.hash_password("x" * 20)
    calls: list[str] = []
    hasher = passwords.hasher()
    monkeypatch.setattr(hasher, "verify_argon2", lambda e, p: calls.append(p) or True)
    monkeypatch.setattr(hasher, "hash", lambda p: calls.append(p) or "")
    assert not passwords.matches(encoded, "x" * 1025)
    with pytest.raises(PasswordRejected, match="at most 1024"):
        passwords.check_new_password("x" * 1025, "miguel")
    assert calls == []


class TestBlocklistOff:
    """AUTHGATE_PASSWORD_BLOCKLIST=0 switches the list off (and only the list)."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        """The tutorial's settings: no list, minimum length 6."""
        return {"password_blocklist": False, "password_min_length": 6}

    def test_tutorial_password_is_accepted(self, client: FlaskClient) -> None:
        """The tutorial's ``python`` registers when the list is off and the minimum is 6."""
        response = client.post("/api/users", json={"username": "miguel", "password": "python"})
        assert response.status_code == 201

    def test_context_rules_still_apply(self, app: Flask) -> None:
        """The username and service-name rules stay on."""
        with pytest.raises(PasswordRejected, match="service name"):
            passwords.check_new_password("authgate1", "miguel")
