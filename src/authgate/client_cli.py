"""``authgate login URL | whoami | token | logout``: the Python client from the shell.

Tokens are kept in a ``0600`` file: ``$AUTHGATE_TOKEN_FILE`` if set, else
``$XDG_CONFIG_HOME/authgate/tokens.json`` (``~/.config/authgate/tokens.json``). These
commands import httpx and :mod:`authgate.client` only, never the server stack.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from authgate.client import Client

TOKEN_FILE_ENV = "AUTHGATE_TOKEN_FILE"  # noqa: S105 (a variable name)


def token_file_path() -> Path:
    """Where the CLI keeps its tokens (see the module docstring)."""
    explicit = os.environ.get(TOKEN_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "authgate" / "tokens.json"


def _run(action: Callable[[], Any]) -> Any:
    """Run a client call; its errors become one line on stderr and exit code 1."""
    from authgate.client import APIError, ClientError, NotLoggedIn, SessionExpired

    # ``authgate`` logs at INFO; httpx would log every request line on stderr.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return action()
    except NotLoggedIn as error:
        raise click.ClickException(f"{error}; run: authgate login URL") from error
    except SessionExpired as error:
        raise click.ClickException(
            f"the login has ended ({error.detail}); run: authgate login URL"
        ) from error
    except APIError as error:
        raise click.ClickException(str(error)) from error
    except ClientError as error:
        raise click.ClickException(str(error)) from error


def _saved_client() -> Client:
    from authgate.client import Client

    return _run(lambda: Client.from_token_file(token_file_path()))


def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    if not password:
        raise click.UsageError("--password-stdin: no password on standard input")
    return password


@click.command("login")
@click.argument("url")
@click.option("--username", "-u", help="Prompted for if not given.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (needs --username).",
)
def login(url: str, username: str | None, password_stdin: bool) -> None:
    """Log in to the AuthGate server at URL and keep the tokens for later commands.

    The password is prompted for (not echoed), or read from standard input with
    --password-stdin; it is never taken from the command line.
    """
    from authgate.client import Client

    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = _read_password_stdin()
    else:
        username = username or click.prompt("Username")
        password = click.prompt("Password", hide_input=True)
    path = token_file_path()
    with Client(url, token_file=path, load_tokens=False) as client:
        _run(lambda: client.login(username, password))
    click.echo(f"logged in to {url.rstrip('/')} as {username} (tokens in {path})")


@click.command("whoami")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
def whoami(as_json: bool) -> None:
    """Show the logged-in account (refreshing the token if needed)."""
    with _saved_client() as client:
        account = _run(client.me)
        if as_json:
            click.echo(json.dumps(account, sort_keys=True))
        else:
            click.echo(f"{account['username']} (id {account['id']}) at {client.base_url}")


@click.command("token")
def token() -> None:
    """Print an access token valid for at least 30 seconds, for scripts:

    curl -H "Authorization: Bearer $(authgate token)" ...
    """
    with _saved_client() as client:
        click.echo(_run(client.access_token))


@click.command("logout")
@click.option("--everywhere", is_flag=True, help="Revoke every token of the account.")
def logout(everywhere: bool) -> None:
    """End the login on the server and delete the token file."""
    from authgate.client import Client, ClientError, NotLoggedIn

    try:
        client = Client.from_token_file(token_file_path())
    except NotLoggedIn:
        click.echo("not logged in")
        return
    except ClientError as error:  # a damaged or unsafe file
        raise click.ClickException(str(error)) from error
    with client:
        _run(client.logout_everywhere if everywhere else client.logout)
    click.echo("logged out everywhere" if everywhere else "logged out")


def add_commands(group: click.Group) -> None:
    """Add the client commands to the ``authgate`` group."""
    for command in (login, whoami, token, logout):
        group.add_command(command)
