"""Per-app state kept in ``app.extensions["authgate"]`` (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from authgate.config import Settings
from authgate.keys import KeyCache
from authgate.metrics import Metrics
from authgate.passwords import Hasher, HashingSlots, PasswordPolicy
from authgate.revocation import RevocationCache
from authgate.throttle import Throttle
from authgate.tokens import VerifiedTokens


@dataclass
class AppState:
    """Everything one AuthGate app holds besides its Flask extensions."""

    settings: Settings
    hasher: Hasher
    password_policy: PasswordPolicy
    # The one throttle of every credential check (counters in Redis or memory).
    throttle: Throttle
    # Bounds concurrent argon2 work in this worker process.
    hashing_slots: HashingSlots
    keys: KeyCache = field(default_factory=KeyCache)
    revocation: RevocationCache = field(default_factory=RevocationCache)
    # Prometheus counters and histograms of this app (see authgate.metrics).
    metrics: Metrics = field(default_factory=Metrics)
    # Access tokens this process already verified (AUTHGATE_TOKEN_CACHE_SIZE entries).
    verified_tokens: VerifiedTokens = field(default_factory=lambda: VerifiedTokens(0))
    # Set by authgate.oauth.init_app: Authlib's AuthorizationServer and ResourceProtector.
    authorization_server: Any = None
    resource_protector: Any = None


def state() -> AppState:
    """The state of the current app."""
    return current_app.extensions["authgate"]


def settings() -> Settings:
    """The settings of the current app."""
    return state().settings
