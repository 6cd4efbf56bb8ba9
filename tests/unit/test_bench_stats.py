"""hack/lib/bench_stats.py: the arithmetic behind the proxy benchmarks' latency and CPU figures.

The benchmarks run only by hand on a quiet machine; what is tested here is that the figures they print
are computed right: percentiles, the coordinated-omission correction, h2load's outputs, the targets.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "lib"))
import bench_stats


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert bench_stats.percentile(values, 0.50) == 50
    assert bench_stats.percentile(values, 0.99) == 99
    assert bench_stats.percentile(values, 0.999) == 100
    assert bench_stats.percentile(values, 1.0) == 100
    assert bench_stats.percentile(values, 0.0) == 1


def test_percentile_of_a_fixed_rate_run_of_ten_thousand() -> None:
    # p99.9 of 10 000 requests is the 9990th value: ten requests at or above it.
    values = [float(v) for v in range(1, 10_001)]
    assert bench_stats.percentile(values, 0.999) == 9990
    assert bench_stats.percentile(values, 0.9) == 9000


def test_percentile_sorts_and_handles_empty_and_single() -> None:
    assert bench_stats.percentile([3.0, 1.0, 2.0], 0.5) == 2
    assert bench_stats.percentile([7.0], 0.999) == 7
    assert math.isnan(bench_stats.percentile([], 0.5))


def test_percentiles_labels() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert bench_stats.percentiles(values) == {"p50": 500, "p90": 900, "p99": 990, "p99.9": 999}


def test_with_omitted_adds_what_held_back_requests_waited() -> None:
    # Interval 10 ms: a 35 ms response held back the requests due at +10, +20, +30 ms.
    assert bench_stats.with_omitted([1.0, 35.0, 2.0], 10.0) == [1.0, 35.0, 25.0, 15.0, 2.0]


def test_with_omitted_leaves_fast_runs_alone() -> None:
    fast = [0.2, 0.3, 9.99, 10.0]
    assert bench_stats.with_omitted(fast, 10.0) == fast


def test_with_omitted_moves_the_tail() -> None:
    # 999 fast requests and one stall of 1 s at 10 ms per connection: uncorrected, p99 is fast;
    # corrected, the ~99 held-back requests make it slow.
    latencies = [1.0] * 999 + [1000.0]
    assert bench_stats.percentile(latencies, 0.99) == 1.0
    assert bench_stats.percentile(bench_stats.with_omitted(latencies, 10.0), 0.99) > 500


def test_with_omitted_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        bench_stats.with_omitted([1.0], 0.0)


def test_parse_h2load_log_counts_failures_apart() -> None:
    text = "1700000000000000\t200\t250\n1700000000001000\t-1\t3000\n1700000000002000\t503\t900\n\n"
    log = bench_stats.parse_h2load_log(text)
    assert log.latencies_ms == [0.25]
    assert log.failed == 2


H2LOAD_OUT = """
finished in 3.00s, 1000.33 req/s, 250.08KB/s
requests: 3000 total, 3000 started, 3000 done, 2998 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 2998 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_parse_h2load_summary() -> None:
    assert bench_stats.parse_h2load_summary(H2LOAD_OUT) == {
        "rps": 1000.33,
        "done": 3000,
        "succeeded": 2998,
        "failed": 2,
        "2xx": 2998,
    }


def test_parse_h2load_summary_names_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read h2load output"):
        bench_stats.parse_h2load_summary("connect: Connection refused")


def test_added_latency_over_the_baseline() -> None:
    direct = {"p50": 0.10, "p99": 0.30}
    proxied = {"p50": 0.85, "p99": 1.30, "extra": 5.0}
    assert bench_stats.added(proxied, direct) == pytest.approx({"p50": 0.75, "p99": 1.0})


def test_cpu_per_request_per_process() -> None:
    before = {"client": 10.0, "server": 20.0}
    after = {"client": 10.5, "server": 20.25}
    assert bench_stats.cpu_us_per_request(before, after, 10_000) == pytest.approx(
        {"client": 50.0, "server": 25.0}
    )
    assert all(math.isnan(v) for v in bench_stats.cpu_us_per_request(before, after, 0).values())


def test_targets_pass_miss_and_not_measured() -> None:
    at_least = bench_stats.Target("req/s vs HAProxy", 0.43, 0.7, at_least=True)
    at_most = bench_stats.Target("RSS", 41.0, 48.0, at_least=False, unit="MiB")
    unknown = bench_stats.Target("p99 vs HAProxy", bench_stats.ratio(1.0, 0.0), 1.5, at_least=False)
    assert (at_least.met, at_most.met, unknown.met) == (False, True, False)
    assert at_least.line() == "  [MISS] req/s vs HAProxy: 0.43x (target >= 0.70x)"
    assert at_most.line() == "  [pass] RSS: 41.0 MiB (target <= 48.0 MiB)"
    assert unknown.line().startswith("  [n/a ] p99 vs HAProxy: nanx")
