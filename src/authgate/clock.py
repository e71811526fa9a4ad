"""The one seam through which AuthGate reads the time, so tests can move it.

In-process tests monkeypatch :func:`timestamp`. Tests of real server processes set
``AUTHGATE_TEST_CLOCK_FILE`` (refused unless ``AUTHGATE_ENV=testing``): the file holds a
number of seconds that every process of the server adds to the wall clock, so a test
moves time forward by rewriting the file instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from flask import current_app, has_app_context


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.fromtimestamp(timestamp(), dt.UTC)


def timestamp() -> float:
    """Seconds since the epoch (wall clock, plus the test offset when one is configured)."""
    return time.time() + _test_offset()


def monotonic() -> float:
    """A clock for measuring intervals inside one process (health re-checks, waits)."""
    return time.monotonic()


def _test_offset() -> float:
    if not has_app_context():
        return 0.0
    state = current_app.extensions.get("authgate")
    path: Path | None = getattr(getattr(state, "settings", None), "test_clock_file", None)
    if path is None:
        return 0.0
    try:
        return float(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def write_test_offset(path: Path, seconds: float) -> None:
    """Set the offset a test clock file holds (used by tests of real servers)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(float(seconds)))
    tmp.replace(path)
