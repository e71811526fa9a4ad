"""Parse the text ``wrk --latency`` prints (the pure part of the benchmark harness)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)(us|ms|s|m|h)$")


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    requests_per_second: float
    #: Latency percentiles in seconds, keyed by percentile (50, 75, 90, 99).
    latency: dict[int, float]
    non_2xx: int = 0
    socket_errors: int = 0

    @property
    def p50(self) -> float:
        """Median latency, seconds."""
        return self.latency[50]

    @property
    def p99(self) -> float:
        """99th-percentile latency, seconds."""
        return self.latency[99]

    @property
    def ok_per_second(self) -> float:
        """Requests per second that got a 2xx or 3xx answer."""
        good = max(self.requests - self.non_2xx, 0)
        return good / self.seconds if self.seconds else 0.0


def parse_duration(text: str) -> float:
    """``"1.25ms"`` -> 0.00125 (wrk's latency and duration notation)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_SECONDS[match.group(2)]


def parse(output: str) -> WrkResult:
    """Read a ``wrk --latency`` report; raises ValueError when it has no summary."""
    summary = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    if summary is None or rate is None:
        raise ValueError("wrk output has no summary (did it run?)")
    latency = {
        int(p): parse_duration(value)
        for p, value in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(summary.group(1)),
        seconds=parse_duration(summary.group(2)),
        requests_per_second=float(rate.group(1)),
        latency=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )
