"""Pure policy: outlier detection, retry decisions and timeout defaults (reference §5).

Every protocol handler (HTTP/1.1, HTTP/2 and gRPC, TCP) and :class:`~sc_proxy.cluster.Cluster` decide with
these functions, so a rule is written, and unit-tested, once. Nothing here does I/O or reads a clock:
callers pass ``now`` (monotonic seconds), which keeps every rule unit-testable with exact numbers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from sc_proxy.config import Outlier, Timeouts

#: Service Connect defaults: perRequestTimeout for HTTP kinds; idle timeout per protocol.
DEFAULT_PER_REQUEST_TIMEOUT = 15.0
DEFAULT_IDLE_TIMEOUT_HTTP = 300.0
DEFAULT_IDLE_TIMEOUT_TCP = 3600.0

#: gRPC's UNAVAILABLE: the gRPC form of a 503 (a trailers-only answer usually carries HTTP 200).
GRPC_UNAVAILABLE: Final = 14


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

    #: Times of its latest failures, oldest first (at most ``failures`` of them: only those can matter).
    failures: deque[float] = field(default_factory=deque)
    #: Monotonic time the current ejection ends; 0 when not ejected.
    ejected_until: float = 0.0
    #: Ejections so far; multiplies the ejection time. Reset after a healthy spell (see :func:`eject`).
    times_ejected: int = 0
    #: When the last ejection ended (0 = never ejected).
    last_ejection_end: float = 0.0


def record_failure(health: HostHealth, now: float, cfg: Outlier) -> bool:
    """Count one failure; True when the host has now reached the ejection threshold.

    The threshold is ``failures`` failures within the last ``intervalSeconds`` (the seed's "5 or more of the
    connections failed in the last 30 seconds"), whatever succeeded in between: a success does not reset
    the count, failures only age out of the window. Keeping the newest ``failures`` times is enough: the
    threshold is reached exactly when the oldest of them is inside the window.
    """
    failures = health.failures
    failures.append(now)
    if len(failures) > cfg.failures:
        failures.popleft()
    return len(failures) >= cfg.failures and now - failures[0] <= cfg.interval_seconds


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


def is_outlier_status(status: int, grpc_status: int | None = None) -> bool:
    """Whether an answer counts as a failure of the task: a 5xx (gateway errors included), or gRPC
    UNAVAILABLE (``grpc_status``: the status of a trailers-only gRPC answer, else ``None``)."""
    return status >= 500 or grpc_status == GRPC_UNAVAILABLE


#: HTTP/2 error codes (RFC 9113 §7) the reset rule below names.
H2_NO_ERROR: Final = 0x0
H2_REFUSED_STREAM: Final = 0x7


def is_outlier_reset(code: int, response_started: bool) -> bool:
    """Whether an HTTP/2 task resetting a stream counts as a failure of the task, like an HTTP/1.1 task
    closing its connection under a request: any reset before the response, but REFUSED_STREAM (the task
    did not process it: RFC 9113 §8.7, a retry, not a fault); any reset in the middle of the response but
    NO_ERROR (the response is complete and the task only wants no more of the request body, §8.1)."""
    if response_started:
        return code != H2_NO_ERROR
    return code != H2_REFUSED_STREAM


def may_retry_status(status: int, retry_on_503: bool, grpc_status: int | None = None) -> bool:
    """Answers that are retried (ECS: "retry twice on connection failure or 503"): a 503, or its gRPC form
    UNAVAILABLE, unless ``retryOn503`` is off."""
    return retry_on_503 and (status == 503 or grpc_status == GRPC_UNAVAILABLE)


def may_replay_body(buffered: int, max_replay_body_bytes: int) -> bool:
    """Whether a request body of which ``buffered`` bytes arrived so far can still be replayed on a retry:
    only a body kept in full, of at most ``maxReplayBodyBytes``."""
    return buffered <= max_replay_body_bytes


def may_retry(attempts_left: int, body_replayable: bool, response_started: bool) -> bool:
    """A failed attempt is retried while the budget lasts, the body can be sent again, and nothing of the
    response reached the client yet (after that, the client has seen the failure)."""
    return attempts_left > 0 and body_replayable and not response_started
