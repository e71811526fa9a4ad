"""The revocation store: which access tokens are dead although their signature is fine.

Three kinds of entry, each kept only while a token it affects can still be alive:

- ``jti``: one access token (``DELETE /api/token``, ``/api/token/revoke``);
- ``family``: every token of one login (``sid`` claim), e.g. after refresh-token reuse;
- ``user``: every access token of a user whose ``iat`` is before ``not_before``
  (logout everywhere, deletion; :data:`DISABLED` refuses them all).

The database table :class:`~authgate.models.Revocation` is the source of truth. A check
never queries it per request:

- with ``AUTHGATE_REDIS_URL``, entries are mirrored to Redis keys (prefix
  ``AUTHGATE_REDIS_PREFIX``) with a TTL equal to the remaining lifetime of the longest token
  they affect, and one ``MGET`` answers the keys this process has not looked at during the
  last ``AUTHGATE_REVOCATION_CACHE_MS`` (the database view below is then refreshed only
  every :data:`BACKSTOP_SECONDS`, for entries whose writer could not reach Redis);
- without Redis, or while Redis is unreachable, each process keeps every live entry in
  memory and reads the entries added since its last look with one indexed query at most
  every ``AUTHGATE_REVOCATION_CACHE_MS`` (plus a full reload every
  :data:`FULL_RELOAD_SECONDS`).

So a revocation made by any process is enforced by every process within that interval.
If Redis fails, checks fall back to the database; a process that saw Redis fail, or that
finds Redis emptied (the ``synced`` marker is gone, e.g. after a restart), copies every
live entry from the database to Redis before trusting it again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from flask import current_app
from sqlalchemy import delete, select

from authgate import clock
from authgate.errors import TokenRevoked
from authgate.extensions import db
from authgate.models import Revocation

if TYPE_CHECKING:
    from authgate.app_state import AppState

log = logging.getLogger(__name__)

JTI = "jti"
FAMILY = "family"
USER = "user"
KINDS = (JTI, FAMILY, USER)

#: ``not_before`` of a disabled user: no ``iat`` is that late.
DISABLED = 2**53
#: Added to every lifetime, for verifiers whose clocks run a little behind ours.
CLOCK_SKEW_SECONDS = 5
#: Entries are re-read this far back, for transactions that committed late.
FEED_OVERLAP_SECONDS = 10.0
#: A process re-reads every live entry this often (guards against very late commits).
FULL_RELOAD_SECONDS = 30.0
#: With Redis, the database view is still refreshed this often, as a backstop.
BACKSTOP_SECONDS = 30.0
#: After a Redis failure, how long a process uses the database before trying Redis again.
REDIS_RETRY_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 0.25
#: The per-key cache is dropped whole when it grows beyond this (a bound, not an LRU).
MAX_CACHED_KEYS = 100_000
#: Expired rows are deleted (by the next revocation) this long after their expiry.
PURGE_AFTER_SECONDS = 60.0
SYNCED_MARKER = "rv:synced"
#: The marker expires now and then, so a Redis that silently lost keys is refilled.
SYNCED_MARKER_TTL_SECONDS = 3600


class Entry(NamedTuple):
    """One revocation as the caches see it."""

    kind: str
    subject: str
    not_before: int
    created_at: float
    expires_at: float
    id: int = 0


COLUMNS = (
    Revocation.kind,
    Revocation.subject,
    Revocation.not_before,
    Revocation.created_at,
    Revocation.expires_at,
    Revocation.id,
)


@dataclass
class Snapshot:
    """Every live entry, in memory: the database-backed view of one process."""

    jtis: dict[str, float] = field(default_factory=dict)
    families: dict[str, float] = field(default_factory=dict)
    #: user id -> (created_at, entry id, not_before, expires_at); the newest entry wins.
    users: dict[str, tuple[float, int, int, float]] = field(default_factory=dict)

    def apply(self, entry: Entry) -> None:
        """Add one entry (idempotent)."""
        kind, subject, not_before, created, expires, entry_id = entry
        if kind == JTI:
            self.jtis[subject] = max(expires, self.jtis.get(subject, 0.0))
        elif kind == FAMILY:
            self.families[subject] = max(expires, self.families.get(subject, 0.0))
        elif kind == USER:
            current = self.users.get(subject)
            if current is None or (created, entry_id) >= current[:2]:
                self.users[subject] = (created, entry_id, not_before, expires)

    def prune(self, now: float) -> None:
        """Forget entries whose tokens have all expired."""
        self.jtis = {k: v for k, v in self.jtis.items() if v > now}
        self.families = {k: v for k, v in self.families.items() if v > now}
        self.users = {k: v for k, v in self.users.items() if v[3] > now}

    def user_not_before(self, user_id: str) -> int:
        """Tokens of ``user_id`` issued before this second are dead (0: none)."""
        entry = self.users.get(user_id)
        return entry[2] if entry is not None else 0


@dataclass
class RevocationCache:
    """Per-process revocation state, kept in :class:`~authgate.app_state.AppState`."""

    snapshot: Snapshot | None = None
    refreshed_at: float = 0.0  # monotonic
    full_reload_at: float = 0.0  # monotonic
    feed_since: float = 0.0  # wall clock: entries created since then are read next
    redis: Any = None
    redis_down_until: float = 0.0  # monotonic
    redis_dirty: bool = False  # this process failed to write an entry to Redis
    keys: dict[str, tuple[float, bytes | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Forget everything cached (tests, and after a fork)."""
        with self.lock:
            self.snapshot = None
            self.refreshed_at = self.full_reload_at = self.feed_since = 0.0
            self.keys = {}


