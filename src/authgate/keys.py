"""Token signing keys: create, load, publish as a JWKS.

Keys are ES256 (ECDSA P-256): every JWT library verifies them, and signing costs
about a tenth of RS256. The private key is stored as PKCS#8 PEM, encrypted with a
password derived from the secret key (HKDF-SHA256), so a database dump alone cannot
mint tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from authgate import audit, clock
from authgate.config import derive_key
from authgate.extensions import db
from authgate.models import SigningKey

ALGORITHM = "ES256"
CURVE = "P-256"
#: How long a process trusts its cached public keys before reading the table again.
KEYSET_TTL_SECONDS = 60.0
#: Lower bound between two reloads triggered by an unknown ``kid``.
UNKNOWN_KID_RELOAD_SECONDS = 5.0


def encryption_password(secret_key: str) -> str:
    """The password that encrypts private keys at rest, derived from the secret key."""
    return base64.urlsafe_b64encode(derive_key(secret_key, "authgate signing keys")).decode()


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


PENDING, ACTIVE, RETIRED, EXPIRED = "pending", "active", "retired", "expired"


@dataclass(frozen=True)
class KeyStatus:
    """Where a key is in its life at one moment.

    ``pending``: published, not signing yet (pre-publication); ``active``: signs new
    tokens; ``retired``: stopped signing, still published while tokens it signed can be
    alive; ``expired``: no longer published nor accepted.
    """

    row: SigningKey
    state: str
    stops_at: dt.datetime | None
    published_until: dt.datetime | None


def create_key(activates_at: dt.datetime | None = None) -> SigningKey:
    """Generate a new ES256 key pair, store it (private half encrypted) and return the row.

    It is published at once and signs from ``activates_at`` (default: now).
    """
    key = ECKey.generate_key(CURVE, parameters={"use": "sig", "alg": ALGORITHM}, private=True)
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": ALGORITHM}
    pem = key.as_pem(private=True, password=encryption_password(_settings().secret_key))
    now = clock.now()
    row = SigningKey(
        kid=kid,
        alg=ALGORITHM,
        public_jwk=public,
        private_pem=pem.decode(),
        created_at=now,
        activates_at=activates_at or now,
    )
    db.session.add(row)
    db.session.commit()
    return row


def _publication_margin() -> dt.timedelta:
    """How long a retired key stays published: the longest token it may have signed
    (a process can keep signing for up to one key-cache period after it stopped)."""
    settings = _settings()
    return dt.timedelta(seconds=settings.access_token_ttl + KEYSET_TTL_SECONDS + 5)


def statuses(now: dt.datetime | None = None) -> list[KeyStatus]:
    """Every stored key with its state, oldest activation first.

    A key stops signing when its successor activates (or when it was withdrawn with
    ``retired_at``); exactly one key is active unless all were withdrawn.
    """
    now = now or clock.now()
    rows = sorted(
        db.session.scalars(select(SigningKey)).all(),
        key=lambda r: (r.activates_at, r.created_at, r.kid),
    )
    margin = _publication_margin()
    result = []
    for index, row in enumerate(rows):
        successor = rows[index + 1].activates_at if index + 1 < len(rows) else None
        ends = [t for t in (successor, row.retired_at) if t is not None]
        stops = min(ends) if ends else None
        published_until = stops + margin if stops is not None else None
        if now < row.activates_at:
            state = PENDING
        elif stops is None or now < stops:
            state = ACTIVE
        elif published_until is not None and now < published_until:
            state = RETIRED
        else:
            state = EXPIRED
        result.append(KeyStatus(row, state, stops, published_until))
    return result


def ensure_active_key() -> SigningKey:
    """The key that signs right now, created (active at once) if there is none."""
    active = [s for s in statuses() if s.state == ACTIVE]
    return active[-1].row if active else create_key()


def rotate(immediate: bool = False) -> SigningKey:
    """Create the next signing key.

    It is published at once and starts signing after ``AUTHGATE_KEY_PREPUBLISH_SECONDS``
    (>= the JWKS max-age), so a verifier holding a cached JWKS never meets its ``kid``
    unannounced. ``immediate`` skips that window (e.g. the active key leaked). The
    previous key keeps verifying the tokens it signed until they expired.
    """
    now = clock.now()
    delay = 0 if immediate else _settings().key_prepublish_seconds
    row = create_key(activates_at=now + dt.timedelta(seconds=delay))
    _cache().clear()
    audit.record("key.rotated", kid=row.kid, activates_at=row.activates_at.isoformat())
    return row


def rotate_if_due() -> SigningKey | None:
    """With ``AUTHGATE_KEY_ROTATION_DAYS``, rotate when the newest key is that old.

    Called when a process reloads its signing key. Two processes rotating at once create
    two pending keys; the later one simply takes over a moment after the first.
    """
    days = _settings().key_rotation_days
    if days <= 0:
        return None
    newest = db.session.scalar(select(SigningKey).order_by(SigningKey.created_at.desc()).limit(1))
    if newest is None or clock.now() - newest.created_at < dt.timedelta(days=days):
        return None
    return rotate()


def published_keys() -> list[SigningKey]:
    """Keys in the JWKS: pending, active, and retired ones whose tokens may be alive."""
    return [s.row for s in statuses() if s.state != EXPIRED]


def jwks() -> dict[str, Any]:
    """The public JWK Set document served at ``/.well-known/jwks.json``."""
    return {"keys": [dict(row.public_jwk) for row in published_keys()]}


@dataclass
class KeyCache:
    """Per-process cache of the signing key and the verification key set."""

    signing: tuple[str, ECKey] | None = None
    #: The cached signing key is used until this wall-clock time (its successor activates)
    #: or until ``signing_loaded_at + KEYSET_TTL_SECONDS`` (monotonic), whichever is first.
    signing_until: float = float("inf")
    signing_loaded_at: float = 0.0
    keyset: KeySet | None = None
    loaded_at: float = 0.0
    kids: frozenset[str] = field(default_factory=frozenset)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        """Forget everything (after a rotation in this process)."""
        with self.lock:
            self.signing = None
            self.signing_until = float("inf")
            self.keyset = None
            self.kids = frozenset()
            self.loaded_at = 0.0


def _cache() -> KeyCache:
    return current_app.extensions["authgate"].keys


def signing_key() -> tuple[str, ECKey]:
    """The ``(kid, private key)`` that signs new tokens in this process.

    Re-read when the cached key's successor activates, and every KEYSET_TTL_SECONDS (so
    a rotation made by another process is seen long before its key activates).
    """
    cache = _cache()
    stale = time.monotonic() - cache.signing_loaded_at > KEYSET_TTL_SECONDS
    if cache.signing is None or stale or clock.timestamp() >= cache.signing_until:
        rotate_if_due()
        row = ensure_active_key()
        status = next(s for s in statuses() if s.row.kid == row.kid)
        password = encryption_password(_settings().secret_key)
        with cache.lock:
            cache.signing = (row.kid, ECKey.import_key(row.private_pem, password=password))
            cache.signing_until = (
                status.stops_at.timestamp() if status.stops_at is not None else float("inf")
            )
            cache.signing_loaded_at = time.monotonic()
    assert cache.signing is not None
    return cache.signing


def verification_keys(kid: str | None, cache: KeyCache | None = None) -> KeySet:
    """The public keys to verify a token with ``kid``; reloads when ``kid`` is new to us.
    ``cache``: the app's key cache, when the caller has it already."""
    if cache is None:
        cache = _cache()
    now = time.monotonic()
    stale = now - cache.loaded_at > KEYSET_TTL_SECONDS
    unknown = kid not in cache.kids and now - cache.loaded_at > UNKNOWN_KID_RELOAD_SECONDS
    if cache.keyset is None or stale or unknown:
        rows = published_keys()
        with cache.lock:
            cache.keyset = KeySet([ECKey.import_key(dict(r.public_jwk)) for r in rows])
            cache.kids = frozenset(r.kid for r in rows)
            cache.loaded_at = now
    assert cache.keyset is not None
    return cache.keyset


def is_published(kid: str | None, cache: KeyCache | None = None) -> bool:
    """True when ``kid`` is one of the keys that verify tokens right now (cached key set).
    ``cache``: the app's key cache, when the caller has it already."""
    if cache is None:
        cache = _cache()
    if kid in cache.kids and time.monotonic() - cache.loaded_at <= KEYSET_TTL_SECONDS:
        return True
    verification_keys(kid, cache)
    return kid in cache.kids
