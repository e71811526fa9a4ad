"""Settings, read once from ``AUTHGATE_*`` environment variables and validated.

Nothing else in AuthGate reads ``os.environ``: every module receives a
:class:`Settings` through ``current_app.extensions["authgate"].settings``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from limits import parse_many

log = logging.getLogger(__name__)

#: Secrets that appear in tutorials and sample configs; refused in production.
KNOWN_PLACEHOLDERS = frozenset(
    {
        "top-secret!",
        "changeme",
        "change-me",
        "secret",
        "secret-key",
        "your-secret-key",
        "dev",
        "development",
        "the quick brown fox jumps over the lazy dog",
    }
)

MIN_PRODUCTION_SECRET_BYTES = 32
ENVIRONMENTS = ("development", "production", "testing")
#: RFC 6749 3.3 scope-token characters: printable ASCII except space, ``"`` and ``\\``.
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
DEFAULT_OAUTH_SCOPES = (
    "openid=Confirm who you are;"
    "profile=See your username;"
    "resource:read=Read your protected resource"
)
HASH_PROFILES = ("default", "cheapest")
LOG_FORMATS = ("text", "json")
#: Who may read /metrics by default: loopback and private networks, never the Internet.
DEFAULT_METRICS_ALLOW = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


#: Settings whose empty value means something (else an empty variable counts as unset).
EMPTY_IS_A_VALUE = frozenset({"metrics_allow"})


class ConfigError(ValueError):
    """Raised when a setting is missing, malformed, or unsafe for the environment."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Typed, validated configuration of one AuthGate process."""

    env: str = "development"
    secret_key: str = ""
    instance_path: Path = Path("instance")
    database_url: str = ""
    redis_url: str | None = None
    # Database connection pool, per worker process (threads of one worker share it).
    db_pool_size: int = 5
    # Connections a worker may open beyond the pool under bursts (closed when returned).
    db_max_overflow: int = 5
    # Seconds a request waits for a pooled connection before a 503.
    db_pool_timeout: int = 5
    # Test each pooled connection before use (a restarted database costs no failed request).
    db_pool_pre_ping: bool = True
    # Seconds to wait for a new PostgreSQL connection before a 503 (libpq connect_timeout).
    db_connect_timeout: int = 5
    # Longest a PostgreSQL statement may run, in milliseconds (0: no limit).
    db_statement_timeout_ms: int = 10000
    # Prefix of every Redis key AuthGate writes, so several deployments (or tests) share one Redis.
    redis_prefix: str = "authgate:"
    issuer: str = "http://127.0.0.1:5000"
    audience: str | None = None
    access_token_ttl: int = 600
    # Refresh tokens: idle lifetime (each rotation restarts it) and absolute lifetime of a login.
    refresh_token_idle_ttl: int = 14 * 24 * 3600
    refresh_token_absolute_ttl: int = 90 * 24 * 3600
    # Seconds during which a just-spent refresh token may be presented again (concurrent
    # refreshes) and yields the same new refresh token instead of revoking the family.
    refresh_grace_seconds: int = 10
    # How long one process trusts its cached revocation state (milliseconds, at most 1000:
    # revocations must reach every process within 1 s; half of that leaves a margin for
    # request latency under load).
    revocation_cache_ms: int = 500
    # SQLite only: PRAGMA synchronous in WAL mode. "normal" syncs at checkpoints (a process
    # crash loses nothing; a power cut may lose the last commits); "full" syncs every commit.
    sqlite_synchronous: str = "normal"
    # Access tokens whose signature a process already checked, kept per process (0: off);
    # expiry and revocation are still checked on every request.
    token_cache_size: int = 10_000
    # Signing keys: rotate automatically every N days (0: only by `authgate keys rotate`);
    # publish a new key this many seconds before it signs (>= jwks_max_age); JWKS max-age.
    key_rotation_days: int = 0
    key_prepublish_seconds: int = 600
    jwks_max_age: int = 300
    password_min_length: int = 15
    password_max_length: int = 1024
    password_hash_profile: str = "default"  # noqa: S105 (a profile name, not a secret)
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    # Flask debug mode: development only, refused in production (tracebacks leak secrets).
    debug: bool = False
    # Send Strict-Transport-Security even when the request did not arrive over HTTPS
    # (set it when TLS ends at a proxy that is not in AUTHGATE_TRUSTED_PROXIES).
    hsts: bool = False
    # Comma-separated exact browser origins allowed to call the API (CORS); empty = none.
    cors_origins: str = ""
    # Comma-separated addresses/networks of reverse proxies whose X-Forwarded-For
    # and X-Forwarded-Proto are trusted (one hop, through Werkzeug's ProxyFix).
    trusted_proxies: str = ""
    # Master switch of every throttle; 0 only for load benchmarks and bulk test setups.
    ratelimit: bool = True
    # Failed password checks allowed per client address (limits notation, ';'-separated).
    ratelimit_address: str = "30/minute;300/hour"
    # Failed password checks allowed per (account, client address).
    ratelimit_pair: str = "10/minute;30/hour"
    # Registrations allowed per client address (each one costs a password hash).
    ratelimit_register: str = "100/hour"
    # Consecutive failures per account before waits begin.
    ratelimit_account_free: int = 5
    # First wait (seconds) once the free failures are spent; doubles with each failure.
    ratelimit_account_wait: int = 30
    # Longest wait (seconds) between two checks of one account's password.
    ratelimit_account_max_wait: int = 3600
    # Consecutive failures per account that are ever checked (NIST SP 800-63B-4: <= 100).
    ratelimit_account_max_failures: int = 100
    # How long (seconds) a failure streak is remembered after it starts; also ends the
    # hard lock at max_failures, so nobody can lock a victim out for good.
    ratelimit_account_ttl: int = 30 * 86400
    # Reject passwords found in the offline common-password list (zxcvbn, 30,000 entries).
    password_blocklist: bool = True
    # Memory one worker may spend on concurrent argon2 hashes; sizes the hashing semaphore.
    hash_memory_mib: int = 256
    # How long (milliseconds) a request waits for a hashing slot before a 503.
    hash_wait_ms: int = 2000
    # Test-only: a file holding seconds to add to the wall clock (refused unless testing).
    test_clock_file: Path | None = None
    # OAuth 2.1 / OIDC authorization server (see README "OAuth 2.1 and OpenID Connect").
    # Scopes clients may ask for, "name=what the consent page says;name2=...".
    oauth_scopes: str = DEFAULT_OAUTH_SCOPES
    # The scope an OAuth access token needs for GET /api/resource.
    resource_scope: str = "resource:read"
    # Lifetime of an authorization code in seconds (OAuth 2.1 4.1.2: short, single use).
    oauth_code_ttl: int = 60
    # How long a login on the HTML pages lasts before the person must log in again.
    login_session_ttl: int = 12 * 3600
    # Send the session cookie without ``Secure`` (plain-HTTP local development only).
    insecure_cookies: bool = False
    # Log lines as plain text or as one JSON object per line (see README "Health, metrics
    # and logs").
    log_format: str = "text"
    # Client networks allowed to read /metrics (comma-separated; "" = nobody).
    metrics_allow: str = DEFAULT_METRICS_ALLOW
    # Bearer token /metrics requires on top of the network rule ("" = none);
    # AUTHGATE_METRICS_TOKEN_FILE reads it from a file.
    metrics_token: str = ""  # noqa: S105 (no default token)
    # "host:port": serve /metrics there, from a process of its own, instead of on the API port.
    metrics_listen: str = ""
    # Bound (milliseconds) of each /readyz dependency check.
    readyz_timeout_ms: int = 1000

    @property
    def token_audience(self) -> str:
        """The ``aud`` of first-party access tokens (the issuer unless configured)."""
        return self.audience or self.issuer

    @property
    def cors_origin_list(self) -> list[str]:
        """The configured CORS origins, one exact ``scheme://host[:port]`` each."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The networks whose ``X-Forwarded-*`` headers are believed."""
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.trusted_proxies.split(",")
            if p.strip()
        ]

    @property
    def metrics_allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The client networks allowed to read ``/metrics``."""
        return [
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.metrics_allow.split(",")
            if p.strip()
        ]

    @property
    def metrics_listen_address(self) -> tuple[str, int] | None:
        """``AUTHGATE_METRICS_LISTEN`` as (host, port), or None when unset."""
        if not self.metrics_listen:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def scope_catalog(self) -> dict[str, str]:
        """The declared OAuth scopes, each with the text the consent page shows for it."""
        catalog: dict[str, str] = {}
        for entry in self.oauth_scopes.split(";"):
            name, _, description = entry.strip().partition("=")
            if name.strip():
                catalog[name.strip()] = description.strip() or name.strip()
        return catalog

    @property
    def is_production(self) -> bool:
        """True when running with ``AUTHGATE_ENV=production``."""
        return self.env == "production"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings: ``defaults``, then ``AUTHGATE_*`` variables, then ``overrides``.

        Raises ConfigError for malformed values or an unsafe production setup.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(defaults or {})
        for field in dataclasses.fields(cls):
            raw = env.get(f"AUTHGATE_{field.name.upper()}")
            if raw is not None and (raw != "" or field.name in EMPTY_IS_A_VALUE):
                values[field.name] = _parse(field.name, raw, field.type)
        secret_file = env.get("AUTHGATE_SECRET_KEY_FILE")
        if secret_file and "secret_key" not in values:
            values["secret_key"] = _read_secret("AUTHGATE_SECRET_KEY_FILE", secret_file)
        token_file = env.get("AUTHGATE_METRICS_TOKEN_FILE")
        if token_file and "metrics_token" not in values:
            values["metrics_token"] = _read_secret("AUTHGATE_METRICS_TOKEN_FILE", token_file)
        values.update(overrides)
        settings = cls(**values)
        return settings.resolved()

    def resolved(self) -> Settings:
        """Fill derived defaults (database path, development secret) and validate."""
        settings = self
        instance = Path(settings.instance_path)
        if not settings.database_url:
            db_file = (instance / "authgate.db").resolve()
            settings = dataclasses.replace(settings, database_url=f"sqlite:///{db_file}")
        settings._validate()
        if not settings.secret_key:
            settings = dataclasses.replace(settings, secret_key=_development_secret(instance))
        return settings

    def _validate(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"AUTHGATE_ENV must be one of {', '.join(ENVIRONMENTS)}")
        if self.password_hash_profile not in HASH_PROFILES:
            raise ConfigError(f"AUTHGATE_PASSWORD_HASH_PROFILE must be one of {HASH_PROFILES}")
        if not 1 <= self.password_min_length <= 64:
            raise ConfigError("AUTHGATE_PASSWORD_MIN_LENGTH must be between 1 and 64")
        self._validate_hardening()
        if self.access_token_ttl < 1:
            raise ConfigError("AUTHGATE_ACCESS_TOKEN_TTL must be a positive number of seconds")
        self._validate_lifecycle()
        if not self.issuer.startswith(("http://", "https://")) or self.issuer.endswith("/"):
            raise ConfigError("AUTHGATE_ISSUER must be an http(s) URL without a trailing slash")
        self._validate_oauth()
        self._validate_observability()
        if self.is_production:
            self._validate_production()

    def _validate_hardening(self) -> None:
        for name in ("ratelimit_address", "ratelimit_pair", "ratelimit_register"):
            try:
                parse_many(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(
                    f"AUTHGATE_{name.upper()} must be limits like '30/minute;300/hour'"
                ) from exc
        for name in (
            # Free failures too: with 0, a fresh account would wait before its first check.
            "ratelimit_account_free",
            "ratelimit_account_wait",
            "ratelimit_account_max_wait",
            "ratelimit_account_max_failures",
            "ratelimit_account_ttl",
            "hash_memory_mib",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"AUTHGATE_{name.upper()} must be a positive integer")
        if self.hash_wait_ms < 0:
            raise ConfigError("AUTHGATE_HASH_WAIT_MS must be >= 0")
        for origin in self.cors_origin_list:
            # Exact origins only: "*" would expose the API to every site, "null" to
            # sandboxed iframes and file:// pages (CORS cheat sheet, RFC 6454).
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ConfigError(
                    f"AUTHGATE_CORS_ORIGINS entries must be exact origins like "
                    f"https://app.example.com, got {origin!r}"
                )
        try:
            self.trusted_proxy_networks  # noqa: B018 (parsed for validation)
        except ValueError as exc:
            raise ConfigError(f"AUTHGATE_TRUSTED_PROXIES: {exc}") from exc
        if self.test_clock_file is not None and self.env != "testing":
            raise ConfigError("AUTHGATE_TEST_CLOCK_FILE is refused unless AUTHGATE_ENV=testing")

    def _validate_lifecycle(self) -> None:
        if self.refresh_token_idle_ttl < 1 or self.refresh_token_absolute_ttl < 1:
            raise ConfigError("refresh token lifetimes must be positive numbers of seconds")
        if self.refresh_grace_seconds < 0:
            raise ConfigError("AUTHGATE_REFRESH_GRACE_SECONDS must not be negative")
        if self.sqlite_synchronous not in ("normal", "full"):
            raise ConfigError("AUTHGATE_SQLITE_SYNCHRONOUS must be normal or full")
        if not 0 <= self.token_cache_size <= 1_000_000:
            raise ConfigError("AUTHGATE_TOKEN_CACHE_SIZE must be between 0 and 1000000")
        if not 0 <= self.revocation_cache_ms <= 1000:
            raise ConfigError("AUTHGATE_REVOCATION_CACHE_MS must be between 0 and 1000")
        if self.key_rotation_days < 0 or self.jwks_max_age < 0:
            raise ConfigError("AUTHGATE_KEY_ROTATION_DAYS and AUTHGATE_JWKS_MAX_AGE must be >= 0")
        if self.key_prepublish_seconds < self.jwks_max_age:
            # A verifier that cached the JWKS just before a rotation must see the new key
            # before the first token signed by it.
            raise ConfigError("AUTHGATE_KEY_PREPUBLISH_SECONDS must be >= AUTHGATE_JWKS_MAX_AGE")
        self._validate_database()
        if not self.redis_prefix:
            raise ConfigError("AUTHGATE_REDIS_PREFIX must not be empty")

    def _validate_database(self) -> None:
        for name in ("db_pool_size", "db_pool_timeout", "db_connect_timeout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AUTHGATE_{name.upper()} must be a positive integer")
        if self.db_max_overflow < 0 or self.db_statement_timeout_ms < 0:
            raise ConfigError("AUTHGATE_DB_MAX_OVERFLOW and DB_STATEMENT_TIMEOUT_MS must be >= 0")

    def _validate_oauth(self) -> None:
        catalog = self.scope_catalog
        bad = [name for name in catalog if not SCOPE_TOKEN.match(name)]
        if bad or not catalog:
            raise ConfigError(f"AUTHGATE_OAUTH_SCOPES has invalid scope names: {bad}")
        if self.resource_scope not in catalog:
            raise ConfigError("AUTHGATE_RESOURCE_SCOPE must be one of AUTHGATE_OAUTH_SCOPES")
        if not 1 <= self.oauth_code_ttl <= 600:
            raise ConfigError("AUTHGATE_OAUTH_CODE_TTL must be 1 to 600 seconds")
        if self.login_session_ttl < 60:
            raise ConfigError("AUTHGATE_LOGIN_SESSION_TTL must be at least 60 seconds")

    def _validate_observability(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"AUTHGATE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        try:
            self.metrics_allow_networks  # noqa: B018 (parsed for validation)
        except ValueError as exc:
            raise ConfigError(f"AUTHGATE_METRICS_ALLOW: {exc}") from exc
        try:
            address = self.metrics_listen_address
        except ValueError as exc:
            raise ConfigError("AUTHGATE_METRICS_LISTEN must be host:port") from exc
        if address is not None and (not address[0] or not 0 < address[1] < 65536):
            raise ConfigError("AUTHGATE_METRICS_LISTEN must be host:port")
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ConfigError("AUTHGATE_METRICS_TOKEN must be at least 16 characters")
        if not 10 <= self.readyz_timeout_ms <= 30000:
            raise ConfigError("AUTHGATE_READYZ_TIMEOUT_MS must be between 10 and 30000")

    def _validate_production(self) -> None:
        if self.debug:
            raise ConfigError("production refuses AUTHGATE_DEBUG=1 (debug pages leak secrets)")
        secret = self.secret_key
        if not secret:
            raise ConfigError("production requires AUTHGATE_SECRET_KEY or AUTHGATE_SECRET_KEY_FILE")
        if len(secret.encode()) < MIN_PRODUCTION_SECRET_BYTES:
            raise ConfigError(
                f"AUTHGATE_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes"
            )
        if secret.strip().lower() in KNOWN_PLACEHOLDERS or len(set(secret)) < 8:
            raise ConfigError("AUTHGATE_SECRET_KEY is a known placeholder or too repetitive")
        if not self.issuer.startswith("https://"):
            raise ConfigError("production requires an https:// AUTHGATE_ISSUER")
        if self.password_hash_profile != "default":  # noqa: S105
            raise ConfigError("AUTHGATE_PASSWORD_HASH_PROFILE=cheapest is for tests only")
        if self.insecure_cookies:
            raise ConfigError("AUTHGATE_INSECURE_COOKIES is for local HTTP development only")


@functools.lru_cache(maxsize=16)
def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose``, derived from the secret key (HKDF-SHA256).

    Each purpose gets its own key, so no two uses of the secret key share one.
    """
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return kdf.derive(secret_key.encode())


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"AUTHGATE_{name.upper()} must be an integer, got {raw!r}") from exc
    if kind == "bool":
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ConfigError(f"AUTHGATE_{name.upper()} must be 0 or 1, got {raw!r}")
    return raw


