"""``make bench``: load a real AuthGate server with wrk and print one table.

Starts ``authgate serve`` (same workers and threads for every scenario) on a fresh
database, seeds it, loads it with ``wrk`` (a separate process; Lua scripts in
``bench/wrk/``) and prints the measurements of bench/README.md, every ratio from the
same run. ``--quick`` is a short smoke run; ``--servers`` compares the WSGI servers on the
floor and the token path instead.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wrk_output import WrkResult, parse  # noqa: E402

BENCH = Path(__file__).resolve().parent
SCRIPTS = BENCH / "wrk"
AUTHGATE = str(Path(sys.executable).with_name("authgate"))
SECRET = "bench-secret-" + "Zq7Lw3Nd8Rk2Vx5Hp9Tb4Mc6Jf1Gs0Ya"
PASSWORD = "quiet lantern orchard velvet 42"  # noqa: S105 (the bench users' password)
CORES = os.cpu_count() or 1
#: ``authgate`` arguments creating the benchmark's client-credentials client (JSON out).
CREATE_CLIENT = (
    *("client", "create", "--name", "bench", "--type", "confidential"),
    *("--grant", "client_credentials", "--scope", "resource:read", "--json"),
)


# ---------------------------------------------------------------- machine


def machine() -> list[str]:
    """Lines describing this machine (CPU model, cores, memory, load)."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return [
        f"machine: {CORES} cores ({model}), {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"load average at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC: {load()}",
    ]


