"""Production guard: ``authgate serve`` refuses unsafe settings with one line, non-zero exit."""

from __future__ import annotations

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
    command = [AUTHGATE, "serve", "--port", str(free_port())]
    return subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False
    )


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
