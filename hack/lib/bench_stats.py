"""Pure arithmetic of the proxy benchmarks (hack/bench-proxy, hack/bench-proxy-h2): latency percentiles
from h2load's per-request log, the coordinated-omission correction of a fixed-rate run, latency added over
a baseline, and the targets with pass/miss. No I/O here; tests/unit/test_bench_stats.py covers it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The percentiles a fixed-rate run reports, as (label, quantile).
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of all values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """``PERCENTILES`` of ``values``, keyed by label (``p50`` ... ``p99.9``)."""
    ordered = sorted(values)
    return {label: percentile(ordered, q) for label, q in PERCENTILES}


def with_omitted(latencies: Iterable[float], interval: float) -> list[float]:
    """Latencies with the samples a stalled connection kept from being sent (coordinated omission).

    A paced client sends on each connection every ``interval``; a response slower than that holds back the
    requests due meanwhile, whose waiting the client does not see. As HdrHistogram's
    ``recordValueWithExpectedInterval`` does, a latency L adds L - interval, L - 2 * interval, ... down to
    ``interval``: what the held-back requests would have waited. Latencies below ``interval`` add nothing.
    (h2load still sends the held-back requests once the connection is free and logs only their own
    service time, so the added samples come on top of those; a healthy run adds none.)
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    out: list[float] = []
    for value in latencies:
        out.append(value)
        missing = value - interval
        while missing >= interval:
            out.append(missing)
            missing -= interval
    return out


@dataclass(frozen=True)
class H2loadLog:
    """h2load ``--log-file``: one row per request (start in us since the epoch, status, duration in us)."""

    latencies_ms: list[float]  # of the successful requests
    failed: int  # status -1 (the stream failed) or not 2xx/3xx


def parse_h2load_log(text: str) -> H2loadLog:
    latencies: list[float] = []
    failed = 0
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        status, elapsed_us = int(fields[1]), int(fields[2])
        if 200 <= status < 400:
            latencies.append(elapsed_us / 1000)
        else:
            failed += 1
    return H2loadLog(latencies, failed)


_H2LOAD_RPS = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_H2LOAD_DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed")
_H2LOAD_2XX = re.compile(r"status codes: (\d+) 2xx")


def parse_h2load_summary(out: str) -> dict[str, float]:
    """requests/s, done, succeeded, failed and 2xx from h2load's standard output."""
    rps, done, codes = _H2LOAD_RPS.search(out), _H2LOAD_DONE.search(out), _H2LOAD_2XX.search(out)
    if not (rps and done and codes):
        raise ValueError(f"cannot read h2load output:\n{out}")
    return {
        "rps": float(rps.group(3)),
        "done": float(done.group(1)),
        "succeeded": float(done.group(2)),
        "failed": float(done.group(3)),
        "2xx": float(codes.group(1)),
    }


def added(measured: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """What a path adds over the baseline, key by key (the keys both have)."""
    return {key: measured[key] - baseline[key] for key in measured if key in baseline}


def cpu_us_per_request(
    before: Mapping[str, float], after: Mapping[str, float], requests: float
) -> dict[str, float]:
    """Microseconds of CPU per completed request, per process label, from CPU seconds before and after."""
    if requests <= 0:
        return {label: math.nan for label in before}
    return {label: (after[label] - before[label]) / requests * 1e6 for label in before}


HOPS = ("client", "server")


def per_hop(run: Mapping[str, float]) -> float:
    """Mean CPU per request (us) over the hops a run measured (``cpu_us_client``, ``cpu_us_server``)."""
    hops = [run[f"cpu_us_{hop}"] for hop in HOPS if f"cpu_us_{hop}" in run]
    return sum(hops) / len(hops) if hops else math.nan


def cpu_columns(run: Mapping[str, float], width: int = 8) -> str:
    """The client and server CPU-per-request columns of a table row, ``-`` for a hop the path lacks."""
    return "".join(
        f"{run[f'cpu_us_{hop}']:>{width}.0f}" if f"cpu_us_{hop}" in run else f"{'-':>{width}}" for hop in HOPS
    )


@dataclass(frozen=True)
class Target:
    """One line of an issue's targets: ``value`` must be ``at_least`` or at most ``limit``."""

    name: str
    value: float
    limit: float
    at_least: bool  # True: value >= limit; False: value <= limit
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "n/a " if math.isnan(self.value) else "pass" if self.met else "MISS"
        value, limit = _fmt(self.value, self.unit), _fmt(self.limit, self.unit)
        return f"  [{verdict}] {self.name}: {value} (target {sign} {limit})"


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.1f} {unit}"


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive (nothing to compare with)."""
    return numerator / denominator if denominator > 0 else math.nan
