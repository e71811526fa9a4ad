"""``authgate login | whoami | token | logout`` as a user runs them, against a real server."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import AUTHGATE, Server

PASSWORD = "a long enough password"


def authgate(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the ``authgate`` command."""
    return subprocess.run(
        [AUTHGATE, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with its own home and config directory (and no token file setting)."""
    env = {k: v for k, v in os.environ.items() if k not in {"AUTHGATE_TOKEN_FILE"}}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "xdg"), **extra)
    env["PATH"] = f"{Path(AUTHGATE).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A one-worker server (a revocation is seen by the next request) with user ``ada``."""
    server = start_server(workers=1, threads=2)
    body = {"username": "ada", "password": PASSWORD}
    assert httpx.post(f"{server.url}/api/users", json=body).status_code == 201
    return server


def test_login_whoami_token_logout(server: Server, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    token_file = tmp_path / "xdg" / "authgate" / "tokens.json"

    login = authgate(
        env, "login", server.url, "--username", "ada", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout == f"logged in to {server.url} as ada (tokens in {token_file})\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert PASSWORD not in token_file.read_text()

    whoami = authgate(env, "whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.startswith("ada (id ") and whoami.stdout.endswith(f" at {server.url}\n")

    # The README's example, in a real shell with curl.
    script = f'curl -s -H "Authorization: Bearer $(authgate token)" {server.url}/api/resource'
    curl = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert curl.stdout == '{"data":"Hello, ada!"}\n'

    token = authgate(env, "token").stdout.strip()
    logout = authgate(env, "logout")
    assert (logout.returncode, logout.stdout) == (0, "logged out\n")
    assert not token_file.exists()
    refused = httpx.get(f"{server.url}/api/resource", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401

    after = authgate(env, "whoami")
    assert after.returncode == 1
    assert "not logged in" in after.stderr and "authgate login URL" in after.stderr
    assert authgate(env, "logout").stdout == "not logged in\n"


def test_login_prompts_and_token_file_env(server: Server, tmp_path: Path) -> None:
    token_file = tmp_path / "elsewhere" / "t.json"
    env = cli_env(tmp_path, AUTHGATE_TOKEN_FILE=str(token_file))
    login = authgate(env, "login", server.url, stdin=f"ada\n{PASSWORD}\n")
    assert login.returncode == 0, login.stderr
    assert "Username: " in login.stdout and PASSWORD not in login.stdout + login.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert authgate(env, "whoami", "--json").stdout.count('"username": "ada"') == 1

    # Logged out everywhere from elsewhere: the saved login is over, the file removed.
    elsewhere = httpx.delete(f"{server.url}/api/users/me/tokens", auth=("ada", PASSWORD))
    assert elsewhere.status_code == 204
    ended = authgate(env, "whoami")  # 401, then the refresh is refused too
    assert ended.returncode == 1 and ended.stdout == ""
    assert ended.stderr == (
        "Error: the login has ended (invalid refresh token); run: authgate login URL\n"
    )
    assert not token_file.exists()

    again = authgate(env, "login", server.url, "-u", "ada", "--password-stdin", stdin=PASSWORD)
    assert again.returncode == 0, again.stderr
    everywhere = authgate(env, "logout", "--everywhere")
    assert (everywhere.returncode, everywhere.stdout) == (0, "logged out everywhere\n")
    assert not token_file.exists()


def test_login_failures(server: Server, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    wrong = authgate(
        env, "login", server.url, "-u", "ada", "--password-stdin", stdin="wrong password here\n"
    )
    assert wrong.returncode == 1
    assert wrong.stderr == "Error: 401 Unauthorized: Unauthorized Access\n"
    assert not (tmp_path / "xdg" / "authgate" / "tokens.json").exists()

    no_user = authgate(env, "login", server.url, "--password-stdin", stdin=PASSWORD + "\n")
    assert no_user.returncode == 2 and "--password-stdin needs --username" in no_user.stderr

    (tmp_path / "xdg" / "authgate").mkdir(parents=True)
    unsafe = tmp_path / "xdg" / "authgate" / "tokens.json"
    unsafe.write_text('{"base_url": "http://x"}')
    unsafe.chmod(0o644)
    refused = authgate(env, "token")
    assert refused.returncode == 1 and "accessible to other users" in refused.stderr
