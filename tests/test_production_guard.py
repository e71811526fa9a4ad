"""Production guard: ``authgate serve`` refuses unsafe settings with one line, non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import AUTHGATE, free_port

STRONG = "k8Jq2Lm4Np6Rs8Tv0Wx2Yz4Ab6Cd8Ef0Gh2"
SAFE = {
    "AUTHGATE_ENV": "production",
    "AUTHGATE_SECRET_KEY": STRONG,
    "AUTHGATE_ISSUER": "https://auth.example.com",
}


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``authgate serve`` with ``env`` (nothing else from AUTHGATE_*) and let it exit."""
    base = {"PATH": "/usr/bin:/bin", "AUTHGATE_INSTANCE_PATH": str(tmp_path)}
    if "PYTHONPATH" in os.environ:  # e.g. a git worktree's src/ ahead of the installed one
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    command = [AUTHGATE, "serve", "--port", str(free_port())]
    # A process group of its own: if the guard fails and serve starts serving, the timeout
    # kills its workers too, instead of leaving them orphaned on the machine.
    with subprocess.Popen(
        command,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"AUTHGATE_DEBUG": "1"}, "AUTHGATE_DEBUG"),
        ({"AUTHGATE_SECRET_KEY": "changeme"}, "at least 32 bytes"),
        ({"AUTHGATE_SECRET_KEY": "your-secret-key"}, "at least 32 bytes"),
        ({"AUTHGATE_SECRET_KEY": "x" * 48}, "placeholder"),
        ({"AUTHGATE_SECRET_KEY": ""}, "requires AUTHGATE_SECRET_KEY"),
        ({"AUTHGATE_ISSUER": "http://auth.example.com"}, "https"),
        ({"AUTHGATE_TEST_CLOCK_FILE": "clock-file"}, "AUTHGATE_TEST_CLOCK_FILE"),
        ({"AUTHGATE_PASSWORD_HASH_PROFILE": "cheapest"}, "tests only"),
    ],
)
def test_production_refuses_to_start(tmp_path: Path, change: dict[str, str], reason: str) -> None:
    """Each unsafe setting makes serve exit 2 with exactly one clear line on stderr."""
    result = serve(tmp_path, {**SAFE, **change})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authgate: refusing to start: ")
    assert reason in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "authgate.db").exists()


def test_test_clock_is_refused_in_development_too(tmp_path: Path) -> None:
    """The injectable clock exists only for AUTHGATE_ENV=testing."""
    result = serve(tmp_path, {"AUTHGATE_TEST_CLOCK_FILE": str(tmp_path / "clock")})
    assert result.returncode == 2
    assert "AUTHGATE_TEST_CLOCK_FILE" in result.stderr


def test_production_refuses_a_secret_file_others_may_write(tmp_path: Path) -> None:
    """A 0666 AUTHGATE_SECRET_KEY_FILE stops serve with exit 2 and one line naming the
    variable, the path, the mode and the fix; the secret itself is not printed."""
    key_file = tmp_path / "secret-key"
    key_file.write_text(STRONG + "\n")
    key_file.chmod(0o666)
    env = {**SAFE, "AUTHGATE_SECRET_KEY": "", "AUTHGATE_SECRET_KEY_FILE": str(key_file)}
    result = serve(tmp_path, env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"authgate: refusing to start: AUTHGATE_SECRET_KEY_FILE: {key_file} has mode 0666, "
        "writable by group or others (who could replace the secret); make it 0600 or 0400 "
        f"(chmod 600 {key_file}; Kubernetes: defaultMode: 0400)"
    ], result.stderr
    assert STRONG not in result.stderr + result.stdout
    assert not (tmp_path / "authgate.db").exists()


def test_secret_file_warning_is_written_in_the_log_format(tmp_path: Path) -> None:
    """The warning about a 0644 secret file, logged while the settings are read, comes out
    in AUTHGATE_LOG_FORMAT like every later line (here JSON), once."""
    key_file = tmp_path / "secret-key"
    key_file.write_text(STRONG + "\n")
    key_file.chmod(0o644)
    env = {
        "AUTHGATE_SECRET_KEY_FILE": str(key_file),
        "AUTHGATE_LOG_FORMAT": "json",
        # Refused connection: serve stops after logging is set up, before serving.
        "AUTHGATE_DATABASE_URL": f"postgresql+psycopg://authgate@127.0.0.1:{free_port()}/none",
    }
    result = serve(tmp_path, env)
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    warnings = [r for r in records if r["logger"] == "authgate.config"]
    assert [w["level"] for w in warnings] == ["WARNING"], result.stderr
    assert f"{key_file} has mode 0644, readable by group or others" in warnings[0]["message"]
    assert records[0] == warnings[0]  # no plain-text copy of it before the JSON lines
    assert result.stderr.startswith("{")
    assert STRONG not in result.stderr + result.stdout
