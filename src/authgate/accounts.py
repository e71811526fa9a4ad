"""Accounts: registration, lookup and password login, whatever door a request came through."""

from __future__ import annotations

import datetime as dt
import math
import unicodedata

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from authgate import audit, clock, passwords, revocation, sessions, throttle
from authgate.errors import InvalidCredentials, InvalidInput, NotFound, UsernameTaken
from authgate.extensions import db
from authgate.models import User

MAX_USERNAME_LENGTH = 64


def username_key(username: str) -> str:
    """The comparison form of a username: NFKC, then casefolded (``Miguel`` == ``miguel``)."""
    return unicodedata.normalize("NFKC", username).casefold()


def check_username(username: object) -> str:
    """Validate a new username and return it NFKC-normalised; raise InvalidInput saying why."""
    if not isinstance(username, str):
        raise InvalidInput("username must be a string")
    name = unicodedata.normalize("NFKC", username)
    if not 1 <= len(name) <= MAX_USERNAME_LENGTH:
        raise InvalidInput(f"username must be 1 to {MAX_USERNAME_LENGTH} characters long")
    for char in name:
        category = unicodedata.category(char)
        if char.isspace() or category.startswith(("C", "Z")):
            raise InvalidInput("username must not contain whitespace or control characters")
    return name


def register(username: object, password: object) -> User:
    """Create an account. Raises InvalidInput, PasswordRejected, Throttled or UsernameTaken.

    Every well-formed registration counts against the per-address limit before the name
    is looked up, taken or not: each costs a hash or answers whether a name exists, so
    neither is free (ASVS 6.3.1). A taken name is audited (``registration.failed``).
    Uniqueness is enforced by the database, so concurrent registrations of one name
    yield exactly one account.
    """
    name = check_username(username)
    secret = passwords.check_new_password(password, name)
    key = username_key(name)
    throttle.check_registration()
    if find_by_username(name) is not None:
        raise _taken(name)
    user = User(username=name, username_key=key, password_hash=passwords.hash_password(secret))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise _taken(name) from exc
    audit.record("user.created", user_id=user.id)
    return user


def _taken(name: str) -> UsernameTaken:
    """Audit a registration refused for a taken name; the error to raise."""
    audit.record("registration.failed", reason="username_taken")
    return UsernameTaken(f"username {name!r} is already taken")


def get(user_id: int) -> User:
    """The user with ``user_id``; raises NotFound."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


# Built once (every password login looks its user up); the key is bound at execution.
_BY_USERNAME = select(User).where(User.username_key == bindparam("key"))


def find_by_username(username: str) -> User | None:
    """The user whose normalised name equals that of ``username``, or None."""
    if not isinstance(username, str) or len(username) > 4 * MAX_USERNAME_LENGTH:
        return None
    if "\x00" in username:  # no stored name has one; PostgreSQL refuses them in queries
        return None
    return db.session.scalar(_BY_USERNAME, {"key": username_key(username)})


def throttle_account(username: str) -> str:
    """The throttle's account key for a username (normalised like stored names)."""
    return "user:" + username_key(username[: 4 * MAX_USERNAME_LENGTH + 1])


def authenticate(username: str, password: str) -> User:
    """Check a username and password; return the user or raise InvalidCredentials.

    The single password door (Basic auth on every route, ``/api/token``, and any page
    or API that re-checks a password). Throttled before any hashing, per account,
    address and both (raises Throttled, 429), the same way for unknown names; takes
    the same time whether or not the user exists (a dummy hash is verified for unknown
    names); upgrades an outdated hash after success; records the outcome in the audit
    log (ASVS 6.3.1, 6.3.8, 16.3.1).
    """
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidCredentials("Unauthorized Access")
    user = find_by_username(username) if username else None
    with throttle.guard(throttle_account(username), user_id=user.id if user else None):
        if not passwords.matches(user.password_hash if user else None, password):
            reason = "unknown_user" if user is None else "wrong_password"
            audit.record("login.failed", user_id=user.id if user else None, reason=reason)
            raise InvalidCredentials("Unauthorized Access")
        assert user is not None
        # Inside the guard: the right password of a disabled account counts as a failure,
        # or an unlocked streak would tell an attacker which guess was right.
        if user.is_disabled:
            audit.record("login.failed", user_id=user.id, reason="disabled")
            raise InvalidCredentials("Unauthorized Access")
    new_hash = passwords.upgraded_hash(user.password_hash, password)
    if new_hash is not None:
        user.password_hash = new_hash
        db.session.commit()
        audit.record("password.rehashed", user_id=user.id)
    audit.record("login.succeeded", user_id=user.id)
    return user


def change_password(
    user: User, password: object, new_password: object, keep_session: str | None = None
) -> None:
    """Replace ``user``'s password after checking the current one (through :func:`authenticate`).

    Revokes every other token of the user: all families but ``keep_session`` (the one the
    request came with); without one, every token. Raises InvalidCredentials or
    PasswordRejected.
    """
    if not isinstance(password, str):
        raise InvalidCredentials("Unauthorized Access")
    authenticate(user.username, password)
    secret = passwords.check_new_password(new_password, user.username)
    user.password_hash = passwords.hash_password(secret)
    db.session.commit()
    revoked = sessions.revoke_all(user, reason="password_changed", keep=keep_session)
    audit.record("password.changed", user_id=user.id, revoked_sessions=len(revoked))


def logout_everywhere(user: User) -> None:
    """Revoke every token of ``user`` issued until now, on every device."""
    revoked = sessions.revoke_all(user, reason="logout_everywhere")
    audit.record("tokens.revoked_all", user_id=user.id, revoked_sessions=len(revoked))


def delete(user: User, password: object) -> None:
    """Delete ``user`` after checking their password again; every token dies with them.

    Raises InvalidCredentials. Families and refresh tokens go by ``ON DELETE CASCADE``;
    access tokens are refused through the revocation store before the row goes.
    """
    if not isinstance(password, str):
        raise InvalidCredentials("Unauthorized Access")
    authenticate(user.username, password)
    user_id = user.id
    sessions.revoke_all(user, reason="user_deleted")
    db.session.delete(user)
    db.session.commit()
    audit.record("user.deleted", user_id=user_id)


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (every token refused at once, no login) or re-enable ``user``.

    Re-enabling does not revive anything issued before: sessions were ended on disable.
    """
    if disabled:
        if user.disabled_at is None:
            user.disabled_at = clock.now()
            db.session.commit()
        sessions.revoke_all(user, reason="user_disabled")
        revocation.revoke_user_tokens(user.id, revocation.DISABLED)
        audit.record("user.disabled", user_id=user.id)
        return
    now = clock.now()
    user.disabled_at = None
    user.tokens_valid_after = dt.datetime.fromtimestamp(math.floor(now.timestamp()), dt.UTC)
    db.session.commit()
    revocation.revoke_user_tokens(user.id, math.floor(now.timestamp()))
    audit.record("user.enabled", user_id=user.id)
