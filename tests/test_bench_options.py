"""The benchmark harness's command line: ``--only`` picks scenarios (bench/ is not a package)."""

from __future__ import annotations

import argparse
import sys

import pytest

from tests.support import bench_module

bench_run = bench_module("run")


def test_only_takes_comma_separated_scenarios() -> None:
    assert bench_run.scenarios("1") == {1}
    assert bench_run.scenarios("4,1,4") == {1, 4}
    assert (
        bench_run.scenarios(",".join(map(str, sorted(bench_run.SCENARIOS)))) == bench_run.SCENARIOS
    )


@pytest.mark.parametrize("text", ["", "5", "7", "1,x", "1;2", "0"])
def test_only_refuses_what_is_not_a_scenario(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
        bench_run.scenarios(text)


def test_every_scenario_runs_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["run.py"])
    assert bench_run.options().only == bench_run.SCENARIOS
