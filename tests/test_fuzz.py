"""Property-based fuzzing of the real endpoints (through the test client) with Hypothesis.

Whatever the username, password, JSON body or Authorization header: no 500, every error
is RFC 9457 JSON, no exception escapes, and no password or token reaches the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgate import accounts
from tests.conftest import PASSWORD

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text an HTTP header can carry: printable Latin-1, no CR/LF.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
usernames = st.text(max_size=80) | st.sampled_from(["miguel", "MIGUEL", "x' OR '1'='1", ""])
passwords = st.text(max_size=1100) | st.just(PASSWORD)


@pytest.fixture
def secrets_seen() -> set[str]:
    """Every password and token the fuzzer sent, to look for in the logs afterwards."""
    return set()


@pytest.fixture
def fuzz_client(
    app: Flask, caplog: pytest.LogCaptureFixture, secrets_seen: set[str]
) -> Iterator[tuple[FlaskClient, str]]:
    """A client, a valid token of miguel, and a check of the captured logs at the end."""
    caplog.set_level(logging.DEBUG)
    accounts.register("miguel", PASSWORD)
    client = app.test_client()
    token = client.get("/api/token", auth=("miguel", PASSWORD)).get_json()["token"]
    secrets_seen.update({PASSWORD, token})
    yield client, token
    # Teardown sees its own phase in caplog.records: read the setup and call phases.
    setup, call = caplog.get_records("setup"), caplog.get_records("call")
    records = setup + call
    assert any('"token.issued"' in record.getMessage() for record in records)  # capture works
    logged = "\n".join(record.getMessage() for record in records)
    assert PASSWORD not in logged and token not in logged
    # Hypothesis also draws constants from the code under test (such as "127.0.0.1"): a
    # string the logs held before the fuzzer sent anything is log vocabulary, not a leak.
    vocabulary = "\n".join(record.getMessage() for record in setup)
    leaked = [s for s in secrets_seen if distinctive(s) and s in logged and s not in vocabulary]
    assert leaked == []
    assert not [r for r in records if r.levelno >= logging.ERROR]


def distinctive(secret: str) -> bool:
    """Long and varied enough that finding it in a log means it leaked.

    Lowercase identifiers are skipped: ``password`` is inside the audit vocabulary
    (``wrong_password``), which says nothing about a leak.
    """
    return len(secret) >= 8 and len(set(secret)) >= 4 and not re.fullmatch(r"[a-z_.]+", secret)


def assert_sound(response) -> None:  # noqa: ANN001
    """No 500; an error is a JSON problem whose status matches the response's."""
    assert response.status_code < 500 or response.status_code == 503, response.get_data()
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        body = json.loads(response.get_data(as_text=True))
        assert body["status"] == response.status_code
        assert "Traceback" not in response.get_data(as_text=True)


@FUZZ
@given(username=usernames, password=passwords)
def test_fuzz_basic_credentials(
    fuzz_client: tuple[FlaskClient, str], secrets_seen: set[str], username: str, password: str
) -> None:
    """Any Basic username and password on /api/token and /api/resource: 200, 401 or 429 JSON."""
    client, _ = fuzz_client
    secrets_seen.add(password)
    raw = f"{username}:{password}".encode("utf-8", "surrogatepass")
    header = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    for path in ("/api/token", "/api/resource"):
        response = client.get(path, headers=header)
        assert_sound(response)
        assert response.status_code in (200, 401, 429)


@FUZZ
@given(username=st.one_of(usernames, json_values), password=st.one_of(passwords, json_values))
def test_fuzz_registration_fields(
    fuzz_client: tuple[FlaskClient, str], secrets_seen: set[str], username: object, password: object
) -> None:
    """Any JSON values as username and password: 201, 400, 409 or 429, never 500."""
    client, _ = fuzz_client
    if isinstance(password, str):
        secrets_seen.add(password)
    response = client.post("/api/users", json={"username": username, "password": password})
    assert_sound(response)
    assert response.status_code in (201, 400, 409, 413, 429)


CONTENT_TYPES = ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]


@FUZZ
@given(
    body=st.one_of(json_values.map(json.dumps).map(str.encode), st.binary(max_size=2000)),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_fuzz_raw_bodies(
    fuzz_client: tuple[FlaskClient, str], body: bytes, content_type: str
) -> None:
    """Any bytes with any content type on POST /api/users answer a 4xx JSON problem or 201."""
    client, _ = fuzz_client
    response = client.post("/api/users", data=body, content_type=content_type)
    assert_sound(response)


@FUZZ
@given(
    header=st.one_of(
        header_text,
        header_text.map(lambda t: "Bearer " + t),
        header_text.map(lambda t: "Basic " + t),
        st.binary(max_size=200).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    ),
    mutate=st.integers(min_value=0, max_value=400),
)
def test_fuzz_authorization_headers(
    fuzz_client: tuple[FlaskClient, str], header: str, mutate: int
) -> None:
    """Arbitrary Authorization headers, and mutated real tokens, never authenticate or crash."""
    client, token = fuzz_client
    # Never the last character: its low bits are base64 padding, so some flips are no-ops.
    position = mutate % (len(token) - 1)
    flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    for value in (header, f"Bearer {flipped}"):
        for path in ("/api/resource", "/api/users/me/events", "/api/token"):
            response = client.get(path, headers={"Authorization": value})
            assert_sound(response)
            if value.startswith("Bearer "):
                assert response.status_code in (401, 429)