def _settings() -> Any:
    return current_app.extensions["authgate"].settings


def _cache() -> RevocationCache:
    return current_app.extensions["authgate"].revocation


def _ttl_seconds() -> float:
    return _settings().revocation_cache_ms / 1000.0


def max_token_lifetime() -> int:
    """Seconds the longest-lived access token lives; family and user entries live this long."""
    return _settings().access_token_ttl + CLOCK_SKEW_SECONDS


# ---------------------------------------------------------------- writing


def deny_token(jti: str, expires_at: float) -> None:
    """Revoke the one access token ``jti`` (kept until ``expires_at``, its ``exp``)."""
    _record([(JTI, jti, 0, expires_at + CLOCK_SKEW_SECONDS)])


def revoke_families(family_ids: Iterable[str]) -> None:
    """Revoke every access token carrying one of these ``sid`` values."""
    until = clock.timestamp() + max_token_lifetime()
    _record([(FAMILY, family_id, 0, until) for family_id in family_ids])


def revoke_user_tokens(user_id: int, not_before: int) -> None:
    """Refuse access tokens of ``user_id`` with ``iat < not_before`` (:data:`DISABLED`: all).

    The newest call for a user wins, so re-enabling a user lowers the bar again.
    """
    until = clock.timestamp() + max_token_lifetime()
    _record([(USER, str(user_id), not_before, until)])


def _record(entries: list[tuple[str, str, int, float]]) -> None:
    """Store entries in the database (commit), this process's cache, then Redis."""
    if not entries:
        return
    now = clock.timestamp()
    rows = [
        Revocation(kind=k, subject=s, not_before=nb, created_at=now, expires_at=exp)
        for k, s, nb, exp in entries
    ]
    db.session.add_all(rows)
    db.session.execute(delete(Revocation).where(Revocation.expires_at < now - PURGE_AFTER_SECONDS))
    db.session.commit()
    stored = [Entry(r.kind, r.subject, r.not_before, now, r.expires_at, r.id) for r in rows]
    cache = _cache()
    # This process refuses at once, whatever a concurrent lookup fetches meanwhile.
    cached_until = time.monotonic() + _ttl_seconds()
    with cache.lock:
        for entry in stored:
            if cache.snapshot is not None:
                cache.snapshot.apply(entry)
            cache.keys[_key(entry.kind, entry.subject)] = (cached_until, _redis_value(entry))
    _push(cache, stored, now)


