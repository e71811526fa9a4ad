"""The one seam through which AuthGate reads the time, so tests can move it."""

from __future__ import annotations

import datetime as dt
import time


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.fromtimestamp(timestamp(), dt.UTC)


def timestamp() -> float:
    """Seconds since the epoch (wall clock)."""
    return time.time()
