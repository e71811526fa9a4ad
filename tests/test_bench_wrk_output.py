"""The benchmark harness's pure part: reading wrk's report (bench/ is not a package)."""

from __future__ import annotations

import pytest

from tests.support import bench_module

wrk_output = bench_module("wrk_output")

REPORT = """Running 10s test @ http://127.0.0.1:5000/api/resource
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.17ms    0.85ms  17.79ms   76.65%
    Req/Sec     3.72k   473.45     8.07k    97.03%
  Latency Distribution
     50%    2.05ms
     75%  512.00us
     90%    1.20s
     99%   17.79ms
  74123 requests in 10.10s, 25.79MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec:   7338.80
Transfer/sec:      2.55MB
"""


def test_parses_rate_percentiles_and_errors() -> None:
    result = wrk_output.parse(REPORT)
    assert result.requests == 74123
    assert result.seconds == pytest.approx(10.10)
    assert result.requests_per_second == pytest.approx(7338.80)
    assert result.latency == {
        50: pytest.approx(0.00205),
        75: pytest.approx(0.000512),
        90: pytest.approx(1.2),
        99: pytest.approx(0.01779),
    }
    assert result.p50 == pytest.approx(0.00205)
    assert result.non_2xx == 17
    assert result.socket_errors == 5
    assert result.ok_per_second == pytest.approx((74123 - 17) / 10.10)


def test_a_report_without_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="no summary"):
        wrk_output.parse("unable to connect to 127.0.0.1:5000 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "seconds"), [("250us", 0.00025), ("3.5ms", 0.0035), ("2s", 2.0), ("1m", 60.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert wrk_output.parse_duration(text) == pytest.approx(seconds)
