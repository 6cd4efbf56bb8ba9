"""Outlier detection and retry rules with exact numbers (reference §5)."""

from __future__ import annotations

from sc_proxy import policy
from sc_proxy.config import Outlier

CFG = Outlier()


def test_five_failures_within_thirty_seconds_reach_the_threshold() -> None:
    h = policy.HostHealth()
    assert [policy.record_failure(h, t, CFG) for t in (0, 1, 2, 3)] == [False] * 4
    assert policy.record_failure(h, 29.0, CFG)


def test_failures_spread_over_more_than_the_interval_do_not() -> None:
    h = policy.HostHealth()
    for t in (0, 10, 20, 30):
        assert not policy.record_failure(h, t, CFG)
    assert not policy.record_failure(h, 31, CFG)  # the first (t=0) is now older than 30 s
    assert policy.record_failure(h, 35, CFG)  # 10, 20, 30, 31, 35


def test_a_task_failing_every_other_request_reaches_the_threshold() -> None:
    # Successes in between change nothing (there is no success to record): the 5th failure in 30 s ejects.
    h = policy.HostHealth()
    outcomes = [policy.record_failure(h, t, CFG) for t in (0.0, 2.0, 4.0, 6.0, 8.0)]
    assert outcomes == [False, False, False, False, True]


def test_only_the_newest_failures_are_kept() -> None:
    h = policy.HostHealth()
    for t in range(100):
        policy.record_failure(h, t * 60.0, CFG)  # one a minute: never 5 in 30 s
    assert len(h.failures) == CFG.failures
    assert not policy.record_failure(h, 100 * 60.0, CFG)


def test_the_threshold_and_window_are_configurable() -> None:
    cfg = Outlier(failures=2, interval_seconds=1)
    h = policy.HostHealth()
    assert not policy.record_failure(h, 0.0, cfg)
    assert not policy.record_failure(h, 1.5, cfg)
    assert policy.record_failure(h, 2.5, cfg)  # 1.5 and 2.5: two within 1 s (the window is inclusive)


def test_ejection_time_grows_with_each_ejection_up_to_the_maximum() -> None:
    h = policy.HostHealth()
    durations = []
    now = 0.0
    for _ in range(12):
        d = policy.eject(h, now, CFG)
        durations.append(d)
        now += d
        policy.end_ejection(h)
        now += 1  # back in rotation for one second, then failing again
    assert durations[:4] == [30, 60, 90, 120]
    assert durations[9:] == [300, 300, 300]


def test_multiplier_resets_after_a_long_healthy_spell() -> None:
    h = policy.HostHealth()
    policy.eject(h, 0, CFG)
    policy.end_ejection(h)  # ended at 30
    assert policy.eject(h, 30 + 299, CFG) == 60
    policy.end_ejection(h)  # ended at 389
    assert policy.eject(h, 389 + 300, CFG) == 30


def test_max_ejection_share() -> None:
    half = Outlier(max_ejection_percent=50)
    assert not policy.may_eject(1, 0, half)  # a lone task is never ejected
    assert policy.may_eject(2, 0, half)
    assert not policy.may_eject(2, 1, half)  # never the last one in rotation
    assert policy.may_eject(10, 4, half)
    assert not policy.may_eject(10, 5, half)
    ten = Outlier(max_ejection_percent=10)
    assert policy.may_eject(3, 0, ten)  # at least one, like Envoy
    assert not policy.may_eject(3, 1, ten)


def test_outlier_statuses() -> None:
    assert policy.is_outlier_status(502)
    assert policy.is_outlier_status(500)
    assert not policy.is_outlier_status(404)
    assert not policy.is_outlier_status(200)
    # gRPC's trailers-only UNAVAILABLE (HTTP 200) is a failure of the task; other gRPC errors are answers.
    assert policy.is_outlier_status(200, policy.GRPC_UNAVAILABLE)
    assert not policy.is_outlier_status(200, 5)


def test_retried_statuses() -> None:
    assert policy.may_retry_status(503, retry_on_503=True)
    assert not policy.may_retry_status(503, retry_on_503=False)
    assert not policy.may_retry_status(500, retry_on_503=True)
    assert not policy.may_retry_status(502, retry_on_503=True)
    assert policy.may_retry_status(200, True, policy.GRPC_UNAVAILABLE)
    assert not policy.may_retry_status(200, False, policy.GRPC_UNAVAILABLE)
    assert not policy.may_retry_status(200, True, 13)  # INTERNAL: an answer, not "try elsewhere"


def test_replayable_bodies() -> None:
    assert policy.may_replay_body(0, 65536)
    assert policy.may_replay_body(65536, 65536)
    assert not policy.may_replay_body(65537, 65536)
    assert not policy.may_replay_body(1, 0)


def test_retry_budget_body_and_response() -> None:
    assert policy.may_retry(2, body_replayable=True, response_started=False)
    assert not policy.may_retry(0, body_replayable=True, response_started=False)
    assert not policy.may_retry(2, body_replayable=False, response_started=False)
    assert not policy.may_retry(2, body_replayable=True, response_started=True)


def test_which_http2_resets_are_failures_of_the_task() -> None:
    internal, cancel = 0x2, 0x8
    # Before the response: any reset but REFUSED_STREAM (the task did not process the request).
    assert policy.is_outlier_reset(internal, response_started=False)
    assert policy.is_outlier_reset(cancel, response_started=False)
    assert not policy.is_outlier_reset(policy.H2_REFUSED_STREAM, response_started=False)
    # During the response: any reset but NO_ERROR (the response is whole; only the request body is cut).
    assert policy.is_outlier_reset(internal, response_started=True)
    assert not policy.is_outlier_reset(policy.H2_NO_ERROR, response_started=True)