def load() -> str:
    """The 1/5/15-minute load averages (other processes share this machine)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ---------------------------------------------------------------- server


def free_port() -> int:
    """A loopback TCP port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One ``authgate serve`` process group on a loopback port."""

    env: dict[str, str]
    server: str
    workers: int
    threads: int
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL (also the issuer)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """Start and wait until ``/healthz`` answers."""
        command = [
            AUTHGATE,
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--server",
            self.server,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                answer = httpx.get(self.url + "/healthz", timeout=1)
                if answer.status_code == 200 and len(self.worker_pids()) >= self.workers:
                    return self
            time.sleep(0.2)
        raise SystemExit(f"server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the process group this harness started, then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the server's main process)."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in path.read_text().split()]
        return []

    def reset_peak_rss(self) -> None:
        """Reset every worker's peak RSS (``VmHWM``), so the next read is one scenario's."""
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def peak_rss_mib(self) -> float:
        """The largest peak RSS of any worker since the last reset, MiB."""
        peaks = [0]
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]))
        return max(peaks) / 1024


# ---------------------------------------------------------------- wrk


@dataclass
class Load:
    """How hard wrk pushes."""

    seconds: float
    connections: int
    threads: int = field(default_factory=lambda: min(CORES, 2))


def wrk(url: str, script: str, env: dict[str, str], load: Load) -> WrkResult:
    """Run wrk with a Lua script from bench/wrk/ and parse its report."""
    # wrk opens at least one connection per thread: one client means one thread, or a
    # "single" client would be two connections, possibly served in parallel.
    threads = min(load.threads, load.connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{load.connections}",
        f"-d{load.seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(SCRIPTS / script),
        url,
    ]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return parse(done.stdout)


def basic(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------- argon2 ceiling


def _hash_worker(args: tuple[str, float]) -> int:
    from argon2 import PasswordHasher

    from authgate.passwords import DEFAULT_PARAMETERS

    encoded, seconds = args
    hasher = PasswordHasher.from_parameters(DEFAULT_PARAMETERS)
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hasher.verify(encoded, PASSWORD)
        count += 1
    return count


def argon2_ceiling(seconds: float) -> float:
    """argon2 verifications per second on all cores (one process per core)."""
    from argon2 import PasswordHasher

    from authgate.passwords import DEFAULT_PARAMETERS

    encoded = PasswordHasher.from_parameters(DEFAULT_PARAMETERS).hash(PASSWORD)
    with multiprocessing.get_context("spawn").Pool(CORES) as pool:
        pool.map(_hash_worker, [(encoded, 0.3)] * CORES)  # warm up every process
        counts = pool.map(_hash_worker, [(encoded, seconds)] * CORES)
    return sum(counts) / seconds


def argon2_parameters() -> str:
    """The configured argon2 parameters, as printed in the table header."""
    from authgate.passwords import DEFAULT_PARAMETERS as p

    return (
        f"argon2id m={p.memory_cost} KiB t={p.time_cost} p={p.parallelism} "
        f"(hash {p.hash_len} B, salt {p.salt_len} B)"
    )


# ---------------------------------------------------------------- seeding


def seed_users(database_url: str, total: int) -> float:
    """Bulk-insert users until the table holds ``total`` rows (one precomputed hash).

    Written straight to the database (executemany in batches), not through the API.
    Returns the seconds it took.
    """
    from argon2 import PasswordHasher
    from sqlalchemy import create_engine, func, insert, select

    from authgate.accounts import username_key
    from authgate.models import User
    from authgate.passwords import DEFAULT_PARAMETERS

    started = time.monotonic()
    encoded = PasswordHasher.from_parameters(DEFAULT_PARAMETERS).hash(PASSWORD)
    engine = create_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    table = User.__table__
    with engine.begin() as connection:
        rows_now = connection.scalar(select(func.count()).select_from(table)) or 0
        seeded = connection.scalar(
            select(func.count()).select_from(table).where(table.c.username.like("seed%"))
        )
    # At least one seed user ("seed0", the one who logs in), then up to ``total`` rows.
    wanted = max(total - rows_now, 0 if seeded else 1)
    batch = 50_000
    for start in range(seeded or 0, (seeded or 0) + wanted, batch):
        stop = min(start + batch, (seeded or 0) + wanted)
        rows = [
            {
                "username": f"seed{n}",
                "username_key": username_key(f"seed{n}"),
                "password_hash": encoded,
                "created_at": now,
            }
            for n in range(start, stop)
        ]
        with engine.begin() as connection:
            connection.execute(insert(table), rows)
    engine.dispose()
    return time.monotonic() - started


# ---------------------------------------------------------------- the run


@dataclass
class Row:
    """One line of the table."""

    label: str
    result: WrkResult | None
    value: str
    target: str = ""
    rss_mib: float = 0.0
    ok: bool | None = None


@dataclass
class Bench:
    """Everything one run shares: settings, the server, the rows measured."""

    args: argparse.Namespace
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    server: Server | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The server's base URL."""
        assert self.server is not None
        return self.server.url

    def rounds(self) -> int:
        """Alternating rounds of a measurement and its reference (median ratio reported)."""
        return 1 if self.args.quick else self.args.rounds

    def seconds(self) -> float:
        """Duration of one wrk run."""
        return self.args.seconds or (3.0 if self.args.quick else 10.0)

    def measure(
        self, script: str, env: dict[str, str], connections: int, server: Server | None = None
    ) -> tuple[WrkResult, float]:
        """One wrk run against ``server`` (default: the run's server), and the largest
        worker peak RSS during it (MiB)."""
        server = server or self.server
        assert server is not None
        server.reset_peak_rss()
        result = wrk(server.url, script, env, Load(self.seconds(), connections))
        return result, server.peak_rss_mib()

    def cli(self, *arguments: str) -> str:
        """Run an ``authgate`` command against the benchmark database."""
        done = subprocess.run(
            [AUTHGATE, *arguments], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout


def base_env(args: argparse.Namespace, workdir: Path, port: int) -> dict[str, str]:
    """The server's environment: a fresh database, throttles off (we measure throughput)."""
    database_url = args.database_url or f"sqlite:///{workdir / 'authgate.db'}"
    env = {
        **os.environ,
        "AUTHGATE_ENV": "development",
        "AUTHGATE_SECRET_KEY": SECRET,
        "AUTHGATE_DATABASE_URL": database_url,
        "AUTHGATE_INSTANCE_PATH": str(workdir),
        "AUTHGATE_ISSUER": f"http://127.0.0.1:{port}",
        "AUTHGATE_RATELIMIT": "0",
        "AUTHGATE_LOG_LEVEL": "WARNING",
    }
    if args.redis_url:
        env["AUTHGATE_REDIS_URL"] = args.redis_url
        env["AUTHGATE_REDIS_PREFIX"] = f"bench:{secrets.token_hex(4)}:"
    return env


def login_pairs(url: str, username: str, count: int) -> list[dict[str, str]]:
    """``count`` logins of ``username``: access and refresh tokens."""
    with httpx.Client(base_url=url, timeout=30) as client:
        pairs = []
        for _ in range(count):
            answer = client.post("/api/token", auth=(username, PASSWORD))
            answer.raise_for_status()
            pairs.append(answer.json())
        return pairs


def token_vs_floor(bench: Bench, tokens_file: Path) -> None:
    """1. Token-protected GET /api/resource vs the /healthz floor, interleaved rounds."""
    connections = bench.args.connections
    floors, protected, rss, ratios = [], [], [], []
    for _ in range(bench.rounds()):
        for path, bucket in (("/healthz", floors), ("/api/resource", protected)):
            result, peak = bench.measure(
                "bearer.lua", {"BENCH_PATH": path, "BENCH_TOKENS": str(tokens_file)}, connections
            )
            check(result, path)
            bucket.append(result)
            rss.append(peak)
        ratios.append(protected[-1].ok_per_second / floors[-1].ok_per_second)
    floor = statistics.median(r.ok_per_second for r in floors)
    token = statistics.median(r.ok_per_second for r in protected)
    ratio = statistics.median(ratios)
    bench.rows.append(Row("1. floor: GET /healthz (no auth work)", floors[-1], f"{floor:,.0f}/s"))
    bench.rows.append(
        Row(
            "1. GET /api/resource, Bearer token",
            protected[-1],
            f"{token:,.0f}/s = {ratio:.2f} x floor",
            ">= 0.90 x floor",
            max(rss),
            ratio >= 0.90,
        )
    )


def check(result: WrkResult, what: str) -> None:
    """Refuse a measurement in which requests failed (a benchmark of errors is no benchmark)."""
    if result.non_2xx or result.socket_errors:
        raise SystemExit(
            f"{what}: {result.non_2xx} non-2xx answers, {result.socket_errors} socket errors"
        )


def password_logins(bench: Bench, username: str) -> None:
    """2. Basic password auth on /api/resource vs the argon2 ceiling; enumeration timing."""
    env = {"BENCH_PATH": "/api/resource", "BENCH_AUTHORIZATION": basic(username, PASSWORD)}
    logins, ceilings, shares = [], [], []
    for _ in range(bench.rounds()):
        result, peak = bench.measure("request.lua", env, bench.args.connections)
        check(result, "password logins")
        logins.append(result)
        ceilings.append(argon2_ceiling(bench.seconds()))
        shares.append(result.ok_per_second / ceilings[-1])
    ceiling = statistics.median(ceilings)
    share = statistics.median(shares)
    rate = statistics.median(r.ok_per_second for r in logins)
    bench.rows.append(
        Row("2. argon2 ceiling (process pool, all cores)", None, f"{ceiling:,.1f} hashes/s")
    )
    bench.rows.append(
        Row(
            "2. GET /api/resource, Basic password",
            result,
            f"{rate:,.1f}/s = {share:.2f} x ceiling",
            ">= 0.90 x ceiling",
            peak,
            share >= 0.90,
        )
    )
    # One connection, alternating rounds: with two, granian may hand both to one worker
    # (one hash at a time), which doubles that run's latency whatever the credential.
    unknown_runs, wrong_runs, ratios = [], [], []
    for _ in range(bench.rounds()):
        for auth, runs in (
            (basic("nobody-" + secrets.token_hex(4), PASSWORD), unknown_runs),
            (basic(username, PASSWORD + " wrong"), wrong_runs),
        ):
            result, _ = bench.measure(
                "request.lua", {"BENCH_PATH": "/api/resource", "BENCH_AUTHORIZATION": auth}, 1
            )
            runs.append(result)
        ratios.append(unknown_runs[-1].p50 / wrong_runs[-1].p50)
    ratio = statistics.median(ratios)
    unknown_p50 = statistics.median(r.p50 for r in unknown_runs)
    wrong_p50 = statistics.median(r.p50 for r in wrong_runs)
    bench.rows.append(
        Row(
            "2. 401 latency, 1 client: unknown user / wrong password",
            unknown_runs[-1],
            f"p50 {ms(unknown_p50)} / {ms(wrong_p50)}, median ratio {ratio:.2f}",
            "~1.00",
            ok=0.9 <= ratio <= 1.1,
        )
    )


def registrations(bench: Bench) -> None:
    """3. Registrations with 16 concurrent clients."""
    env = {"BENCH_PREFIX": "r" + secrets.token_hex(3), "BENCH_PASSWORD": PASSWORD}
    result, peak = bench.measure("register.lua", env, 16)
    check(result, "registrations")
    ceiling_note = "(one argon2 hash each)"
    bench.rows.append(
        Row(
            "3. POST /api/users, 16 clients",
            result,
            f"{result.ok_per_second:,.1f}/s {ceiling_note}",
            rss_mib=peak,
        )
    )


def oauth_and_refresh(bench: Bench, refresh_file: Path, refresh_count: int) -> None:
    """4. client credentials, introspection, refresh-token rotation."""
    client = json.loads(bench.cli(*CREATE_CLIENT))
    client_auth = basic(client["client_id"], client["client_secret"])
    form = "application/x-www-form-urlencoded"
    grant = {
        "BENCH_METHOD": "POST",
        "BENCH_PATH": "/oauth/token",
        "BENCH_BODY": "grant_type=client_credentials&scope=resource:read",
        "BENCH_CONTENT_TYPE": form,
        "BENCH_AUTHORIZATION": client_auth,
    }
    result, peak = bench.measure("request.lua", grant, bench.args.connections)
    check(result, "client credentials")
    per_core = result.ok_per_second / CORES
    bench.rows.append(
        Row(
            "4. POST /oauth/token client_credentials",
            result,
            f"{result.ok_per_second:,.0f}/s = {per_core:,.0f}/s/core",
            ">= 500/s/core",
            peak,
            per_core >= 500,
        )
    )
    token = httpx.post(
        bench.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "resource:read"},
        auth=(client["client_id"], client["client_secret"]),
    ).json()["access_token"]
    introspect = {**grant, "BENCH_PATH": "/oauth/introspect", "BENCH_BODY": f"token={token}"}
    result, peak = bench.measure("request.lua", introspect, bench.args.connections)
    check(result, "introspection")
    per_core = result.ok_per_second / CORES
    bench.rows.append(
        Row(
            "4. POST /oauth/introspect",
            result,
            f"{result.ok_per_second:,.0f}/s = {per_core:,.0f}/s/core",
            rss_mib=peak,
        )
    )
    threads = min(CORES, 2)
    env = {"BENCH_TOKENS": str(refresh_file), "BENCH_PER_THREAD": str(refresh_count // threads)}
    result, peak = bench.measure("refresh.lua", env, bench.args.connections)
    check(result, "refresh")
    per_core = result.ok_per_second / CORES
    bench.rows.append(
        Row(
            "4. POST /api/token/refresh (rotation)",
            result,
            f"{result.ok_per_second:,.0f}/s = {per_core:,.0f}/s/core",
            ">= 300/s/core",
            peak,
            per_core >= 300,
        )
    )


def login_latency(bench: Bench, database_url: str) -> None:
    """6. Login latency (POST /api/token, one client) with few and with many users.

    The many users live in a second database behind a second server of the same kind, and
    the two are measured in alternating rounds (median of the per-round ratios), so a
    drift of the machine's speed between two runs does not read as growth.
    """
    small, large = (1_000, 20_000) if bench.args.quick else (1_000, bench.args.users)
    env = {"BENCH_METHOD": "POST", "BENCH_PATH": "/api/token"}
    env["BENCH_AUTHORIZATION"] = basic("seed0", PASSWORD)
    with second_database(database_url) as large_url, second_server(bench, large_url) as other:
        for url, total in ((database_url, small), (large_url, large)):
            took = seed_users(url, total)
            bench.notes.append(f"seeded users up to {total:,} in {took:.1f} s (executemany)")
        runs: dict[int, list[WrkResult]] = {small: [], large: []}
        peaks, ratios = [], []
        for _ in range(bench.rounds()):
            for total, server in ((small, bench.server), (large, other)):
                result, peak = bench.measure("request.lua", env, 1, server)
                check(result, f"logins with {total} users")
                runs[total].append(result)
                peaks.append(peak)
            ratios.append(runs[large][-1].p50 / runs[small][-1].p50)
    for total in (small, large):
        p50 = statistics.median(r.p50 for r in runs[total])
        bench.rows.append(
            Row(
                f"6. POST /api/token, 1 client, {total:,} users",
                runs[total][-1],
                f"p50 {ms(p50)}",
                rss_mib=max(peaks),
            )
        )
    growth = statistics.median(ratios)
    bench.rows[-1].value += f", median ratio {growth:.2f} x"
    bench.rows[-1].target = "~1.00 x"
    bench.rows[-1].ok = growth <= 1.10


@contextlib.contextmanager
def second_database(database_url: str) -> Iterator[str]:
    """A new, empty database beside ``database_url`` (a SQLite file next to it, or a
    PostgreSQL database named ``<name>_large``), dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database)).with_name("authgate-large.db")
        try:
            yield str(url.set(database=str(path)))
        finally:
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
        return
    name = f"{url.database}_large"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def second_server(bench: Bench, database_url: str) -> Iterator[Server]:
    """A server like the run's own (same kind, workers and threads) on ``database_url``
    (``authgate serve`` migrates it), stopped afterwards."""
    port = free_port()
    workdir = bench.workdir / "second"
    workdir.mkdir(exist_ok=True)
    env = {**base_env(bench.args, workdir, port), "AUTHGATE_DATABASE_URL": database_url}
    args = bench.args
    server = Server(env, args.server, args.workers, args.threads, workdir / "server.log", port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def forged_tokens(bench: Bench, tokens_file: Path, database_url: str) -> None:
    """7. A flood of forged Bearer tokens: each costs a signature check, a 401 and one
    ``token.rejected`` audit row (the rows are counted in the database afterwards)."""
    head, payload, signature = tokens_file.read_text().split()[0].split(".")
    authorization = f"Bearer {head}.{payload}.{signature[::-1]}"
    probe = httpx.get(bench.url + "/api/resource", headers={"Authorization": authorization})
    if probe.status_code != 401:
        raise SystemExit(f"forged token: {probe.status_code} instead of 401")
    before = rejected_rows(database_url)
    env = {"BENCH_PATH": "/api/resource", "BENCH_AUTHORIZATION": authorization}
    result, peak = bench.measure("request.lua", env, bench.args.connections)
    accepted = result.requests - result.non_2xx
    if result.socket_errors or accepted:
        errors = result.socket_errors
        raise SystemExit(f"forged tokens: {accepted} accepted, {errors} socket errors")
    rows = rejected_rows(database_url) - before
    bench.rows.append(
        Row(
            "7. GET /api/resource, forged Bearer token (401)",
            result,
            f"{result.requests_per_second:,.0f}/s; {rows:,} token.rejected rows "
            f"for {result.requests:,} answers",
            rss_mib=peak,
        )
    )


def rejected_rows(database_url: str) -> int:
    """How many ``token.rejected`` audit events the database holds."""
    from sqlalchemy import create_engine, func, select

    from authgate.models import AuditEvent

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count = select(func.count()).where(AuditEvent.event == "token.rejected")
            return connection.scalar(count) or 0
    finally:
        engine.dispose()


def ms(seconds: float) -> str:
    """Seconds as milliseconds for the table."""
    return f"{seconds * 1000:.2f} ms"


def table(bench: Bench) -> str:
    """The one table: result, target, latency, peak RSS per worker."""
    header = (
        "| measurement | result | target | met | p50 | p99 | peak RSS/worker |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for row in bench.rows:
        p50 = ms(row.result.p50) if row.result else ""
        p99 = ms(row.result.p99) if row.result else ""
        met = "" if row.ok is None else ("yes" if row.ok else "NO")
        rss = f"{row.rss_mib:.0f} MiB" if row.rss_mib else ""
        lines.append(
            f"| {row.label} | {row.value} | {row.target} | {met} | {p50} | {p99} | {rss} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def running(bench: Bench, server: str, workers: int, threads: int) -> Iterator[Server]:
    """A started server, stopped afterwards whatever happens."""
    port = free_port()
    bench.env = base_env(bench.args, bench.workdir, port)
    instance = Server(
        bench.env, server, workers, threads, bench.workdir / f"server-{server}.log", port=port
    )
    bench.server = instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def main_table(bench: Bench) -> None:
    """The measurements (or those of ``--only``) against one server."""
    args = bench.args
    database_url = args.database_url or f"sqlite:///{bench.workdir / 'authgate.db'}"
    with running(bench, args.server, args.workers, args.threads):
        username = "bencher"
        httpx.post(
            bench.url + "/api/users", json={"username": username, "password": PASSWORD}
        ).raise_for_status()
        # wrk calls request() once more on its first thread to check the script, and
        # that token is never sent: one spare per thread.
        threads = min(CORES, 2)
        per_thread = bench.args.connections // threads + 1
        refresh_count = per_thread * threads
        pairs = login_pairs(bench.url, username, refresh_count)
        tokens_file = bench.workdir / "access-tokens.txt"
        tokens_file.write_text("\n".join(p["token"] for p in pairs) + "\n")
        refresh_file = bench.workdir / "refresh-tokens.txt"
        refresh_file.write_text("\n".join(p["refresh_token"] for p in pairs) + "\n")
        only = args.only
        if 1 in only:
            token_vs_floor(bench, tokens_file)
        if 2 in only:
            password_logins(bench, username)
        if 3 in only:
            registrations(bench)
        if 4 in only:
            oauth_and_refresh(bench, refresh_file, refresh_count)
        if 6 in only:
            login_latency(bench, database_url)
        if 7 in only:
            forged_tokens(bench, tokens_file, database_url)


def compare_servers(bench: Bench) -> None:
    """Floor and token path under each WSGI server, same workers."""
    args = bench.args
    print("| server | workers x threads | floor /healthz | token /api/resource | ratio |")
    print("|---|---|---|---|---|")
    for server, threads in (("gunicorn", 1), ("gunicorn", 4), ("granian", 1), ("granian", 4)):
        with running(bench, server, args.workers, threads):
            username = "bencher"
            httpx.post(
                bench.url + "/api/users", json={"username": username, "password": PASSWORD}
            ).raise_for_status()
            pairs = login_pairs(bench.url, username, 8)
            tokens_file = bench.workdir / "access-tokens.txt"
            tokens_file.write_text("\n".join(p["token"] for p in pairs) + "\n")
            bench.rows = []
            token_vs_floor(bench, tokens_file)
            floor, token = bench.rows[0], bench.rows[1]
            kind = server if server == "granian" else ("gthread" if threads > 1 else "sync")
            print(
                f"| {kind} | {args.workers} x {threads} | {floor.value} | "
                f"{token.value.split(' = ')[0]} | {token.value.split(' = ')[1]} |",
                flush=True,
            )
        # A fresh database for the next server.
        for path in bench.workdir.glob("authgate.db*"):
            path.unlink()


#: The scenarios of the table (5, peak RSS per worker, is a column of each).
SCENARIOS = frozenset({1, 2, 3, 4, 6, 7})


def scenarios(text: str) -> frozenset[int]:
    """``--only``: comma-separated scenario numbers, e.g. ``1,4``."""
    try:
        chosen = frozenset(int(part) for part in text.split(","))
    except ValueError:
        chosen = frozenset()
    if not chosen or not chosen <= SCENARIOS:
        raise argparse.ArgumentTypeError(f"choose from {sorted(SCENARIOS)}, comma-separated")
    return chosen


def options() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (3 s per load)")
    parser.add_argument("--seconds", type=float, default=0, help="duration of each wrk run")
    parser.add_argument("--server", default="granian", choices=["granian", "gunicorn"])
    parser.add_argument("--workers", type=int, default=CORES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for ratios")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--users", type=int, default=1_000_000, help="users for scenario 6")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", help="AUTHGATE_REDIS_URL for the server")
    parser.add_argument("--servers", action="store_true", help="compare WSGI servers only")
    parser.add_argument(
        "--only", type=scenarios, default=SCENARIOS, help="run these scenarios, e.g. 1,4"
    )
    return parser.parse_args()


def main() -> None:
    """Run the benchmark and print the table."""
    args = options()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="authgate-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        for line in machine():
            print(line)
        print(
            f"command: {' '.join(sys.argv)}; server: {args.server}, {args.workers} workers x "
            f"{args.threads} threads; wrk: {min(CORES, 2)} threads, "
            f"{args.connections} connections, {bench.seconds():g} s per run; "
            f"database: {'PostgreSQL' if args.database_url else 'SQLite'}"
            f"{' + Redis' if args.redis_url else ''}"
        )
        print(argon2_parameters(), flush=True)
        if args.servers:
            compare_servers(bench)
        else:
            main_table(bench)
            print()
            print(table(bench))
            for note in bench.notes:
                print(f"- {note}")
        print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
