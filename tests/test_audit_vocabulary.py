"""Every event name recorded anywhere in AuthGate is declared in ``audit.EVENTS``."""

from __future__ import annotations

import ast
from pathlib import Path

import authgate
from authgate import audit

SOURCE = Path(authgate.__file__).parent


def _recorded_event_names() -> set[str]:
    names: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_recorded_event_is_declared() -> None:
    recorded = _recorded_event_names()
    assert "login.succeeded" in recorded  # the scan finds the calls it is meant to check
    assert recorded - audit.EVENTS.keys() == set()


def test_every_declared_event_is_recorded_somewhere() -> None:
    assert audit.EVENTS.keys() - _recorded_event_names() == set()
