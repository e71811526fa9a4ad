"""The ``authgate`` command: serve, db, keys, user, client, import-users, audit, throttle;
login, whoami, token, logout (the Python client, :mod:`authgate.client_cli`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from authgate import client_cli
from authgate.lazy import LazyAttribute, LazyModule
from authgate.server import DEFAULT_SERVER, SERVERS

if TYPE_CHECKING:
    from flask import Flask

# The server stack is imported on first use only: the client commands (client_cli) start
# without Flask and SQLAlchemy.
_SERVER_MODULES = (
    "accounts",
    "audit",
    "clients",
    "clock",
    "database",
    "importer",
    "keys",
    "logs",
    "metrics",
    "metrics_listener",
    "throttle",
)
(
    accounts,
    audit,
    clients,
    clock,
    database,
    importer,
    keys,
    logs,
    metrics,
    metrics_listener,
    throttle,
) = (LazyModule(f"authgate.{name}") for name in _SERVER_MODULES)
db = LazyAttribute("authgate.extensions", "db")


@contextlib.contextmanager
def _migrated_context() -> Iterator[None]:
    """An app context on a migrated database; the engine's connections are closed after."""
    with _app().app_context():
        database.upgrade()
        try:
            yield
        finally:
            db.session.remove()
            db.engine.dispose()


def _app(**defaults: Any) -> Flask:
    from authgate.app import create_app
    from authgate.config import ConfigError, Settings

    try:
        return create_app(Settings.from_env(defaults=defaults))
    except ConfigError as exc:
        # Exactly one line, on stderr, whatever logging is configured.
        click.echo(f"authgate: refusing to start: {exc}", err=True)
        sys.exit(2)


@contextlib.contextmanager
def _app_context(**defaults: Any) -> Iterator[Flask]:
    """An app context for a one-shot command; database connections closed afterwards."""
    app = _app(**defaults)
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


@click.group()
def main() -> None:
    """AuthGate: authentication service for REST APIs."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Alembic announces its plugins at INFO when first imported (now lazily, after this).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


client_cli.add_commands(main)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True)
@click.option("--threads", default=1, type=int, show_default=True)
@click.option(
    "--server",
    "server_name",
    type=click.Choice(SERVERS),
    default=DEFAULT_SERVER,
    show_default=True,
    help="WSGI server (granian is the faster one; see bench/README.md).",
)
def serve(host: str, port: int, workers: int, threads: int, server_name: str) -> None:
    """Migrate the database, then serve AuthGate with granian (default) or gunicorn."""
    from authgate.server import run

    # Before the app exists: its metrics must write to the directory all workers share.
    metrics_dir = metrics.prepare_multiprocess()
    owner = os.getpid()
    with logs.held_until_configured():  # warnings about the settings, in their log format
        app = _app(issuer=f"http://{host}:{port}")
        settings = app.extensions["authgate"].settings
        logs.configure(settings)
    logging.getLogger("authgate").info("metrics directory: %s", metrics_dir)
    if settings.ratelimit and not settings.redis_url and workers > 1:
        logging.getLogger("authgate").warning(
            "rate limits are counted per worker process (%d workers, no AUTHGATE_REDIS_URL): "
            "each worker allows the full limit",
            workers,
        )
    pooled = settings.db_pool_size + settings.db_max_overflow
    if threads > pooled:
        logging.getLogger("authgate").warning(
            "%d threads per worker share %d database connections (AUTHGATE_DB_POOL_SIZE + "
            "AUTHGATE_DB_MAX_OVERFLOW): requests will queue for a connection",
            threads,
            pooled,
        )
    with app.app_context(), _database_reachable():
        database.upgrade()
        keys.ensure_active_key()
        db.engine.dispose()  # no pooled connection may cross the fork into workers
    listener = metrics_listener.start(settings)
    try:
        run(app, host=host, port=port, workers=workers, threads=threads, server=server_name)
    finally:
        if os.getpid() == owner:  # workers leave through here too, on their way out
            metrics_listener.stop(listener)
            metrics.cleanup_multiprocess(metrics_dir)


@contextlib.contextmanager
def _database_reachable() -> Iterator[None]:
    """Turn "database unreachable" into one line on stderr and exit status 1."""
    import sqlalchemy.exc

    from authgate.errors import is_database_unavailable

    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as exc:
        if not is_database_unavailable(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"authgate: database unreachable: {reason}", err=True)
        sys.exit(1)


@main.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    with _app_context(), _database_reachable():
        database.upgrade()
        click.echo(f"database at revision {database.current_revision()}")


@db_group.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    with _app_context():
        click.echo(database.current_revision() or "none")


@main.command("import-users")
@click.argument("source_url")
@click.option("--table", default="users", show_default=True)
@click.option("--dry-run", is_flag=True, help="Report what would be imported; write nothing.")
def import_users(source_url: str, table: str, dry_run: bool) -> None:
    """Import users (keeping ids and password hashes) from a REST-auth style database."""
    with _app_context():
        database.upgrade()
        rows = importer.read_source(source_url, table)
        report = importer.import_users(rows, dry_run=dry_run)
    for line in report.lines():
        click.echo(line)


def _parse_since(value: str | None) -> dt.datetime | None:
    """``--since``: an ISO 8601 time (UTC if no offset) or an age like ``30m``, ``2h``, ``7d``."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return clock.now() - dt.timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("use an ISO 8601 time or an age like 30m, 2h, 7d") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _resolve_user(value: str | None) -> int | None:
    if value is None:
        return None
    user = accounts.find_by_username(value)
    if user is not None:
        return user.id
    if value.isdigit():
        return int(value)
    raise click.BadParameter(f"no user named {value!r}", param_hint="--user")


