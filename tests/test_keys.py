"""Signing keys: pre-published rotation, retired keys kept while their tokens live, JWKS caching."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from authgate import cli, keys, tokens
from authgate.config import ConfigError, Settings
from authgate.models import User
from tests.conftest import PASSWORD
from tests.support import TEST_SECRET
from tests.test_refresh import audit_events, greets, move_clock
from tests.test_tokens import basic


def kid_of(token: str) -> str:
    """The ``kid`` in a JWT header."""
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def new_token(client: FlaskClient) -> str:
    """A fresh access token for miguel."""
    return client.post("/api/token", headers=basic("miguel", PASSWORD)).get_json()["token"]


def published(client: FlaskClient) -> list[str]:
    """The kids in the JWKS."""
    return [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]


def test_rotated_key_is_published_before_it_signs(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After rotate the JWKS shows the new key at once, but tokens keep the old kid for 600 s."""
    old_token = new_token(client)
    old = kid_of(old_token)
    new = keys.rotate().kid
    assert published(client) == [old, new]
    assert kid_of(new_token(client)) == old
    move_clock(monkeypatch, 599)
    assert kid_of(new_token(client)) == old
    move_clock(monkeypatch, 601)
    assert kid_of(new_token(client)) == new
    assert published(client) == [old, new]
    assert [e.detail["kid"] for e in audit_events("key.rotated")] == [new]


def test_retired_key_verifies_its_tokens_until_they_expire(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens signed just before the switch still verify; the old key leaves the JWKS later."""
    old = kid_of(new_token(client))
    new = keys.rotate().kid
    move_clock(monkeypatch, 599)
    last_old_token = new_token(client)
    assert kid_of(last_old_token) == old
    move_clock(monkeypatch, 1100)
    assert tokens.verify_access_token(last_old_token)["sub"] == "1"
    assert greets(client, last_old_token)
    states = {s.row.kid: s.state for s in keys.statuses()}
    assert states == {old: keys.RETIRED, new: keys.ACTIVE}
    move_clock(monkeypatch, 600 + 600 + keys.KEYSET_TTL_SECONDS + 10)
    assert published(client) == [new]
    assert {s.row.kid: s.state for s in keys.statuses()}[old] == keys.EXPIRED


def test_immediate_rotation_signs_at_once(client: FlaskClient, user: User) -> None:
    """--immediate skips pre-publication (for a leaked key); old tokens still verify."""
    old_token = new_token(client)
    new = keys.rotate(immediate=True).kid
    assert kid_of(new_token(client)) == new
    assert greets(client, old_token)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    """The automatic-rotation test rotates every 30 days; the others never automatically."""
    return {"key_rotation_days": 30} if "automatic" in request.node.name else {}


def test_automatic_rotation_after_configured_days(
    client: FlaskClient, user: User, monkeypatch: pytest.MonkeyPatch, app: Flask
) -> None:
    """With AUTHGATE_KEY_ROTATION_DAYS=30 a 30-day-old key gets a pre-published successor."""
    first = kid_of(new_token(client))
    move_clock(monkeypatch, 29 * 86400)
    app.extensions["authgate"].keys.clear()
    assert kid_of(new_token(client)) == first and len(published(client)) == 1
    move_clock(monkeypatch, 30 * 86400)
    app.extensions["authgate"].keys.clear()
    assert kid_of(new_token(client)) == first
    assert len(published(client)) == 2
    move_clock(monkeypatch, 30 * 86400 + 601)
    assert kid_of(new_token(client)) != first
    assert len(audit_events("key.rotated")) == 1


def test_jwks_is_cacheable_and_revalidates(client: FlaskClient) -> None:
    """Cache-Control max-age equals the configured 300 s, and an ETag answers 304."""
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=300"
    etag = response.headers["ETag"]
    again = client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_prepublication_shorter_than_jwks_max_age_is_refused(tmp_path: Path) -> None:
    """A new key must stay published at least as long as verifiers cache the JWKS."""
    with pytest.raises(ConfigError, match="PREPUBLISH"):
        Settings(
            instance_path=tmp_path, secret_key="x", jwks_max_age=900, key_prepublish_seconds=600
        ).resolved()


def test_keys_cli_rotates_and_lists_state_and_age(database_url: str, tmp_path: Path) -> None:
    """`authgate keys rotate` then `keys list`: the active key and the pending one, with ages."""
    env = {
        "AUTHGATE_ENV": "testing",
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
    }
    runner = CliRunner()
    rotated = runner.invoke(cli.main, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    listed = runner.invoke(cli.main, ["keys", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert lines[0].split()[:3] == ["kid", "state", "age"]
    assert [line.split()[1] for line in lines[1:]] == [keys.ACTIVE, keys.PENDING]
    assert all(line.split()[2].endswith("s") for line in lines[1:])