def _redis_value(entry: Entry) -> bytes:
    return str(entry.not_before).encode() if entry.kind == USER else b"1"


# ---------------------------------------------------------------- checking


def check(claims: Mapping[str, Any], state: AppState | None = None) -> None:
    """Raise TokenRevoked if the access token with these (verified) claims was revoked.

    Consults the ``jti`` denylist, the ``sid`` family and the user's ``not_before``
    (logout everywhere, disabled or deleted user). Never queries the database per call.
    ``state``: the app's state, when the caller has it already.
    """
    reason = revoked_reason(claims, state)
    if reason is not None:
        raise TokenRevoked(f"token revoked ({reason})", claims=claims)


def revoked_reason(claims: Mapping[str, Any], state: AppState | None = None) -> str | None:
    """Why the token with these claims is revoked (``jti``, ``family``, ``user``), or None.
    ``state``: the app's state, when the caller has it already."""
    jti = str(claims.get("jti", ""))
    sid = claims.get("sid")
    user_id = str(claims.get("sub", ""))
    iat = int(claims.get("iat", 0))
    if state is None:
        state = current_app.extensions["authgate"]
    cache, settings = state.revocation, state.settings
    if settings.redis_url and time.monotonic() >= cache.redis_down_until:
        values = _redis_lookup(cache, jti, sid, user_id)
        if values is not None:
            jti_hit, family_hit, not_before = values
            verdict = _verdict(jti_hit, family_hit, not_before, iat)
            if verdict is not None:
                return verdict
            # Backstop for an entry that never reached Redis (its writer could not reach
            # it): the database view, refreshed every BACKSTOP_SECONDS in this mode.
            return _snapshot_verdict(_snapshot(cache, BACKSTOP_SECONDS), jti, sid, user_id, iat)
    max_age = settings.revocation_cache_ms / 1000.0
    return _snapshot_verdict(_snapshot(cache, max_age), jti, sid, user_id, iat)


def _snapshot_verdict(
    snapshot: Snapshot, jti: str, sid: object, user_id: str, iat: int
) -> str | None:
    return _verdict(
        jti in snapshot.jtis,
        sid is not None and str(sid) in snapshot.families,
        snapshot.user_not_before(user_id),
        iat,
    )


def _verdict(jti_hit: bool, family_hit: bool, not_before: int, iat: int) -> str | None:
    if jti_hit:
        return JTI
    if family_hit:
        return FAMILY
    if iat < not_before:
        return USER
    return None


def _snapshot(cache: RevocationCache, max_age: float) -> Snapshot:
    """This process's database view, refreshed if older than ``max_age`` seconds."""
    now_mono = time.monotonic()
    if cache.snapshot is not None and now_mono - cache.refreshed_at < max_age:
        return cache.snapshot
    with cache.lock:
        if cache.snapshot is not None and time.monotonic() - cache.refreshed_at < max_age:
            return cache.snapshot
        now = clock.timestamp()
        full = cache.snapshot is None or now_mono - cache.full_reload_at > FULL_RELOAD_SECONDS
        query = select(*COLUMNS)
        if full:
            query = query.where(Revocation.expires_at > now)
        else:
            query = query.where(Revocation.created_at >= cache.feed_since - FEED_OVERLAP_SECONDS)
        with db.engine.connect() as connection:
            rows = connection.execute(query.order_by(Revocation.created_at, Revocation.id)).all()
        snapshot = Snapshot() if full or cache.snapshot is None else cache.snapshot
        for row in rows:
            snapshot.apply(Entry(*row))
        snapshot.prune(now)
        cache.snapshot = snapshot
        cache.feed_since = now
        cache.refreshed_at = now_mono
        if full:
            cache.full_reload_at = now_mono
        return snapshot


# ---------------------------------------------------------------- Redis


