"""Operational endpoints: ``/healthz`` (the process answers)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from authgate.openapi import operation

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation("Liveness", responses={200: "Status"}, tags=["operations"])
def healthz() -> Response:
    """Liveness: the process serves requests. No database or Redis work (the benchmark floor)."""
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"
    return response
