"""Password hashing policy: argon2id for new hashes, verifiers for legacy ones.

Legacy formats (the tutorial's PassLib ``sha256_crypt``/``sha512_crypt``, the companion
app's Werkzeug ``pbkdf2:``/``scrypt:``, and bcrypt) are verified by maintained
libraries and replaced by argon2id on the next successful login.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from passlib.hash import bcrypt as passlib_bcrypt
from passlib.hash import sha256_crypt, sha512_crypt
from werkzeug.security import check_password_hash

from authgate.errors import InvalidCredentials, PasswordRejected

#: OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
#: Parallelism 1 keeps one hash on one core, so a worker's hashes scale with cores.
DEFAULT_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
)
PROFILES = {
    "default": DEFAULT_PARAMETERS,
    "cheapest": argon2.profiles.CHEAPEST,  # Only for testing!
}


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must satisfy (NIST SP 800-63B rev 4, 3.1.1.2)."""

    min_length: int = 15
    max_length: int = 1024


class Hasher:
    """argon2id hashing plus a dummy hash for constant-time rejection of unknown users."""

    def __init__(self, profile: str = "default") -> None:
        self.parameters = PROFILES[profile]
        self._argon2 = argon2.PasswordHasher.from_parameters(self.parameters)
        self._dummy = self._argon2.hash("authgate dummy password for unknown users")

    def hash(self, password: str) -> str:
        """Hash an already-normalised password with argon2id."""
        return self._argon2.hash(password)

    def verify_argon2(self, encoded: str, password: str) -> bool:
        """True when ``password`` matches the argon2 hash ``encoded``."""
        try:
            return self._argon2.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False

    def burn(self, password: str) -> None:
        """Spend exactly the time of a real verification, against the dummy hash."""
        self.verify_argon2(self._dummy, password)

    def needs_rehash(self, encoded: str) -> bool:
        """True when ``encoded`` is not argon2id with the current parameters."""
        if not encoded.startswith("$argon2"):
            return True
        try:
            return self._argon2.check_needs_rehash(encoded)
        except InvalidHashError:
            return True


def normalize(password: str) -> str:
    """NFKC-normalise a password, so one typed on any keyboard hashes the same."""
    return unicodedata.normalize("NFKC", password)


def _werkzeug(encoded: str, password: str) -> bool:
    return check_password_hash(encoded, password)


def _passlib(handler: object) -> Callable[[str, str], bool]:
    def check(encoded: str, password: str) -> bool:
        return bool(handler.verify(password, encoded))  # type: ignore[attr-defined]

    return check


#: Legacy hash prefixes and the library verifier for each.
LEGACY_VERIFIERS: tuple[tuple[tuple[str, ...], Callable[[str, str], bool]], ...] = (
    (("$5$",), _passlib(sha256_crypt)),
    (("$6$",), _passlib(sha512_crypt)),
    (("$2a$", "$2b$", "$2y$"), _passlib(passlib_bcrypt)),
    (("pbkdf2:", "scrypt:"), _werkzeug),
)


def is_supported_hash(encoded: str) -> bool:
    """True when ``encoded`` is argon2 or one of the legacy formats AuthGate verifies."""
    if encoded.startswith("$argon2"):
        return True
    return any(encoded.startswith(prefixes) for prefixes, _ in LEGACY_VERIFIERS)


def _legacy_matches(encoded: str, password: str) -> bool:
    for prefixes, check in LEGACY_VERIFIERS:
        if encoded.startswith(prefixes):
            try:
                # Legacy systems hashed the raw string; try it first, then NFKC.
                candidates = dict.fromkeys((password, normalize(password)))
                return any(check(encoded, candidate) for candidate in candidates)
            except (ValueError, TypeError):
                return False
    return False


def hasher() -> Hasher:
    """The current app's hasher."""
    return current_app.extensions["authgate"].hasher


def policy() -> PasswordPolicy:
    """The current app's password policy."""
    return current_app.extensions["authgate"].password_policy


def hash_password(password: str) -> str:
    """Hash a new password (NFKC first) with argon2id."""
    return hasher().hash(normalize(password))


def matches(encoded: str | None, password: str) -> bool:
    """Check ``password`` against a stored hash, or against the dummy when there is none.

    Spends one argon2 verification whether or not ``encoded`` exists, so the caller's
    timing does not reveal whether the account exists (ASVS 6.3.8).
    """
    h = hasher()
    if len(password) > policy().max_length:
        return False
    if encoded is None:
        h.burn(normalize(password))
        return False
    if encoded.startswith("$argon2"):
        return h.verify_argon2(encoded, normalize(password))
    return _legacy_matches(encoded, password)


def upgraded_hash(encoded: str, password: str) -> str | None:
    """After a successful check: a fresh argon2id hash if ``encoded`` is outdated, else None."""
    if hasher().needs_rehash(encoded):
        return hash_password(password)
    return None


def check_new_password(password: object, username: str) -> str:
    """Validate a new password and return it; raise PasswordRejected saying why.

    Rules of NIST SP 800-63B rev 4 3.1.1.2: a minimum length, at least 64 characters
    allowed, any Unicode, no composition rules, and not the username itself.
    """
    if not isinstance(password, str):
        raise PasswordRejected("password must be a string")
    rules = policy()
    length = len(normalize(password))
    if length < rules.min_length:
        raise PasswordRejected(f"password must be at least {rules.min_length} characters long")
    if length > rules.max_length:
        raise PasswordRejected(f"password must be at most {rules.max_length} characters long")
    if "\x00" in password:
        raise PasswordRejected("password must not contain NUL characters")
    if normalize(password).casefold() == normalize(username).casefold():
        raise PasswordRejected("password must not be the username")
    return password


def verify_or_raise(encoded: str | None, password: str) -> None:
    """Raise InvalidCredentials unless ``password`` matches ``encoded`` (see :func:`matches`)."""
    if not matches(encoded, password):
        raise InvalidCredentials("Unauthorized Access")
