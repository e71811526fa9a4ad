"""OAuth client registry: registration rules, secrets stored only as digests, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from authgate import clients
from authgate.cli import main
from authgate.errors import InvalidInput, NotFound
from authgate.models import OAuthClient, secret_digest
from tests.oauth_support import CALLBACK, basic, register
from tests.support import TEST_SECRET


def client_credentials(client: FlaskClient, client_id: str, secret: str) -> int:
    """Status of a client-credentials token request with these credentials."""
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "resource:read"},
        headers=basic(client_id, secret),
    )
    return response.status_code


def test_confidential_secret_is_returned_once_and_stored_as_digest(app: Flask) -> None:
    """The secret is 256 random bits, returned at creation, and only its SHA-256 is stored."""
    registration = register()
    secret = registration.client_secret
    assert secret is not None and len(secret) >= 43
    row = clients.get(registration.client.client_id)
    assert row.secret_digest == secret_digest(secret)
    assert secret not in json.dumps(row.to_dict())
    assert row.check_client_secret(secret)
    assert not row.check_client_secret(secret + "x")


def test_public_client_has_no_secret_and_authenticates_with_none(app: Flask) -> None:
    """A public client gets no secret and may use only the ``none`` method."""
    registration = register("public")
    assert registration.client_secret is None
    row = registration.client
    assert row.secret_digest is None
    assert row.check_endpoint_auth_method("none", "token")
    assert not row.check_endpoint_auth_method("client_secret_basic", "token")
    assert not row.check_endpoint_auth_method("none", "introspection")


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,hi",
        "http://example.com/callback",
        "https://example.com/cb#fragment",
        "/relative/path",
        "myapp:/callback",
        "https:///no-host",
    ],
)
def test_unsafe_redirect_uris_are_refused(app: Flask, uri: str) -> None:
    """Scripts, fragments, relative URIs and plain HTTP off loopback are not redirect targets."""
    with pytest.raises(InvalidInput):
        register(redirect_uris=(uri,))


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "http://127.0.0.1:9000/cb",
        "http://localhost/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_https_loopback_and_native_redirect_uris_are_accepted(app: Flask, uri: str) -> None:
    """HTTPS, HTTP on loopback and reverse-domain private schemes (RFC 8252) are accepted."""
    assert register(redirect_uris=(uri,)).client.redirect_uris == [uri]


def test_registration_rules(app: Flask) -> None:
    """client_credentials needs a secret, scopes must be declared, the code grant a redirect."""
    with pytest.raises(InvalidInput, match="confidential"):
        register("public", grants=("client_credentials",))
    with pytest.raises(InvalidInput, match="declared"):
        register(scope="openid admin")
    with pytest.raises(InvalidInput, match="redirect"):
        register(redirect_uris=())
    with pytest.raises(InvalidInput, match="grant"):
        register(grants=("password",))
    with pytest.raises(InvalidInput, match="grant"):
        register(grants=("implicit",))


def test_rotate_secret_retires_the_old_secret(app: Flask, client: FlaskClient) -> None:
    """After rotation only the new secret authenticates the client."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    client_id, old = registration.client.client_id, registration.client_secret
    assert old is not None
    assert client_credentials(client, client_id, old) == 200
    new = clients.rotate_secret(client_id).client_secret
    assert new is not None and new != old
    assert client_credentials(client, client_id, old) == 401
    assert client_credentials(client, client_id, new) == 200


def test_deleted_client_cannot_get_tokens(app: Flask, client: FlaskClient) -> None:
    """Deleting a client removes it; its credentials stop working."""
    registration = register(grants=("client_credentials",), redirect_uris=())
    client_id, secret = registration.client.client_id, registration.client_secret
    assert secret is not None
    clients.delete_client(client_id)
    assert clients.find(client_id) is None
    assert client_credentials(client, client_id, secret) == 401
    with pytest.raises(NotFound):
        clients.delete_client(client_id)


def test_cli_create_list_show_rotate_delete(app: Flask, database_url: str, tmp_path: Path) -> None:
    """The ``authgate client`` commands manage clients and print the secret only when made."""
    runner = CliRunner()
    env = {
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        "AUTHGATE_ENV": "testing",
    }
    created = runner.invoke(
        main,
        [
            "client",
            "create",
            "--name",
            "Photo Printer",
            "--redirect-uri",
            CALLBACK,
            "--scope",
            "openid profile",
            "--type",
            "confidential",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--json",
        ],
        env=env,
    )
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    client_id, secret = data["client_id"], data["client_secret"]
    assert data["redirect_uris"] == [CALLBACK]
    listed = runner.invoke(main, ["client", "list"], env=env)
    assert client_id in listed.stdout and "Photo Printer" in listed.stdout
    shown = runner.invoke(main, ["client", "show", client_id, "--json"], env=env)
    assert json.loads(shown.stdout)["name"] == "Photo Printer"
    assert secret not in shown.stdout and '"client_secret":' not in shown.stdout
    rotated = runner.invoke(main, ["client", "rotate-secret", client_id, "--json"], env=env)
    new_secret = json.loads(rotated.stdout)["client_secret"]
    assert new_secret != secret
    row = OAuthClient.query.filter_by(client_id=client_id).one()
    assert row.secret_digest == secret_digest(new_secret)
    bad = runner.invoke(
        main,
        [
            "client",
            "create",
            "--name",
            "x",
            "--scope",
            "openid",
            "--type",
            "public",
            "--grant",
            "client_credentials",
        ],
        env=env,
    )
    assert bad.exit_code == 1 and "confidential" in bad.output
    deleted = runner.invoke(main, ["client", "delete", client_id], env=env)
    assert deleted.exit_code == 0
    missing = runner.invoke(main, ["client", "show", client_id], env=env)
    assert missing.exit_code == 1
