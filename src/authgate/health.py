"""Operational endpoints: ``/healthz`` (the process answers)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process serves requests. No database or Redis work (the benchmark floor)."""
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"
    return response