def _key(kind: str, subject: str) -> str:
    return f"rv:{kind}:{subject}"


def _client(cache: RevocationCache) -> Any:
    if cache.redis is None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        cache.redis = redis.Redis.from_url(
            _settings().redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
    return cache.redis


def _redis_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def _redis_down(cache: RevocationCache, exc: Exception) -> None:
    if time.monotonic() >= cache.redis_down_until:
        log.warning("revocation: Redis unavailable, using the database: %s", exc)
    cache.redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
    # Entries may have been written elsewhere while Redis was away from us too:
    # copy the database's live entries to Redis before trusting it again.
    cache.redis_dirty = True


def _redis_lookup(
    cache: RevocationCache, jti: str, sid: object, user_id: str
) -> tuple[bool, bool, int] | None:
    """``(jti revoked, family revoked, user not_before)`` from Redis and the key cache.

    None when Redis cannot be trusted right now (the caller then uses the database).
    """
    wanted = [_key(JTI, jti), _key(FAMILY, str(sid)) if sid is not None else None]
    wanted.append(_key(USER, user_id))
    now_mono = time.monotonic()
    found: dict[str, bytes | None] = {}
    missing: list[str] = []
    for key in wanted:
        if key is None:
            continue
        hit = cache.keys.get(key)
        if hit is not None and hit[0] > now_mono:
            found[key] = hit[1]
        else:
            missing.append(key)
    if missing:
        prefix = _settings().redis_prefix
        try:
            client = _client(cache)
            if cache.redis_dirty:
                _resync(cache, client)
            values = client.mget([prefix + SYNCED_MARKER] + [prefix + k for k in missing])
            if values[0] is None:
                _resync(cache, client)
                values = client.mget([prefix + SYNCED_MARKER] + [prefix + k for k in missing])
        except _redis_errors() as exc:
            _redis_down(cache, exc)
            return None
        expires = now_mono + _ttl_seconds()
        if len(cache.keys) > MAX_CACHED_KEYS:
            cache.keys = {}
        for key, value in zip(missing, values[1:], strict=True):
            found[key] = value
            if expires > now_mono:
                cache.keys[key] = (expires, value)
    user_value = found.get(wanted[2] or "")
    return (
        found.get(wanted[0] or "") is not None,
        wanted[1] is not None and found.get(wanted[1]) is not None,
        int(user_value) if user_value is not None else 0,
    )


def _push(cache: RevocationCache, rows: list[Entry], now: float) -> None:
    """Mirror new entries to Redis; on failure, remember to resync before trusting it."""
    if not _settings().redis_url:
        return
    if time.monotonic() < cache.redis_down_until:
        cache.redis_dirty = True
        return
    try:
        _write(_client(cache), rows, now)
    except _redis_errors() as exc:
        cache.redis_dirty = True
        _redis_down(cache, exc)


def _write(client: Any, rows: Iterable[Entry], now: float) -> None:
    prefix = _settings().redis_prefix
    pipe = client.pipeline(transaction=False)
    for row in rows:
        ttl_ms = int(math.ceil((row.expires_at - now) * 1000))
        if ttl_ms <= 0:
            continue
        pipe.set(prefix + _key(row.kind, row.subject), _redis_value(row), px=ttl_ms)
    pipe.execute()


def _resync(cache: RevocationCache, client: Any) -> None:
    """Copy every live entry from the database to Redis, then mark Redis as synced."""
    now = clock.timestamp()
    with db.engine.connect() as connection:
        result = connection.execute(
            select(*COLUMNS)
            .where(Revocation.expires_at > now)
            .order_by(Revocation.created_at, Revocation.id)
        )
        rows = [Entry(*row) for row in result]
    _write(client, rows, now)
    client.set(_settings().redis_prefix + SYNCED_MARKER, b"1", ex=SYNCED_MARKER_TTL_SECONDS)
    cache.redis_dirty = False
    cache.keys = {}
    log.info("revocation: copied %d live entries to Redis", len(rows))
