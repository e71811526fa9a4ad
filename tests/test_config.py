"""Configuration: read once from the environment, validated, safe in production."""

from __future__ import annotations

import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from authgate.config import ConfigError, Settings, _development_secret

STRONG = "k8Jq2Lm4Np6Rs8Tv0Wx2Yz4Ab6Cd8Ef0Gh2"


def test_settings_come_from_authgate_variables(tmp_path: Path) -> None:
    """Every field is read from AUTHGATE_<FIELD>, typed."""
    settings = Settings.from_env(
        {
            "AUTHGATE_ACCESS_TOKEN_TTL": "120",
            "AUTHGATE_PASSWORD_MIN_LENGTH": "8",
            "AUTHGATE_INSTANCE_PATH": str(tmp_path),
            "AUTHGATE_ISSUER": "https://auth.example.com",
        }
    )
    assert settings.access_token_ttl == 120
    assert settings.password_min_length == 8
    assert settings.issuer == "https://auth.example.com"
    assert settings.token_audience == "https://auth.example.com"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'authgate.db').resolve()}"


def test_malformed_integer_is_a_config_error(tmp_path: Path) -> None:
    """A non-numeric TTL is refused with a message naming the variable."""
    with pytest.raises(ConfigError, match="AUTHGATE_ACCESS_TOKEN_TTL"):
        Settings.from_env(
            {"AUTHGATE_ACCESS_TOKEN_TTL": "ten", "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
        )


def test_no_free_failures_is_refused(tmp_path: Path) -> None:
    """AUTHGATE_RATELIMIT_ACCOUNT_FREE=0 would make every fresh account wait 30 s before
    its first check (there is no failure to wait after): refused at start; 1 is fine."""
    env = {"AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(ConfigError, match="AUTHGATE_RATELIMIT_ACCOUNT_FREE"):
        Settings.from_env({**env, "AUTHGATE_RATELIMIT_ACCOUNT_FREE": "0"})
    assert (
        Settings.from_env({**env, "AUTHGATE_RATELIMIT_ACCOUNT_FREE": "1"}).ratelimit_account_free
        == 1
    )


def test_development_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """Without a configured secret, development creates instance/secret_key (0600) and reuses it."""
    first = Settings.from_env({"AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    second = Settings.from_env({"AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    key_file = tmp_path / "secret_key"
    assert first.secret_key == second.secret_key
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_secret_key_file_is_read(tmp_path: Path) -> None:
    """AUTHGATE_SECRET_KEY_FILE supplies the secret."""
    path = tmp_path / "key"
    path.write_text(STRONG + "\n")
    path.chmod(0o600)  # whatever the umask: group-writable would be refused
    settings = Settings.from_env(
        {"AUTHGATE_SECRET_KEY_FILE": str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    )
    assert settings.secret_key == STRONG


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "requires AUTHGATE_SECRET_KEY"),
        ("short-secret", "at least 32 bytes"),
        ("a" * 40, "placeholder or too repetitive"),
        ("top-secret!", "at least 32 bytes"),
    ],
)
def test_production_refuses_weak_secrets(tmp_path: Path, secret: str, message: str) -> None:
    """Production will not start with a missing, short or placeholder secret."""
    env = {
        "AUTHGATE_ENV": "production",
        "AUTHGATE_SECRET_KEY": secret,
        "AUTHGATE_ISSUER": "https://auth.example.com",
        "AUTHGATE_INSTANCE_PATH": str(tmp_path),
    }
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_plain_http_issuer(tmp_path: Path) -> None:
    """Production requires an https:// issuer."""
    with pytest.raises(ConfigError, match="https"):
        Settings.from_env(
            {
                "AUTHGATE_ENV": "production",
                "AUTHGATE_SECRET_KEY": STRONG,
                "AUTHGATE_ISSUER": "http://auth.example.com",
                "AUTHGATE_INSTANCE_PATH": str(tmp_path),
            }
        )


def test_production_accepts_a_strong_setup(tmp_path: Path) -> None:
    """A long random secret and an https issuer pass the production guard."""
    settings = Settings.from_env(
        {
            "AUTHGATE_ENV": "production",
            "AUTHGATE_SECRET_KEY": STRONG,
            "AUTHGATE_ISSUER": "https://auth.example.com",
            "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        }
    )
    assert settings.is_production


def test_serve_refuses_to_start_in_production_with_weak_secret(tmp_path: Path) -> None:
    """The CLI exits non-zero with one clear line instead of serving."""
    from click.testing import CliRunner

    from authgate.cli import main

    result = CliRunner().invoke(
        main,
        ["db", "upgrade"],
        env={
            "AUTHGATE_ENV": "production",
            "AUTHGATE_SECRET_KEY": "changeme",
            "AUTHGATE_ISSUER": "https://auth.example.com",
            "AUTHGATE_INSTANCE_PATH": str(tmp_path),
        },
    )
    assert result.exit_code == 2
    assert "refusing to start" in result.output


@pytest.mark.parametrize("variable", ["AUTHGATE_SECRET_KEY_FILE", "AUTHGATE_METRICS_TOKEN_FILE"])
def test_an_empty_or_missing_secret_file_is_refused(tmp_path: Path, variable: str) -> None:
    """A secret file that is empty (a mount that failed to fill) or missing stops the start
    with a ConfigError: it never means "no secret" (for the metrics token: no token)."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (empty, tmp_path / "missing"):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)})


def test_development_secret_is_never_read_half_written(tmp_path: Path) -> None:
    """Processes starting together on a fresh instance all get the one full secret; an
    empty secret file (a crash of an older version) is refused, not used."""
    instance = tmp_path / "instance"
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = set(pool.map(lambda _: _development_secret(instance), range(64)))
    assert len(found) == 1 and len(found.pop()) >= 64
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert [p.name for p in instance.iterdir()] == ["secret_key"]
    (instance / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        _development_secret(instance)


SECRET_FILE_VARIABLES = ["AUTHGATE_SECRET_KEY_FILE", "AUTHGATE_METRICS_TOKEN_FILE"]


def octal(mode: int) -> str:
    """A file mode as a test id: ``0644``."""
    return f"{mode:04o}"


def secret_file(tmp_path: Path, mode: int) -> Path:
    """A file holding STRONG with exactly ``mode`` (whatever the umask)."""
    path = tmp_path / "secret"
    path.write_text(STRONG + "\n")
    path.chmod(mode)
    return path


def config_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The WARNING records of authgate.config."""
    return [
        r for r in caplog.records if r.name == "authgate.config" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("variable", SECRET_FILE_VARIABLES)
@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=octal)
def test_a_secret_file_writable_by_group_or_others_is_refused(
    tmp_path: Path, variable: str, mode: int
) -> None:
    """Whoever may write the secret file may replace the secret (and forge every token):
    refused in every environment, naming the variable, the path, the mode and the fix."""
    path = secret_file(tmp_path, mode)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({variable: str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    message = str(refused.value)
    assert message.startswith(f"{variable}: {path} has mode {mode:04o}, writable by group")
    assert "chmod 600" in message and "defaultMode: 0400" in message
    assert STRONG not in message


@pytest.mark.parametrize("variable", SECRET_FILE_VARIABLES)
def test_a_secret_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, variable: str) -> None:
    """A directory or a FIFO is refused with a clear message (the FIFO without waiting for
    a writer)."""
    directory = tmp_path / "secret-dir"
    directory.mkdir(mode=0o700)
    fifo = tmp_path / "secret-fifo"
    os.mkfifo(fifo, 0o600)
    for path in (directory, fifo):
        with pytest.raises(ConfigError, match=f"^{variable}: {path} is not a regular file$"):
            Settings.from_env({variable: str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)})


@pytest.mark.parametrize("variable", SECRET_FILE_VARIABLES)
@pytest.mark.parametrize("mode", [0o600, 0o400], ids=octal)
def test_an_owner_only_secret_file_is_read_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, variable: str, mode: int
) -> None:
    """0600 and 0400 are what the rule asks for: read, nothing logged."""
    caplog.set_level(logging.DEBUG, logger="authgate.config")
    path = secret_file(tmp_path, mode)
    settings = Settings.from_env({variable: str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    field = "secret_key" if variable == "AUTHGATE_SECRET_KEY_FILE" else "metrics_token"
    assert getattr(settings, field) == STRONG
    assert config_warnings(caplog) == []


@pytest.mark.parametrize("variable", SECRET_FILE_VARIABLES)
@pytest.mark.parametrize("mode", [0o644, 0o444, 0o640], ids=octal)
def test_a_secret_file_readable_by_group_or_others_is_read_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, variable: str, mode: int
) -> None:
    """Kubernetes (0644) and Docker swarm (0444) mounts are accepted, with one warning that
    names the variable, the path and the mode, never the secret."""
    caplog.set_level(logging.DEBUG, logger="authgate.config")
    path = secret_file(tmp_path, mode)
    settings = Settings.from_env({variable: str(path), "AUTHGATE_INSTANCE_PATH": str(tmp_path)})
    field = "secret_key" if variable == "AUTHGATE_SECRET_KEY_FILE" else "metrics_token"
    assert getattr(settings, field) == STRONG
    [warning] = config_warnings(caplog)
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert text.startswith(f"{variable}: {path} has mode {mode:04o}, readable by group")
    assert STRONG not in text and STRONG not in caplog.text


def test_development_secret_goes_through_the_same_mode_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """instance/secret_key (created 0600) is read without a warning; made writable by
    others, it is refused like any other secret file."""
    caplog.set_level(logging.DEBUG, logger="authgate.config")
    secret = _development_secret(tmp_path)
    assert _development_secret(tmp_path) == secret
    assert config_warnings(caplog) == []
    (tmp_path / "secret_key").chmod(0o666)
    with pytest.raises(ConfigError, match="the development secret: .* has mode 0666") as refused:
        _development_secret(tmp_path)
    assert secret not in str(refused.value)
