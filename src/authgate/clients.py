"""OAuth client registry: register, list, show, delete, rotate secrets.

A client secret is 256 random bits shown once and stored only as a SHA-256 digest
(:func:`authgate.models.secret_digest`), compared with ``hmac.compare_digest``. Not argon2:
a full-entropy secret cannot be guessed offline, so a slow hash would add nothing but
~50 ms of CPU to every token request, a lever for denial of service.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, select

from authgate import audit, clock
from authgate.app_state import settings
from authgate.errors import InvalidInput, NotFound
from authgate.extensions import db
from authgate.models import (
    CLIENT_TYPES,
    GRANT_TYPES,
    AuthorizationCode,
    Consent,
    OAuthClient,
    is_vschar,
    secret_digest,
)
from authgate.oauth import issuance

CLIENT_ID_PREFIX = "c_"
MAX_NAME_LENGTH = 128
MAX_REDIRECT_URI_LENGTH = 2000
#: Schemes that would run code or read files in the browser; never a redirect target.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Registration:
    """A client just created or re-keyed: the row, and the secret (shown once)."""

    client: OAuthClient
    client_secret: str | None

    def to_dict(self) -> dict[str, object]:
        """The client's public fields plus, once, ``client_secret``."""
        data: dict[str, object] = self.client.to_dict()
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        return data


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str) -> str:
    """Validate one redirect URI for registration; raise InvalidInput saying why.

    Absolute, no fragment (RFC 6749 3.1.2), ``https``, or ``http`` on a loopback host,
    or a private-use scheme of a native app (RFC 8252 7.1); never ``javascript:`` and kin.
    """
    if not uri or len(uri) > MAX_REDIRECT_URI_LENGTH or any(c.isspace() for c in uri):
        raise InvalidInput(f"invalid redirect URI {uri!r}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme or parts.fragment or "#" in uri:
        raise InvalidInput(f"redirect URI must be absolute and without fragment: {uri!r}")
    if scheme in FORBIDDEN_SCHEMES:
        raise InvalidInput(f"redirect URI scheme {scheme!r} is not allowed")
    if scheme in {"http", "https"}:
        if not parts.hostname:
            raise InvalidInput(f"redirect URI has no host: {uri!r}")
        if scheme == "http" and not _is_loopback(parts.hostname):
            raise InvalidInput(f"http redirect URIs are allowed only on loopback hosts: {uri!r}")
    elif "." not in scheme:
        raise InvalidInput(f"private-use URI schemes must be reverse domain names: {uri!r}")
    return uri


def _check_registration(
    name: str,
    client_type: str,
    redirect_uris: list[str],
    scope: str,
    grant_types: list[str],
    introspect: bool = False,
) -> tuple[str, list[str], list[str]]:
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"client name must be 1 to {MAX_NAME_LENGTH} characters")
    if client_type not in CLIENT_TYPES:
        raise InvalidInput(f"client type must be one of {', '.join(CLIENT_TYPES)}")
    if introspect and client_type == "public":
        raise InvalidInput("introspection needs a confidential client")
    grants = list(dict.fromkeys(grant_types))
    unknown = [g for g in grants if g not in GRANT_TYPES]
    if unknown or not (grants or introspect):
        raise InvalidInput(f"grant types must be among {', '.join(GRANT_TYPES)}")
    if not grants and not scope.strip():
        return "", [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)], grants
    if "client_credentials" in grants and client_type == "public":
        raise InvalidInput("client_credentials needs a confidential client")
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise InvalidInput("refresh_token is only issued with authorization_code")
    uris = [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
    if "authorization_code" in grants and not uris:
        raise InvalidInput("authorization_code needs at least one --redirect-uri")
    scopes = list(dict.fromkeys(scope.split()))
    declared = settings().scope_catalog
    undeclared = [s for s in scopes if s not in declared]
    if undeclared or not scopes:
        raise InvalidInput(f"scopes must be among the declared ones: {' '.join(declared)}")
    return " ".join(scopes), uris, grants


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def create(
    name: str,
    client_type: str,
    redirect_uris: list[str],
    scope: str,
    grant_types: list[str],
    introspect: bool = False,
) -> Registration:
    """Register a client; the secret of a confidential client is returned once, never stored.

    ``introspect`` makes it a resource server's client: it may introspect every access
    token (RFC 7662), AuthGate's own included; such a client needs no grant type nor scope.
    """
    scopes, uris, grants = _check_registration(
        name, client_type, redirect_uris, scope, grant_types, introspect
    )
    secret = _new_secret() if client_type == "confidential" else None
    client = OAuthClient(
        client_id=CLIENT_ID_PREFIX + secrets.token_urlsafe(18),
        secret_digest=secret_digest(secret) if secret else None,
        name=name.strip(),
        client_type=client_type,
        redirect_uris=uris,
        scope=scopes,
        grant_types=grants,
        can_introspect=introspect,
        created_at=clock.now(),
    )
    db.session.add(client)
    db.session.commit()
    audit.record(
        "oauth.client.created", client_id=client.client_id, type=client_type, introspect=introspect
    )
    return Registration(client, secret)


def is_client_id(value: object) -> bool:
    """True when ``value`` could be a client id: 1 to 64 RFC 6749 VSCHARs (printable ASCII)."""
    return is_vschar(value, 64)


# Built once (every token request looks its client up); the id is bound at execution.
_FIND = select(OAuthClient).where(OAuthClient.client_id == bindparam("client_id"))


def find(client_id: object) -> OAuthClient | None:
    """The client with ``client_id``, or None."""
    if not is_client_id(client_id):
        return None
    return db.session.scalar(_FIND, {"client_id": client_id})


def get(client_id: str) -> OAuthClient:
    """The client with ``client_id``; raises NotFound."""
    client = find(client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


def list_all() -> list[OAuthClient]:
    """Every registered client, oldest first."""
    return list(db.session.scalars(select(OAuthClient).order_by(OAuthClient.id)))


def delete_client(client_id: str) -> None:
    """Remove a client with its codes and consents; its tokens stop working."""
    client = get(client_id)
    revoked = issuance.revoke_client(client.client_id)
    db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.client_id == client_id))
    db.session.execute(delete(Consent).where(Consent.client_id == client_id))
    db.session.delete(client)
    db.session.commit()
    audit.record("oauth.client.deleted", client_id=client_id, revoked_grants=revoked)


def rotate_secret(client_id: str) -> Registration:
    """Give a confidential client a new secret (returned once); the old one stops working."""
    client = get(client_id)
    if client.is_public:
        raise InvalidInput("public clients have no secret")
    secret = _new_secret()
    client.secret_digest = secret_digest(secret)
    client.secret_rotated_at = clock.now()
    db.session.commit()
    audit.record("oauth.client.secret_rotated", client_id=client_id)
    return Registration(client, secret)
