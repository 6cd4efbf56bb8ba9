"""Pure policy: outlier detection, retry decisions and timeout defaults (reference §5).

Nothing here does I/O or reads a clock: callers pass ``now`` (monotonic seconds), which keeps every rule
unit-testable with exact numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sc_proxy.config import Outlier, Retries, Timeouts

#: Service Connect defaults: perRequestTimeout for HTTP kinds; idle timeout per protocol.
DEFAULT_PER_REQUEST_TIMEOUT = 15.0
DEFAULT_IDLE_TIMEOUT_HTTP = 300.0
DEFAULT_IDLE_TIMEOUT_TCP = 3600.0


def effective_timeouts(app_protocol: str, timeouts: Timeouts) -> tuple[float | None, float | None]:
    """(perRequest, idle) seconds with the ECS defaults applied; ``None`` means disabled (ECS's 0)."""
    http = app_protocol != "tcp"
    per = timeouts.per_request_timeout_seconds
    if per is None:
        per = DEFAULT_PER_REQUEST_TIMEOUT if http else 0.0
    idle = timeouts.idle_timeout_seconds
    if idle is None:
        idle = DEFAULT_IDLE_TIMEOUT_HTTP if http else DEFAULT_IDLE_TIMEOUT_TCP
    return (per or None, idle or None)


@dataclass(slots=True)
class HostHealth:
    """Outlier state of one task."""

    #: Times of the current run of failures with no success in between (at most ``consecutiveFailures``).
    failures: deque[float] = field(default_factory=deque)
    #: Monotonic time the current ejection ends; 0 when not ejected.
    ejected_until: float = 0.0
    #: Ejections so far; multiplies the ejection time. Reset after a healthy spell (see :func:`eject`).
    times_ejected: int = 0
    #: When the last ejection ended (0 = never ejected).
    last_ejection_end: float = 0.0


def record_failure(health: HostHealth, now: float, cfg: Outlier) -> bool:
    """Count one failure; True when the host has now reached the ejection threshold.

    The threshold is ``consecutiveFailures`` failures with no success between them, the first of which is at
    most ``intervalSeconds`` old ("5 failures within 30 s").
    """
    failures = health.failures
    failures.append(now)
    limit = cfg.consecutive_failures
    while len(failures) > limit:
        failures.popleft()
    while failures and now - failures[0] > cfg.interval_seconds:
        failures.popleft()
    return len(failures) >= limit


def record_success(health: HostHealth) -> None:
    """A success breaks the run of failures."""
    if health.failures:
        health.failures.clear()


def ejection_seconds(times_ejected: int, cfg: Outlier) -> float:
    """base * times ejected, capped at max (30, 60, 90 … 300 s with the defaults)."""
    return float(min(cfg.base_ejection_seconds * times_ejected, cfg.max_ejection_seconds))


def may_eject(hosts: int, ejected: int, cfg: Outlier) -> bool:
    """Whether one more host may be ejected when ``ejected`` of ``hosts`` already are.

    At least one may always be ejected when there are two or more hosts (Envoy's rule too), the last
    non-ejected host never is, and otherwise at most ``maxEjectionPercent`` of the hosts.
    """
    if hosts < 2 or ejected + 1 >= hosts:
        return False
    allowed = max(1, hosts * cfg.max_ejection_percent // 100)
    return ejected < allowed


def eject(health: HostHealth, now: float, cfg: Outlier) -> float:
    """Eject the host; returns the ejection duration in seconds.

    The multiplier resets when the host stayed in rotation for ``maxEjectionSeconds`` since its last
    ejection ended, so an old incident does not lengthen a new one forever.
    """
    if health.last_ejection_end and now - health.last_ejection_end >= cfg.max_ejection_seconds:
        health.times_ejected = 0
    health.times_ejected += 1
    duration = ejection_seconds(health.times_ejected, cfg)
    health.ejected_until = now + duration
    health.failures.clear()
    return duration


def end_ejection(health: HostHealth) -> None:
    """Return the host to rotation (its ejection time passed)."""
    health.last_ejection_end = health.ejected_until
    health.ejected_until = 0.0


def is_outlier_status(status: int) -> bool:
    """HTTP statuses that count as a failure of the task for outlier detection (5xx and gateway errors)."""
    return status >= 500


def may_retry_status(status: int, cfg: Retries) -> bool:
    """Statuses that are retried (ECS: "retry twice on connection failure or 503")."""
    return status == 503 and cfg.retry_on_503


def may_replay_body(body_length: int | None, buffered: int, cfg: Retries) -> bool:
    """A request is retried only when its body can be replayed: none, or fully buffered within the limit.

    ``body_length`` is the declared length (``None`` for chunked/unknown); ``buffered`` what was kept so far.
    """
    if body_length == 0:
        return True
    if body_length is None:
        return buffered <= cfg.max_replay_body_bytes
    return body_length <= cfg.max_replay_body_bytes
