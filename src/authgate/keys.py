"""Token signing keys: create, load, publish as a JWKS.

Keys are ES256 (ECDSA P-256): every JWT library verifies them, and signing costs
about a tenth of RS256. The private key is stored as PKCS#8 PEM, encrypted with a
password derived from the secret key (HKDF-SHA256), so a database dump alone cannot
mint tokens.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from authgate import clock
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
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authgate signing keys")
    return base64.urlsafe_b64encode(kdf.derive(secret_key.encode())).decode()


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


def create_key() -> SigningKey:
    """Generate a new ES256 key pair, store it (private half encrypted) and return the row."""
    key = ECKey.generate_key(CURVE, parameters={"use": "sig", "alg": ALGORITHM}, private=True)
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": ALGORITHM}
    pem = key.as_pem(private=True, password=encryption_password(_settings().secret_key))
    row = SigningKey(
        kid=kid, alg=ALGORITHM, public_jwk=public, private_pem=pem.decode(), created_at=clock.now()
    )
    db.session.add(row)
    db.session.commit()
    return row


def ensure_active_key() -> SigningKey:
    """The newest unretired key, created on first use."""
    row = db.session.scalar(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )
    return row if row is not None else create_key()


def published_keys() -> list[SigningKey]:
    """Keys whose tokens may still be alive: unretired, or retired less than a TTL ago."""
    settings = _settings()
    horizon = clock.timestamp() - settings.access_token_ttl
    rows = db.session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
    return [r for r in rows if r.retired_at is None or r.retired_at.timestamp() > horizon]


def jwks() -> dict[str, Any]:
    """The public JWK Set document served at ``/.well-known/jwks.json``."""
    return {"keys": [dict(row.public_jwk) for row in published_keys()]}


@dataclass
class KeyCache:
    """Per-process cache of the signing key and the verification key set."""

    signing: tuple[str, ECKey] | None = None
    keyset: KeySet | None = None
    loaded_at: float = 0.0
    kids: frozenset[str] = field(default_factory=frozenset)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        """Forget everything (after a rotation in this process)."""
        with self.lock:
            self.signing = None
            self.keyset = None
            self.kids = frozenset()
            self.loaded_at = 0.0


def _cache() -> KeyCache:
    return current_app.extensions["authgate"].keys


def signing_key() -> tuple[str, ECKey]:
    """The ``(kid, private key)`` that signs new tokens in this process."""
    cache = _cache()
    if cache.signing is None:
        row = ensure_active_key()
        password = encryption_password(_settings().secret_key)
        cache.signing = (row.kid, ECKey.import_key(row.private_pem, password=password))
    return cache.signing


def verification_keys(kid: str | None) -> KeySet:
    """The public keys to verify a token with ``kid``; reloads when ``kid`` is new to us."""
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
