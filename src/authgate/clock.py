"""The one seam through which AuthGate reads the time, so tests can move it.

In-process tests monkeypatch :func:`timestamp`. Tests of real server processes set
``AUTHGATE_TEST_CLOCK_FILE`` (refused unless ``AUTHGATE_ENV=testing``): the file holds
either a number of seconds every process of the server adds to the wall clock, or
``@`` and an epoch time at which the server's clock stands still. A test moves time
forward by rewriting the file instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app, has_app_context

if TYPE_CHECKING:
    from authgate.config import Settings


def now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.fromtimestamp(timestamp(), dt.UTC)


def timestamp(settings: Settings | None = None) -> float:
    """Seconds since the epoch (wall clock, or the test clock when one is configured).

    ``settings``: the current app's settings, from a caller on the token path that has
    them already (it saves a context lookup); else they are looked up.
    """
    path = _app_clock_file() if settings is None else settings.test_clock_file
    if path is None:
        return time.time()
    frozen, value = _test_clock(path)
    if frozen:
        return value
    return time.time() + value


def _app_clock_file() -> Path | None:
    """The current app's test clock file, if there is an app and it has one."""
    if not has_app_context():
        return None
    state = current_app.extensions.get("authgate")
    return getattr(getattr(state, "settings", None), "test_clock_file", None)


def _test_clock(path: Path) -> tuple[bool, float]:
    """(frozen, value) from the test clock file; (False, 0.0) when it cannot be read."""
    try:
        text = path.read_text().strip()
        if text.startswith("@"):
            return True, float(text[1:])
        return False, float(text or 0)
    except (OSError, ValueError):
        return False, 0.0


def write_test_clock(path: Path, seconds: float, *, frozen: bool = False) -> None:
    """Write a test clock file: an offset, or (``frozen``) an epoch time that stands still."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(("@" if frozen else "") + repr(float(seconds)))
    tmp.replace(path)