def _read_secret(variable: str, path: str) -> str:
    """The secret in the file ``variable`` names; ConfigError if it is unreadable, empty,
    not a regular file, or writable by group or others.

    An empty file must not mean "no secret": a mount that failed to fill would open the
    door the secret guards. The mode checked is the one of the file descriptor the secret
    is read from (no race between the check and the read); a file readable by group or
    others is accepted with a warning (:func:`_check_secret_mode`).
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from exc
    try:
        _check_secret_mode(variable, path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        # No exception text: it would quote bytes of the secret.
        raise ConfigError(f"{variable}: {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{variable}: {path} is empty")
    return secret


def _check_secret_mode(variable: str, path: str, status: os.stat_result) -> None:
    """Refuse a secret file that is not a regular file or that group or others may write
    (whoever can write it can replace the secret and forge every token); warn once when
    group or others may read it (Docker swarm secrets are 0444, Kubernetes secret volumes
    0644 by default). Messages name the file and its mode, never its content."""
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(f"{variable}: {path} is not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{variable}: {path} has mode {mode:04o}, writable by group or others (who could "
            f"replace the secret); make it 0600 or 0400 (chmod 600 {path}; Kubernetes: "
            "defaultMode: 0400)"
        )
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s: %s has mode %04o, readable by group or others; make it 0600 or 0400 "
            "(chmod 600; Kubernetes: defaultMode: 0400; Docker secrets: mode: 0400)",
            variable,
            path,
            mode,
        )


def _development_secret(instance: Path) -> str:
    """Read or create ``instance/secret_key`` with mode 0600 (development only).

    The file appears with its content or not at all (written aside, then linked into
    place), so a process starting at the same moment never reads it half-written; an
    empty one (from a crash of an older version) is refused, not used as the secret.
    """
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        fd, spare = tempfile.mkstemp(dir=instance, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(spare, path)
        finally:
            os.unlink(spare)
    return _read_secret("the development secret", str(path))
