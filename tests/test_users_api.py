"""``/api/users``: registration and lookup, with JSON problem errors for every bad input."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from authgate import audit
from authgate.models import User
from tests.conftest import PASSWORD


def register(client: FlaskClient, username: object, password: object = PASSWORD):  # noqa: ANN201
    """POST /api/users with a JSON body."""
    return client.post("/api/users", json={"username": username, "password": password})


def assert_problem(response, status: int) -> dict:  # noqa: ANN001
    """The response is an RFC 9457 problem with ``status``."""
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def test_register_returns_201_body_and_location(client: FlaskClient) -> None:
    """Registration answers 201, {id, username} and the absolute URL of the new user."""
    response = register(client, "miguel")
    assert response.status_code == 201
    assert response.get_json() == {"id": 1, "username": "miguel"}
    assert response.headers["Location"] == "http://authgate.test/api/users/1"


def test_get_user_returns_public_profile(client: FlaskClient) -> None:
    """GET /api/users/<id> returns id and username only."""
    register(client, "miguel")
    assert client.get("/api/users/1").get_json() == {"id": 1, "username": "miguel"}


def test_unknown_user_is_404_problem(client: FlaskClient) -> None:
    """An unknown id answers a JSON 404, not an HTML page."""
    assert_problem(client.get("/api/users/999"), 404)


def test_username_taken_is_409(client: FlaskClient) -> None:
    """A second registration of the same name answers 409."""
    register(client, "miguel")
    body = assert_problem(register(client, "miguel"), 409)
    assert "taken" in body["detail"]


@pytest.mark.parametrize("settings_overrides", [{"ratelimit_register": "3/hour"}])
def test_taken_name_registrations_are_throttled_and_audited(
    client: FlaskClient, settings_overrides: dict[str, str]
) -> None:
    """Registrations of a taken name count against the per-address limit like any other
    (only 409s, never a 429, before) and each refusal is audited as registration.failed."""
    assert register(client, "miguel").status_code == 201
    statuses = [register(client, "Miguel").status_code for _ in range(3)]
    assert statuses == [409, 409, 429]
    refused = audit.query(event="registration.failed")
    assert [(e.user_id, e.detail) for e in refused] == [(None, {"reason": "username_taken"})] * 2
    assert len(audit.query(event="registration.throttled")) == 1


@pytest.mark.parametrize("variant", ["Miguel", "MIGUEL", "\uff4d\uff49\uff47\uff55\uff45\uff4c"])
def test_usernames_compare_after_nfkc_and_casefold(client: FlaskClient, variant: str) -> None:
    """Miguel, MIGUEL and full-width ｍｉｇｕｅｌ are the same account as miguel."""
    register(client, "miguel")
    assert_problem(register(client, variant), 409)


@pytest.mark.parametrize(
    "body",
    [
        {"username": "miguel"},
        {"password": PASSWORD},
        {"username": None, "password": PASSWORD},
        {"username": 42, "password": PASSWORD},
        {"username": "miguel", "password": ["list"]},
        [],
        "a string",
    ],
)
def test_missing_or_mistyped_fields_are_400(client: FlaskClient, body: object) -> None:
    """Missing fields, nulls, wrong types and non-object bodies answer 400."""
    assert_problem(client.post("/api/users", json=body), 400)


@pytest.mark.parametrize(
    "username", ["", "with space", "tab\tname", "new\nline", "nul\x00", "x" * 65, "zero\u200bwidth"]
)
def test_invalid_usernames_are_400(client: FlaskClient, username: str) -> None:
    """Empty, too long, whitespace and control characters are refused."""
    assert_problem(register(client, username), 400)


def test_sixty_four_character_username_is_accepted(client: FlaskClient) -> None:
    """The upper bound itself is allowed."""
    assert register(client, "u" * 64).status_code == 201


def test_short_password_is_400_with_reason(client: FlaskClient) -> None:
    """A password under the minimum length is refused and the detail says why."""
    body = assert_problem(register(client, "miguel", "python"), 400)
    assert "at least 15" in body["detail"]


def test_json_null_body_is_400(client: FlaskClient) -> None:
    """A literal JSON null body answers 400."""
    response = client.post("/api/users", data="null", content_type="application/json")
    assert_problem(response, 400)


def test_non_json_content_type_is_415(client: FlaskClient) -> None:
    """A form or text body answers 415."""
    response = client.post("/api/users", data="username=miguel", content_type="text/plain")
    assert_problem(response, 415)


@pytest.mark.parametrize(
    "raw", [b'{"username": "miguel", ', b"\xff\xfe\xfd", b"not json", b'{"a": 1}}']
)
def test_malformed_json_is_400(client: FlaskClient, raw: bytes) -> None:
    """Truncated, invalid UTF-8 and garbage bodies answer 400."""
    response = client.post("/api/users", data=raw, content_type="application/json")
    assert_problem(response, 400)


def test_deeply_nested_json_is_400(client: FlaskClient) -> None:
    """10,000-deep nesting answers 400, not a 500 from a recursion error."""
    raw = "[" * 10_000 + "]" * 10_000
    response = client.post("/api/users", data=raw, content_type="application/json")
    assert_problem(response, 400)


def test_oversized_body_is_413(client: FlaskClient) -> None:
    """A body over 64 KiB answers 413."""
    raw = '{"username": "miguel", "password": "' + "x" * 70_000 + '"}'
    response = client.post("/api/users", data=raw, content_type="application/json")
    assert_problem(response, 413)


def test_unknown_method_is_405_json(client: FlaskClient) -> None:
    """PATCH on a collection answers a JSON 405."""
    assert_problem(client.patch("/api/users"), 405)


def test_unknown_route_is_404_json(client: FlaskClient) -> None:
    """An unknown path answers a JSON 404."""
    assert_problem(client.get("/nope"), 404)


def test_sql_looking_username_is_plain_text(client: FlaskClient, app) -> None:  # noqa: ANN001
    """A username made of SQL is stored and compared as text."""
    name = "x'OR'1'='1--"
    assert register(client, name).status_code == 201
    from authgate.extensions import db

    assert db.session.query(User).count() == 1
    assert client.get("/api/users/1").get_json()["username"] == name
