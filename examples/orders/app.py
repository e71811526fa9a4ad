"""Orders: a small Flask API that accepts AuthGate access tokens (see README.md).

Run it next to AuthGate::

    AUTHGATE_ISSUER=http://127.0.0.1:5000 gunicorn --chdir examples/orders 'app:create_app()'

Orders live in this process's memory: it is a demonstration of ``authgate.resource``,
not of storage.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request

from authgate.resource import AuthGateResource, current_token, require_token

MAX_ITEM_LENGTH = 200


@dataclass
class OrderBook:
    """Everyone's orders, by token subject (one process, in memory)."""

    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def place(self, owner: str, item: str, quantity: int) -> dict[str, Any]:
        """Record a new order for ``owner`` and return it."""
        with self.lock:
            order = {"id": next(self.ids), "item": item, "quantity": quantity}
            self.orders.setdefault(owner, []).append(order)
        return order

    def of(self, owner: str) -> list[dict[str, Any]]:
        """The orders of ``owner``, oldest first."""
        with self.lock:
            return list(self.orders.get(owner, []))


def _book() -> OrderBook:
    from flask import current_app

    return current_app.extensions["orders"]  # type: ignore[no-any-return]


def _problem(status: int, detail: str) -> tuple[dict[str, Any], int]:
    return {"error": "invalid_request", "error_description": detail}, status


def create_app() -> Flask:
    """The orders API; ``AUTHGATE_ISSUER`` (environment or config) names the AuthGate."""
    app = Flask(__name__)
    AuthGateResource(app, realm="orders")
    app.extensions["orders"] = OrderBook()

    @app.get("/healthz")
    def health() -> dict[str, str]:
        """Liveness, no token needed."""
        return {"status": "ok"}

    @app.get("/whoami")
    @require_token
    def whoami() -> dict[str, Any]:
        """Any AuthGate access token: who it speaks for."""
        return {
            "sub": current_token["sub"],
            "client_id": current_token.get("client_id"),
            "scope": current_token.get("scope", ""),
        }

    @app.get("/orders")
    @require_token(scope="orders:read")
    def list_orders() -> dict[str, Any]:
        """The caller's orders."""
        return {"orders": _book().of(current_token["sub"])}

    @app.post("/orders")
    @require_token(scope="orders:write")
    def place_order() -> tuple[dict[str, Any], int]:
        """Place an order: ``{"item": str, "quantity": int}``."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _problem(400, "send a JSON object")
        item, quantity = body.get("item"), body.get("quantity", 1)
        if not isinstance(item, str) or not 0 < len(item) <= MAX_ITEM_LENGTH:
            return _problem(400, "item must be a string of 1 to 200 characters")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 0 < quantity < 1000:
            return _problem(400, "quantity must be an integer from 1 to 999")
        return _book().place(current_token["sub"], item, quantity), 201

    return app
