"""``/healthz``: liveness without touching the database."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import event

from authgate.extensions import db


def test_healthz_answers_json_without_database(client: FlaskClient) -> None:
    db.engine.dispose()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        response = client.get("/healthz")
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert statements == []
