"""deploy/nginx.conf as shipped (addresses and paths substituted), with TLS, in front of
two real AuthGate servers sharing one database."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import Server, free_port

pytestmark = pytest.mark.server

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
PASSWORD = "a long enough password"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def site_config(directory: Path, upstreams: list[int], http_port: int, https_port: int) -> str:
    """The sample with this test's ports, certificate and log path."""
    cert, key = self_signed(directory)
    text = SAMPLE.read_text()
    replacements = {
        "10.0.0.11:8000": f"127.0.0.1:{upstreams[0]}",
        "10.0.0.12:8000": f"127.0.0.1:{upstreams[1]}",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/ssl/authgate/fullchain.pem": str(cert),
        "/etc/ssl/authgate/privkey.pem": str(key),
        "/var/log/nginx/authgate.access.log": str(directory / "access.log"),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx(start_server: Callable[..., Server], tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """nginx on two free ports in front of two servers; yields (http URL, https URL, cert)."""
    env = {"AUTHGATE_TRUSTED_PROXIES": "127.0.0.1", "AUTHGATE_ISSUER": "https://127.0.0.1"}
    one = start_server(env=env)
    two = start_server(env=env, database_url=one.database_url)
    http_port, https_port = free_port(), free_port()
    (tmp_path / "authgate.conf").write_text(
        site_config(tmp_path, [one.port, two.port], http_port, https_port)
    )
    temp = "".join(
        f"{kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user} daemon off; worker_processes 1; pid {tmp_path / 'nginx.pid'};"
        f"error_log {tmp_path / 'error.log'}; events {{}}"
        f"http {{ {temp} include {tmp_path / 'authgate.conf'}; }}"
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    try:
        yield (
            f"http://127.0.0.1:{http_port}",
            f"https://127.0.0.1:{https_port}",
            tmp_path / "fullchain.pem",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sample_nginx_config_serves_authgate_over_tls(nginx: tuple[str, str, Path]) -> None:
    """Plain HTTP redirects to HTTPS; over TLS, AuthGate works, trusts nginx's forwarded scheme
    (HSTS) and address (a client's own X-Forwarded-For is replaced, not believed), and errors
    nginx makes itself are JSON."""
    plain, secure, cert = nginx
    redirect = httpx.get(f"{plain}/api/resource")
    assert redirect.status_code == 301
    assert redirect.headers["Location"].startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=secure, verify=trust, timeout=30) as http:
        created = http.post("/api/users", json={"username": "miguel", "password": PASSWORD})
        assert created.status_code == 201, created.text
        spoofed = {"X-Forwarded-For": "203.0.113.9"}
        logins = [
            http.post("/api/token", auth=("miguel", PASSWORD), headers=spoofed) for _ in range(4)
        ]
        assert [r.status_code for r in logins] == [200] * 4
        assert "max-age" in logins[0].headers["Strict-Transport-Security"]
        token = logins[-1].json()["token"]
        events = http.get("/api/users/me/events", headers={"Authorization": f"Bearer {token}"})
        assert events.status_code == 200
        addresses = {event["ip"] for event in events.json()["events"]}
        assert addresses == {"127.0.0.1"}, addresses
        too_large = http.post("/api/users", content=b"x" * 100_000)
        assert too_large.status_code == 413
        assert too_large.headers["content-type"] == "application/problem+json"
        assert too_large.json()["status"] == 413
