"""Resource-server clients (``authgate client create --introspect``): they may introspect every
access token, AuthGate's own included, and nothing else changes for other clients."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from authgate import clients
from authgate.errors import InvalidInput
from authgate.models import User
from tests.conftest import PASSWORD
from tests.oauth_support import basic, bearer, client_auth, register


def _introspect(client: FlaskClient, registration: clients.Registration, token: str) -> dict:
    response = client.post(
        "/oauth/introspect", data={"token": token}, headers=client_auth(registration)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _introspector() -> clients.Registration:
    return clients.create("Orders API", "confidential", [], "", [], introspect=True)


def test_introspector_needs_no_grant_and_must_be_confidential(app: Flask) -> None:
    """An introspect-only client has no grant nor scope; a public one is refused."""
    registration = _introspector()
    assert registration.client.can_introspect is True
    assert registration.to_dict()["introspect"] is True
    assert registration.to_dict()["grant_types"] == []
    assert register().client.to_dict()["introspect"] is False
    with pytest.raises(InvalidInput, match="confidential"):
        clients.create("Bad", "public", [], "", [], introspect=True)
    with pytest.raises(InvalidInput, match="grant types"):
        clients.create("No grants", "confidential", [], "", [])


def _machine_token(client: FlaskClient) -> tuple[clients.Registration, str]:
    """A client-credentials client and an access token it obtained."""
    machine_client = register(grants=("client_credentials",), scope="resource:read")
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=client_auth(machine_client),
    ).get_json()["access_token"]
    return machine_client, token


def test_introspector_sees_first_party_and_other_clients_tokens(
    client: FlaskClient, user: User
) -> None:
    """First-party and other clients' access tokens read active; an ordinary client's view is
    unchanged; a revoked first-party token reads inactive."""
    resource_server = _introspector()
    machine_client, machine = _machine_token(client)
    first_party = client.get("/api/token", headers=basic("miguel", PASSWORD)).get_json()["token"]

    own = _introspect(client, resource_server, first_party)
    assert own["active"] is True and own["sub"] == str(user.id)
    assert own["username"] == "miguel" and "client_id" not in own
    other = _introspect(client, resource_server, machine)
    assert other["active"] is True and other["client_id"] == machine_client.client.client_id
    assert _introspect(client, machine_client, first_party) == {"active": False}

    assert client.delete("/api/token", headers=bearer(first_party)).status_code == 204
    assert _introspect(client, resource_server, first_party) == {"active": False}


def test_introspector_cannot_obtain_tokens(client: FlaskClient, app: Flask) -> None:
    """Introspection permission is not a grant: the token endpoint refuses it."""
    resource_server = _introspector()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=client_auth(resource_server),
    )
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("unauthorized_client", "invalid_scope")


def test_deleted_clients_machine_token_reads_inactive(client: FlaskClient, app: Flask) -> None:
    """A client-credentials token of a deleted client is inactive, as /api/resource refuses it."""
    resource_server = _introspector()
    machine_client, machine = _machine_token(client)
    assert _introspect(client, resource_server, machine)["active"] is True
    clients.delete_client(machine_client.client.client_id)
    assert client.get("/api/resource", headers=bearer(machine)).status_code == 401
    assert _introspect(client, resource_server, machine) == {"active": False}
