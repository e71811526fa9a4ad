"""Password hashing: argon2id at OWASP strength, legacy formats verified and upgraded."""

from __future__ import annotations

import pytest
from flask import Flask
from passlib.hash import bcrypt, sha256_crypt, sha512_crypt
from werkzeug.security import generate_password_hash

from authgate import accounts, passwords
from authgate.errors import InvalidCredentials, PasswordRejected
from authgate.extensions import db
from authgate.models import User
from tests.conftest import PASSWORD

LEGACY_HASHES = {
    "sha512_crypt (the article)": lambda p: sha512_crypt.using(rounds=656000).hash(p),
    "sha256_crypt": lambda p: sha256_crypt.hash(p),
    "werkzeug pbkdf2:sha256": lambda p: generate_password_hash(p, method="pbkdf2:sha256"),
    "werkzeug scrypt": lambda p: generate_password_hash(p, method="scrypt"),
    "bcrypt": lambda p: bcrypt.hash(p),
}


def test_default_parameters_meet_owasp_minimum() -> None:
    """argon2id with m >= 19 MiB, t >= 2, p >= 1 (OWASP Password Storage Cheat Sheet)."""
    params = passwords.DEFAULT_PARAMETERS
    assert params.type.name == "ID"
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2
    assert params.parallelism >= 1


def test_new_hashes_are_argon2id(app: Flask) -> None:
    """hash_password produces an argon2id string that verifies."""
    encoded = passwords.hash_password(PASSWORD)
    assert encoded.startswith("$argon2id$")
    assert passwords.matches(encoded, PASSWORD)
    assert not passwords.matches(encoded, PASSWORD + "x")


def test_long_passwords_are_verified_whole(app: Flask) -> None:
    """A 200-character password differing only in its last character does not match."""
    long_password = "p" * 199 + "1"
    encoded = passwords.hash_password(long_password)
    assert passwords.matches(encoded, long_password)
    assert not passwords.matches(encoded, "p" * 199 + "2")


def test_passwords_are_nfkc_normalised(app: Flask) -> None:
    """A password typed in a decomposed Unicode form matches its composed form."""
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous pla\u00eet"
    encoded = passwords.hash_password(composed)
    assert passwords.matches(encoded, decomposed)


@pytest.mark.parametrize("scheme", sorted(LEGACY_HASHES))
def test_legacy_hash_logs_in_and_is_upgraded(app: Flask, scheme: str) -> None:
    """A user with a legacy hash logs in with the old password; the hash becomes argon2id."""
    legacy = LEGACY_HASHES[scheme]("python")
    user = User(username="old", username_key="old", password_hash=legacy)
    db.session.add(user)
    db.session.commit()
    with app.test_request_context():
        with pytest.raises(InvalidCredentials):
            accounts.authenticate("old", "pythonx")
        assert db.session.get(User, user.id).password_hash == legacy
        accounts.authenticate("old", "python")
    upgraded = db.session.get(User, user.id).password_hash
    assert upgraded.startswith("$argon2id$")
    assert passwords.matches(upgraded, "python")


def test_outdated_argon2_parameters_are_upgraded(app: Flask) -> None:
    """An argon2 hash with weaker parameters than configured is rehashed after login."""
    import argon2

    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    user = User(username="weak", username_key="weak", password_hash=weak)
    db.session.add(user)
    db.session.commit()
    with app.test_request_context():
        accounts.authenticate("weak", PASSWORD)
    assert db.session.get(User, user.id).password_hash != weak


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 15"),
        ("x" * 1025, "at most 1024"),
        (12345678901234567, "must be a string"),
    ],
)
def test_policy_rejects_with_reason(app: Flask, password: object, reason: str) -> None:
    """Each rejected password says why."""
    with pytest.raises(PasswordRejected, match=reason):
        passwords.check_new_password(password, "miguel")


def test_policy_rejects_password_equal_to_username(app: Flask) -> None:
    """A password that is the username (in any case) is refused."""
    with pytest.raises(PasswordRejected, match="username"):
        passwords.check_new_password("AVeryLongUsername", "averylongusername")


def test_policy_accepts_any_unicode_without_composition_rules(app: Flask) -> None:
    """Lowercase-only and non-Latin passphrases of sufficient length are accepted."""
    assert passwords.check_new_password("лошадь батарея скоба", "miguel")
    assert passwords.check_new_password("all lowercase words here", "miguel")


def test_unknown_user_costs_a_verification(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejecting an unknown username still runs one argon2 verification (no timing oracle)."""
    calls: list[str] = []
    hasher = passwords.hasher()
    original = hasher.verify_argon2
    monkeypatch.setattr(hasher, "verify_argon2", lambda e, p: calls.append(e) or original(e, p))
    with app.test_request_context(), pytest.raises(InvalidCredentials):
        accounts.authenticate("nobody", PASSWORD)
    assert len(calls) == 1