@main.command("audit")
@click.option("--user", "user", help="Username or user id.")
@click.option("--event", help="Event name, e.g. login.failed (see audit.EVENTS).")
@click.option("--since", help="ISO 8601 time, or an age such as 30m, 2h, 7d.")
@click.option("--limit", default=1000, type=int, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit_command(
    user: str | None, event: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """Read the audit log, newest first."""
    with _app_context():
        user_id = _resolve_user(user)
        rows = audit.query(user_id=user_id, event=event, since=_parse_since(since), limit=limit)
        for row in rows:
            record = row.to_dict()
            if as_json:
                click.echo(json.dumps(record, ensure_ascii=True, sort_keys=True))
                continue
            detail = json.dumps(record["detail"], ensure_ascii=True, sort_keys=True)
            click.echo(
                f"{record['at']} {record['event']} user={record['user_id']} "
                f"client={record['client_id']} ip={record['ip']} "
                f"request={record['request_id']} detail={detail}"
            )


@main.group("throttle")
def throttle_group() -> None:
    """Password-guessing throttle commands."""


@throttle_group.command("reset")
@click.argument("username")
def throttle_reset(username: str) -> None:
    """Clear USERNAME's failure streak (unlock after the hard cap of failures)."""
    with _app_context():
        throttle.reset(accounts.throttle_account(username))
        user = accounts.find_by_username(username)
        audit.record("throttle.reset", user_id=user.id if user else None)
    click.echo(f"failure streak of {username!r} cleared")


@main.group("keys")
def keys_group() -> None:
    """Token signing keys."""


@keys_group.command("rotate")
@click.option(
    "--immediate",
    is_flag=True,
    help="Sign with the new key at once, skipping pre-publication (e.g. the key leaked).",
)
def keys_rotate(immediate: bool) -> None:
    """Create the next signing key (published now, signing after the pre-publication window)."""
    with _migrated_context():
        keys.ensure_active_key()
        row = keys.rotate(immediate=immediate)
        click.echo(f"new key {row.kid} signs from {row.activates_at.isoformat(timespec='seconds')}")


@keys_group.command("list")
def keys_list() -> None:
    """Show every key with its state and age."""
    with _migrated_context():
        now = clock.now()
        click.echo(f"{'kid':<44} {'state':<8} {'age':>8}  signs from -> until")
        for status in keys.statuses(now):
            row = status.row
            age = _age((now - row.created_at).total_seconds())
            until = status.stops_at.isoformat(timespec="seconds") if status.stops_at else "-"
            start = row.activates_at.isoformat(timespec="seconds")
            click.echo(f"{row.kid:<44} {status.state:<8} {age:>8}  {start} -> {until}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@main.group("user")
def user_group() -> None:
    """Account administration."""


@user_group.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Disable an account: no login, and every token of it is refused at once."""
    _set_disabled(username, True)


@user_group.command("enable")
@click.argument("username")
def user_enable(username: str) -> None:
    """Re-enable a disabled account (its old tokens stay dead)."""
    _set_disabled(username, False)


def _set_disabled(username: str, disabled: bool) -> None:
    with _migrated_context():
        user = accounts.find_by_username(username)
        if user is None:
            click.echo(f"authgate: no user {username!r}", err=True)
            sys.exit(1)
        accounts.set_disabled(user, disabled)
        click.echo(f"{user.username} {'disabled' if disabled else 'enabled'}")


@main.group("client")
def client_group() -> None:
    """OAuth client registry: create, list, show, delete, rotate-secret."""


def _print_client(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        shown = " ".join(value) if isinstance(value, list) else value
        click.echo(f"{key}: {shown}")
    if "client_secret" in data:
        click.echo("The client secret is shown only this once; AuthGate stores only its hash.")


def _client_command(action: Any) -> Any:
    """Run ``action`` in an app context; domain errors become exit code 1 with a message."""
    from authgate.errors import AuthGateError

    with _migrated_context():
        try:
            return action()
        except AuthGateError as error:
            raise click.ClickException(error.detail) from error


@client_group.command("create")
@click.option("--name", required=True, help="Shown to people on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact URI; repeatable.")
@click.option("--scope", default="", help='Space-separated, e.g. "openid profile".')
@click.option("--type", "client_type", type=click.Choice(["public", "confidential"]), required=True)
@click.option(
    "--grant",
    "grant_types",
    multiple=True,
    type=click.Choice(["authorization_code", "client_credentials", "refresh_token"]),
    help="Repeatable; optional only with --introspect.",
)
@click.option(
    "--introspect",
    is_flag=True,
    help="A resource server's client: may introspect every access token (RFC 7662).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_create(
    name: str,
    redirect_uris: tuple[str, ...],
    scope: str,
    client_type: str,
    grant_types: tuple[str, ...],
    introspect: bool,
    as_json: bool,
) -> None:
    """Register an OAuth client; prints its client_id and, once, its client_secret."""
    data = _client_command(
        lambda: clients.create(
            name, client_type, list(redirect_uris), scope, list(grant_types), introspect
        ).to_dict()
    )
    _print_client(data, as_json)


@client_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_list(as_json: bool) -> None:
    """List registered clients."""
    rows = _client_command(lambda: [c.to_dict() for c in clients.list_all()])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['client_id']}  {row['type']:<12}  {' '.join(row['grant_types'])}  {row['name']}"
        )


@client_group.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_show(client_id: str, as_json: bool) -> None:
    """Show one client (never its secret)."""
    _print_client(_client_command(lambda: clients.get(client_id).to_dict()), as_json)


@client_group.command("delete")
@click.argument("client_id")
def client_delete(client_id: str) -> None:
    """Delete a client; its codes, consents and tokens stop working."""
    _client_command(lambda: clients.delete_client(client_id))
    click.echo(f"deleted {client_id}")


@client_group.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a confidential client a new secret (shown once); the old one stops working."""
    data = _client_command(lambda: clients.rotate_secret(client_id).to_dict())
    _print_client(data, as_json)
