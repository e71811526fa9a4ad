"""The benchmark harness's command line (``--only`` picks scenarios) and the second
database of scenario 6 (bench/ is not a package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.support import DATABASE_URL, bench_module, on_postgresql

bench_run = bench_module("run")


def test_only_takes_comma_separated_scenarios() -> None:
    assert bench_run.scenarios("1") == {1}
    assert bench_run.scenarios("4,1,4") == {1, 4}
    assert (
        bench_run.scenarios(",".join(map(str, sorted(bench_run.SCENARIOS)))) == bench_run.SCENARIOS
    )


@pytest.mark.parametrize("text", ["", "5", "8", "1,x", "1;2", "0"])
def test_only_refuses_what_is_not_a_scenario(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
        bench_run.scenarios(text)


def test_every_scenario_runs_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["run.py"])
    assert bench_run.options().only == bench_run.SCENARIOS


def test_the_second_sqlite_database_lies_beside_the_first_and_is_removed(tmp_path: Path) -> None:
    """Scenario 6's many users live in their own file, deleted after the run."""
    large = tmp_path / "authgate-large.db"
    with bench_run.second_database(f"sqlite:///{tmp_path / 'authgate.db'}") as url:
        assert url == f"sqlite:///{large}"
        large.write_bytes(b"rows")
        (tmp_path / "authgate-large.db-wal").write_bytes(b"log")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not on_postgresql(), reason="the PostgreSQL pass creates the database")
def test_the_second_postgresql_database_is_created_and_dropped() -> None:
    """On PostgreSQL it is a new database, ``<name>_large``, dropped after the run."""
    assert DATABASE_URL is not None
    name = f"{make_url(DATABASE_URL).database}_large"

    def exists() -> bool:
        engine = create_engine(DATABASE_URL)
        try:
            with engine.connect() as connection:
                query = text("SELECT count(*) FROM pg_database WHERE datname = :name")
                return bool(connection.scalar(query, {"name": name}))
        finally:
            engine.dispose()

    with bench_run.second_database(DATABASE_URL) as url:
        assert make_url(url).database == name
        assert exists()
    assert not exists()
