"""Password hashing policy: argon2id for new hashes, verifiers for legacy ones.

Legacy formats (the tutorial's PassLib ``sha256_crypt``/``sha512_crypt``, the companion
app's Werkzeug ``pbkdf2:``/``scrypt:``, and bcrypt) are verified by maintained
libraries and replaced by argon2id on the next successful login.
"""

from __future__ import annotations

import contextlib
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from passlib.hash import bcrypt as passlib_bcrypt
from passlib.hash import sha256_crypt, sha512_crypt
from werkzeug.security import check_password_hash

from authgate.errors import InvalidCredentials, PasswordRejected, ServiceBusy
from authgate.metrics import timed_hash

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


#: The service's own name: a password containing it is among the first an attacker tries.
SERVICE_NAME = "authgate"
#: Usernames shorter than this are not searched for inside passwords (``"al"`` is in
#: too many good passphrases to be a useful rule).
MIN_USERNAME_IN_PASSWORD = 3


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must satisfy (NIST SP 800-63B rev 4, 3.1.1.2)."""

    min_length: int = 15
    max_length: int = 1024
    #: Common and breached passwords, casefolded; None when the check is switched off.
    blocklist: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of the zxcvbn package (MIT licence), casefolded.

    The list ships inside the installed ``zxcvbn`` wheel (``zxcvbn/frequency_lists.py``,
    built by Dropbox from breach corpora), so nothing is downloaded at run time.
    """
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


def _why_common(password: str) -> str:
    """zxcvbn's explanation of why a listed password is weak (e.g. "a top-10 password")."""
    from zxcvbn import zxcvbn

    feedback = zxcvbn(password[:64])["feedback"]
    warning = str(feedback.get("warning") or "This is a commonly used password.")
    return warning.rstrip(".")


class HashingSlots:
    """Bounds the argon2 work one worker does at once (each hash holds ``memory_cost``).

    Sized from the worker's memory budget, so 100 simultaneous logins queue instead of
    allocating 100 x 19 MiB; a request that waits longer than ``wait_seconds`` gets a
    ``503`` with ``Retry-After`` (ServiceBusy).
    """

    def __init__(self, budget_mib: int, parameters: argon2.Parameters, wait_seconds: float) -> None:
        per_hash_mib = max(parameters.memory_cost / 1024, 1)
        self.size = max(1, min(int(budget_mib // per_hash_mib), 64))
        self.wait_seconds = wait_seconds
        self._semaphore = threading.BoundedSemaphore(self.size)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one hashing slot for the duration of the block, or raise ServiceBusy."""
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            raise ServiceBusy(retry_after=1)
        try:
            yield
        finally:
            self._semaphore.release()


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


def hashing_slot() -> contextlib.AbstractContextManager[None]:
    """One of the current worker's bounded hashing slots (see :class:`HashingSlots`)."""
    return current_app.extensions["authgate"].hashing_slots.slot()


def hash_password(password: str) -> str:
    """Hash a new password (NFKC first) with argon2id, inside a hashing slot."""
    with hashing_slot(), timed_hash("hash"):
        return hasher().hash(normalize(password))


def matches(encoded: str | None, password: str) -> bool:
    """Check ``password`` against a stored hash, or against the dummy when there is none.

    Spends one argon2 verification whether or not ``encoded`` exists, so the caller's
    timing does not reveal whether the account exists (ASVS 6.3.8).
    """
    h = hasher()
    # The cap comes before any hashing: a megabyte "password" costs a length check.
    if not isinstance(password, str) or len(password) > policy().max_length:
        return False
    with hashing_slot(), timed_hash("verify"):
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

    Rules of NIST SP 800-63B rev 4 3.1.1.2 and ASVS 6.2: a minimum length, up to 1,024
    characters accepted, any Unicode, no composition rules; not containing the username
    or the service name; not in the offline list of common and breached passwords.
    """
    if not isinstance(password, str):
        raise PasswordRejected("password must be a string")
    rules = policy()
    if len(password) > rules.max_length:  # before NFKC, which can expand a string
        raise PasswordRejected(f"password must be at most {rules.max_length} characters long")
    normal = normalize(password)
    folded = normal.casefold()
    if len(normal) < rules.min_length:
        raise PasswordRejected(f"password must be at least {rules.min_length} characters long")
    if len(normal) > rules.max_length:
        raise PasswordRejected(f"password must be at most {rules.max_length} characters long")
    if "\x00" in password:
        raise PasswordRejected("password must not contain NUL characters")
    name = normalize(username).casefold() if isinstance(username, str) else ""
    if folded == name or (len(name) >= MIN_USERNAME_IN_PASSWORD and name in folded):
        raise PasswordRejected("password must not contain the username")
    if SERVICE_NAME in folded:
        raise PasswordRejected(f"password must not contain the service name {SERVICE_NAME!r}")
    if rules.blocklist is not None and folded in rules.blocklist:
        raise PasswordRejected(
            f"password is on a list of common passwords: {_why_common(password)}; "
            "choose a longer passphrase of uncommon words"
        )
    return password


def verify_or_raise(encoded: str | None, password: str) -> None:
    """Raise InvalidCredentials unless ``password`` matches ``encoded`` (see :func:`matches`)."""
    if not matches(encoded, password):
        raise InvalidCredentials("Unauthorized Access")
