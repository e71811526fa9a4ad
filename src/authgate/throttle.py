"""The one throttle in front of every credential check (ASVS 6.1.1, 6.3.1; NIST SP 800-63B-4).

Every path that checks a password or a client secret calls :func:`guard` (or the
:func:`check` / :func:`record_failure` / :func:`record_success` triple it is made of)
*before* any hashing. Three counters decide:

- per client address: failed checks in fixed windows (``AUTHGATE_RATELIMIT_ADDRESS``);
- per (account, address): failed checks in fixed windows (``AUTHGATE_RATELIMIT_PAIR``);
- per account, across addresses: consecutive failures since the last success. After
  ``ratelimit_account_free`` of them each further check waits ``ratelimit_account_wait``
  seconds, doubling per failure up to ``ratelimit_account_max_wait``; at
  ``ratelimit_account_max_failures`` nothing more is checked until the streak is
  ``ratelimit_account_ttl`` old. A success resets the streak.

An account is an opaque string: ``"user:" + accounts.username_key(name)`` for people,
``"client:" + client_id`` for OAuth clients. It is never looked up, so an unknown
username is counted, refused and timed exactly like a real one; and a refusal happens
before the password is looked at, so a locked account answers the same whether the
password was right or wrong.

Storage and time. Counters live in a ``limits`` storage: Redis when
``AUTHGATE_REDIS_URL`` is set (keys under ``AUTHGATE_REDIS_PREFIX`` + ``ratelimit:``,
shared by every process), else per-process memory. If Redis stops answering, the
throttle falls back to per-process memory (logging a warning) and goes back to Redis
once a health check passes. Windows and waits are computed from :mod:`authgate.clock`,
not from the storage's own clock: a fixed window is a ``limits`` counter whose key
names the window (``floor(now / length)``), and each failure of a streak stores its
time; the storage's expiry only collects garbage. So a test that moves
``authgate.clock`` (or a server's test clock file) forward sees waits end, without
sleeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from flask import current_app, has_request_context, request
from limits import RateLimitItem, RateLimitItemPerSecond, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from authgate import audit, clock
from authgate.config import Settings
from authgate.errors import InvalidCredentials, Throttled

log = logging.getLogger(__name__)

#: Seconds between two health checks of an unreachable Redis.
RECHECK_SECONDS = 5.0
#: Seconds to wait for Redis before falling back to memory.
REDIS_TIMEOUT_SECONDS = 0.5
#: Extra lifetime of stored keys beyond their logical end (clock skew between hosts).
GRACE_SECONDS = 60


T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """A credential check that :func:`check` let through; hand it to ``record_*``."""

    account: str
    address: str
    failures: int
    user_id: int | None = None
    client_id: str | None = None


class Throttle:
    """The throttle of one app: its storage (Redis or memory), limits and escalation rules."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit
        self.free = settings.ratelimit_account_free
        self.first_wait = settings.ratelimit_account_wait
        self.max_wait = settings.ratelimit_account_max_wait
        self.max_failures = settings.ratelimit_account_max_failures
        self.streak_ttl = settings.ratelimit_account_ttl
        self.address_limits = parse_many(settings.ratelimit_address)
        self.pair_limits = parse_many(settings.ratelimit_pair)
        self.register_limits = parse_many(settings.ratelimit_register)
        self.ticket = RateLimitItemPerSecond(1, self.max_wait + GRACE_SECONDS, namespace="TICKET")
        self.memory = MemoryStorage()
        self.redis: Storage | None = None
        if settings.redis_url and self.enabled:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self.redis = RedisStorage(
                settings.redis_url,
                key_prefix=f"{settings.redis_prefix}ratelimit",
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                # One immediate retry replaces a connection a Redis restart broke; no
                # backoff, so an outage costs milliseconds before memory takes over.
                # (limits types its pass-through options too narrowly for a Retry.)
                retry=Retry(NoBackoff(), 1),  # type: ignore[arg-type]
            )
        pepper_source = b"authgate throttle\0" + settings.secret_key.encode()
        self._pepper = hashlib.sha256(pepper_source).digest()
        self._redis_down_since: float | None = None
        self._lock = threading.Lock()

    # -- storage with fallback -------------------------------------------------

    @property
    def using_fallback(self) -> bool:
        """True while Redis is configured but unreachable and memory stands in."""
        return self.redis is not None and self._redis_down_since is not None

    def storage(self) -> Storage:
        """Redis if configured and healthy, else this process's memory."""
        if self.redis is None:
            return self.memory
        with self._lock:
            down_since = self._redis_down_since
            if down_since is None:
                return self.redis
            if clock.timestamp() - down_since < RECHECK_SECONDS:
                return self.memory
            if self.redis.check():
                self._redis_down_since = None
                log.warning("rate-limit storage: Redis reachable again; using it")
                return self.redis
            self._redis_down_since = clock.timestamp()
            return self.memory

    def _run(self, operation: Callable[[Storage, FixedWindowRateLimiter], T]) -> T:
        """Run ``operation`` on Redis, or on memory when Redis is down (switching on error)."""
        storage = self.storage()
        try:
            return operation(storage, FixedWindowRateLimiter(storage))
        except Exception as exc:
            if self.redis is None or storage is not self.redis:
                raise
            if not isinstance(exc, self.redis.base_exceptions):
                raise
            with self._lock:
                self._redis_down_since = clock.timestamp()
            log.warning(
                "rate-limit storage: Redis unreachable (%s); falling back to per-process memory",
                type(exc).__name__,
            )
            return operation(self.memory, FixedWindowRateLimiter(self.memory))

    # -- keys and windows ------------------------------------------------------

    def _hash(self, value: str) -> str:
        """Keys name accounts by a keyed hash: Redis never holds a username."""
        digest = hmac.new(self._pepper, value.encode("utf-8", "surrogatepass"), "sha256")
        return digest.hexdigest()[:32]

    def _windows(self, who: str, address: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        by_address: list[tuple[RateLimitItem, tuple[str, ...]]] = [
            (item, ("addr", address)) for item in self.address_limits
        ]
        by_pair: list[tuple[RateLimitItem, tuple[str, ...]]] = [
            (item, ("pair", who, address)) for item in self.pair_limits
        ]
        return by_address + by_pair

    @staticmethod
    def _window(item: RateLimitItem, now: float) -> tuple[str, float]:
        length = item.get_expiry()
        start = math.floor(now / length) * length
        return str(int(start)), start + length

    def _wait_after(self, failures: int) -> int:
        exponent = min(failures - self.free, 32)
        return min(self.first_wait * 2**exponent, self.max_wait)

    # -- the rules -------------------------------------------------------------

    def check(self, account: str, address: str) -> int:
        """Raise Throttled if a check of ``account`` from ``address`` may not happen now.

        Returns the account's current count of consecutive failures.
        """
        who = self._hash(account)
        now = clock.timestamp()

        def operation(storage: Storage, limiter: FixedWindowRateLimiter) -> int:
            retry = 0.0
            for item, ids in self._windows(who, address):
                window, end = self._window(item, now)
                if not limiter.test(item, *ids, window):
                    retry = max(retry, end - now)
            failures = storage.get(f"acct/{who}/n")
            started = 0.0
            if failures:
                started = storage.get(f"acct/{who}/at/1") / 1000
                if started and now >= started + self.streak_ttl:
                    self._forget(storage, who, failures)
                    failures = 0
            if failures >= self.max_failures:
                retry = max(retry, started + self.streak_ttl - now if started else self.max_wait)
            elif failures >= self.free:
                last = storage.get(f"acct/{who}/at/{failures}") / 1000 or now
                retry = max(retry, last + self._wait_after(failures) - now)
                # One check per unlock: a burst that arrives the moment a wait ends
                # gets a single try, so the cap on checked failures holds exactly.
                ticket = (who, str(failures), str(int(last * 1000)))
                if retry <= 0 and not limiter.hit(self.ticket, *ticket):
                    retry = 1
            if retry > 0:
                raise Throttled(math.ceil(retry))
            return failures

        return self._run(operation)

    def record_failure(self, account: str, address: str) -> None:
        """Count a failed check against the address, the pair and the account's streak."""
        who = self._hash(account)
        now = clock.timestamp()
        keep = self.streak_ttl + GRACE_SECONDS

        def operation(storage: Storage, limiter: FixedWindowRateLimiter) -> None:
            for item, ids in self._windows(who, address):
                limiter.hit(item, *ids, self._window(item, now)[0])
            failures = storage.incr(f"acct/{who}/n", keep)
            if failures <= self.max_failures + 1:
                # Each number is written by exactly one request (the one whose increment
                # produced it); clear first in case an older streak left the key behind.
                storage.clear(f"acct/{who}/at/{failures}")
                storage.incr(f"acct/{who}/at/{failures}", keep, amount=int(now * 1000))

        self._run(operation)

    def record_success(self, account: str, failures: int) -> None:
        """End the account's failure streak (NIST SP 800-63B-4: success resets)."""
        if not failures:
            return
        who = self._hash(account)
        self._run(lambda storage, _limiter: self._forget(storage, who, failures))

    def _forget(self, storage: Storage, who: str, failures: int) -> None:
        storage.clear(f"acct/{who}/n")
        for number in range(1, min(failures, self.max_failures + 1) + 1):
            storage.clear(f"acct/{who}/at/{number}")

    def hit_registration(self, address: str) -> None:
        """Count one registration from ``address``; raise Throttled when over the limit."""
        now = clock.timestamp()

        def operation(_storage: Storage, limiter: FixedWindowRateLimiter) -> None:
            retry = 0.0
            for item in self.register_limits:
                window, end = self._window(item, now)
                if not limiter.hit(item, "register", address, window):
                    retry = max(retry, end - now)
            if retry > 0:
                raise Throttled(math.ceil(retry))

        self._run(operation)

    def reset(self, account: str) -> None:
        """Forget an account's failure streak (operator unlock)."""
        who = self._hash(account)
        self._run(lambda storage, _l: self._forget(storage, who, self.max_failures + 1))


# -- the public API, on the current app's throttle ------------------------------


def current() -> Throttle:
    """The current app's throttle."""
    return current_app.extensions["authgate"].throttle


def client_address() -> str:
    """The client's address as AuthGate trusts it (X-Forwarded-For only via trusted proxies)."""
    if has_request_context() and request.remote_addr:
        return request.remote_addr
    return "local"


def check(
    account: str,
    address: str | None = None,
    *,
    user_id: int | None = None,
    client_id: str | None = None,
) -> Attempt:
    """Decide, before any hashing, whether a credential of ``account`` may be checked now.

    ``account`` is ``"user:" + accounts.username_key(name)`` or ``"client:" + client_id``;
    ``address`` defaults to the request's client address. Raises Throttled (429 with
    ``Retry-After``) and records ``login.throttled`` when a limit is reached; otherwise
    returns an :class:`Attempt` to pass to :func:`record_failure` or :func:`record_success`.
    ``user_id``/``client_id`` only label the audit event.
    """
    address = address or client_address()
    throttle = current()
    if not throttle.enabled:
        return Attempt(account, address, 0, user_id, client_id)
    try:
        failures = throttle.check(account, address)
    except Throttled as exc:
        audit.record(
            "login.throttled",
            user_id=user_id,
            client_id=client_id,
            retry_after=exc.retry_after,
        )
        raise
    return Attempt(account, address, failures, user_id, client_id)


def record_failure(attempt: Attempt) -> None:
    """Count a failed check of ``attempt`` (wrong password, unknown account, bad secret)."""
    throttle = current()
    if throttle.enabled:
        throttle.record_failure(attempt.account, attempt.address)


def record_success(attempt: Attempt) -> None:
    """Reset the failure streak of ``attempt``'s account after a correct credential."""
    throttle = current()
    if throttle.enabled:
        throttle.record_success(attempt.account, attempt.failures)


@contextlib.contextmanager
def guard(
    account: str,
    address: str | None = None,
    *,
    user_id: int | None = None,
    client_id: str | None = None,
    failure: type[BaseException] | tuple[type[BaseException], ...] = InvalidCredentials,
) -> Iterator[Attempt]:
    """Wrap one credential check: :func:`check` first, then count its outcome.

    The block runs only if the throttle allows it (else Throttled is raised before it);
    an exception of type ``failure`` leaving the block counts as a failed check and is
    re-raised; leaving normally counts as a success. Example for a client secret::

        with throttle.guard("client:" + client_id, client_id=client_id,
                            failure=InvalidClientError):
            verify_secret(...)  # raises InvalidClientError when wrong
    """
    attempt = check(account, address, user_id=user_id, client_id=client_id)
    try:
        yield attempt
    except failure:
        record_failure(attempt)
        raise
    record_success(attempt)


def check_registration(address: str | None = None) -> None:
    """Count a registration (it costs a hash) per client address; raise Throttled over the limit."""
    throttle = current()
    if not throttle.enabled:
        return
    address = address or client_address()
    try:
        throttle.hit_registration(address)
    except Throttled as exc:
        audit.record("registration.throttled", retry_after=exc.retry_after)
        raise


def reset(account: str) -> None:
    """Forget ``account``'s failure streak (``authgate throttle reset``)."""
    current().reset(account)
