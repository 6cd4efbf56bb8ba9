"""Outlier detection and retry rules with exact numbers (reference §5)."""

from __future__ import annotations

from sc_proxy import policy
from sc_proxy.config import Outlier, Retries

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


def test_a_success_breaks_the_run() -> None:
    h = policy.HostHealth()
    for t in range(4):
        policy.record_failure(h, t, CFG)
    policy.record_success(h)
    assert not policy.record_failure(h, 5, CFG)


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


def test_retry_and_outlier_statuses() -> None:
    assert policy.may_retry_status(503, Retries())
    assert not policy.may_retry_status(503, Retries(retry_on_503=False))
    assert not policy.may_retry_status(500, Retries())
    assert policy.is_outlier_status(502)
    assert policy.is_outlier_status(500)
    assert not policy.is_outlier_status(404)


def test_replayable_bodies() -> None:
    r = Retries()
    assert policy.may_replay_body(0, 0, r)
    assert policy.may_replay_body(65536, 0, r)
    assert not policy.may_replay_body(65537, 0, r)
    assert policy.may_replay_body(None, 1000, r)
    assert not policy.may_replay_body(None, 70000, r)
