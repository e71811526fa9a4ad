"""Schemathesis fuzz of a running server, driven by the server's own ``/openapi.json``.

For every documented operation, Schemathesis' Hypothesis strategies generate requests
that follow the document (positive) and that break it (negative); each is sent to a real
gunicorn server, half of them with a valid password or access token. For every answer:

- never a ``500`` (or any 5xx but the documented ``503``);
- the status code is one the document lists for that operation;
- the content type is the documented one, and every error body of a JSON operation is
  JSON (RFC 9457 problem or RFC 6749 OAuth error);
- a documented JSON body matches its schema.

Runs in ``make test``: a bounded number of examples per operation, no example database,
derandomized, so a run is repeatable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import PASSWORD
from tests.support import Server, isolated_database

pytestmark = pytest.mark.server

#: Examples per operation and generation mode (27 operations x 2 modes).
EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
USERNAME = "fuzzer"
#: A malformed or forged Authorization header (printable ASCII, as HTTP allows).
GARBAGE_AUTHORIZATION = st.one_of(
    st.sampled_from(["Basic", "Bearer", "Basic =", "Basic Og==", "Bearer a.b.c"]),
    st.builds(
        "{} {}".format,
        st.sampled_from(["Basic", "Bearer", "basic", "Digest"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
    ),
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for the whole fuzz run, with a registered user."""
    tmp = tmp_path_factory.mktemp("fuzz")
    with isolated_database(tmp) as url:
        server = Server(
            database_url=url,
            instance=tmp,
            # Throttling off: the fuzzer's wrong passwords would otherwise lock out the
            # loopback address halfway, and which operations then see 429 would depend on
            # timing. Throttling has tests of its own (tests/server/test_throttling.py).
            env={"AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest", "AUTHGATE_RATELIMIT": "0"},
            workers=2,
        ).start()
        try:
            created = httpx.post(
                f"{server.url}/api/users", json={"username": USERNAME, "password": PASSWORD}
            )
            assert created.status_code == 201
            yield server
        finally:
            server.stop()


def _credentials(server: Server, kind: str) -> dict[str, str]:
    """An Authorization header of ``kind``: none, a password, or a fresh access token."""
    if kind == "basic":
        return {"Authorization": httpx.BasicAuth(USERNAME, PASSWORD)._auth_header}
    if kind == "bearer":
        response = httpx.post(f"{server.url}/api/token", auth=(USERNAME, PASSWORD))
        if response.status_code == 200:
            return {"Authorization": f"Bearer {response.json()['token']}"}
    return {}


def _error_body_is_json(case: Any, response: Any) -> str | None:
    """Every 4xx/5xx of an operation documented as JSON must parse as JSON."""
    if response.status_code < 400:
        return None
    documented = case.operation.definition.raw.get("responses", {}).get(
        str(response.status_code), {}
    )
    if "$ref" in documented or "application/json" in documented.get("content", {}):
        try:
            json.loads(response.text)
        except ValueError:
            return f"error body is not JSON: {response.text[:200]!r}"
    return None


def _fuzz(
    server: Server, operation: Any, mode: GenerationMode, seen: Counter[tuple[str, int]]
) -> list[str]:
    """Run one operation's examples, counting statuses in ``seen``; the failures as lines."""
    failures: list[str] = []

    @FUZZ_SETTINGS
    @given(
        case=operation.as_strategy(generation_mode=mode),
        auth=st.sampled_from(["none", "basic", "bearer", "garbage"]),
        garbage=GARBAGE_AUTHORIZATION,
    )
    def run(case: Any, auth: str, garbage: str) -> None:
        headers = dict(case.headers or {})
        if auth == "garbage":
            headers["Authorization"] = garbage
        elif auth != "none":
            headers.update(_credentials(server, auth))
        case.headers = headers
        response = case.call(base_url=server.url, timeout=30)
        seen[operation.label, response.status_code] += 1
        problems = []
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            problems.extend(failure.title for failure in group.exceptions)
        error = _error_body_is_json(case, response)
        if error:
            problems.append(error)
        if problems:
            failures.append(
                f"{operation.label} [{mode.value}, auth={auth}] -> {response.status_code}: "
                f"{'; '.join(problems)}\n    {case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def test_fuzz_every_operation_against_the_running_server(fuzz_server: Server) -> None:
    """No 500, every status documented, JSON errors, for every operation of /openapi.json."""
    document = httpx.get(f"{fuzz_server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_fuzz(fuzz_server, operation, mode, seen))
    assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:40])
    assert "Traceback" not in fuzz_server.log()
    # The fuzz reached past authentication: credentials worked on the protected routes.
    assert seen["GET /api/users/me", 200] > 0
    assert seen["GET /api/resource", 200] > 0
