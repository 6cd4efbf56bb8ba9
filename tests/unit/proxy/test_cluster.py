"""Round robin, exclusion of failed hosts, ejection and the route-to-all fallback, on a fake clock."""

from __future__ import annotations

from collections import Counter

from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import Outlier

A, B, C = Host("10.0.0.1", 80), Host("10.0.0.2", 80), Host("10.0.0.3", 80)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(*hosts: Host, **outlier: float) -> tuple[Cluster, Clock]:
    clock = Clock()
    return Cluster("b", Outlier(**outlier), hosts, clock=clock), clock  # type: ignore[arg-type]


def test_round_robin_is_even() -> None:
    c, _ = make(A, B, C)
    assert Counter(c.pick() for _ in range(300)) == {A: 100, B: 100, C: 100}


def test_pick_skips_excluded_hosts() -> None:
    c, _ = make(A, B, C)
    for _ in range(10):
        assert c.pick(frozenset({A})) in (B, C)
    assert c.pick(frozenset({A, B, C})) is None
    assert make()[0].pick() is None


def test_five_failures_eject_and_the_host_returns_after_the_ejection_time() -> None:
    c, clock = make(A, B, C, base_ejection_seconds=30)
    events: list[tuple[Host, float]] = []
    c.on_eject = lambda h, s: events.append((h, s))
    for _ in range(5):
        c.report_failure(A)
    assert events == [(A, 30.0)]
    assert c.ejected_hosts() == [A]
    assert A not in {c.pick() for _ in range(30)}
    clock.now += 30
    assert c.ejected_hosts() == []
    assert A in {c.pick() for _ in range(3)}


def test_second_ejection_lasts_twice_as_long() -> None:
    c, clock = make(A, B, C, base_ejection_seconds=1, max_ejection_seconds=300)
    for _ in range(5):
        c.report_failure(A)
    clock.now += 1
    assert c.ejected_hosts() == []
    for _ in range(5):
        c.report_failure(A)
    clock.now += 1.5
    assert c.ejected_hosts() == [A]
    clock.now += 0.5
    assert c.ejected_hosts() == []


def test_never_ejects_the_last_host_in_rotation() -> None:
    c, _ = make(A, B, max_ejection_percent=100)
    for _ in range(5):
        c.report_failure(A)
        c.report_failure(B)
    assert c.ejected_hosts() == [A]
    assert {c.pick() for _ in range(4)} == {B}


def test_all_ejected_routes_to_all() -> None:
    c, _ = make(A, B, C, max_ejection_percent=100)
    for _ in range(5):
        c.report_failure(A)
        c.report_failure(B)
    assert sorted(c.ejected_hosts()) == [A, B]
    c.set_hosts([A, B])  # discovery shrank to ejected hosts only
    assert {c.pick() for _ in range(4)} == {A, B}


def test_set_hosts_keeps_state_of_remaining_hosts() -> None:
    c, _ = make(A, B, C)
    for _ in range(5):
        c.report_failure(A)
    c.set_hosts([A, C])
    assert c.ejected_hosts() == [A]
    assert {c.pick() for _ in range(4)} == {C}
    c.set_hosts([B])
    assert c.ejected_hosts() == []


def test_failures_count_in_the_window_whatever_succeeded_between() -> None:
    # A task failing every other request: with Envoy's consecutive_5xx it would never be ejected.
    c, clock = make(A, B)
    for _ in range(4):
        c.report_failure(A)
        clock.now += 1  # a success here reports nothing
    c.report_failure(A)
    assert c.ejected_hosts() == [A]


def test_failures_older_than_the_interval_age_out() -> None:
    c, clock = make(A, B, interval_seconds=30)
    for _ in range(4):
        c.report_failure(A)
    clock.now += 31
    c.report_failure(A)
    assert c.ejected_hosts() == []
    for _ in range(3):
        c.report_failure(A)
    assert c.ejected_hosts() == []  # 4 within the last 30 s
    c.report_failure(A)
    assert c.ejected_hosts() == [A]


def test_a_retry_avoids_the_hosts_tried_then_the_one_that_just_failed() -> None:
    c, _ = make(A, B, C)
    assert {c.pick_retry(frozenset({A}), A) for _ in range(6)} == {B, C}
    assert {c.pick_retry(frozenset({A, B, C}), B) for _ in range(6)} == {A, C}
    lone, _ = make(A)
    assert lone.pick_retry(frozenset({A}), A) == A  # one task: trying it again beats failing
    assert make()[0].pick_retry(frozenset({A}), A) is None


def test_ejected_host_leaving_discovery_is_reported_back() -> None:
    c, _ = make(A, B, C)
    back: list[Host] = []
    c.on_return = lambda h, _: back.append(h)
    for _ in range(5):
        c.report_failure(A)
    c.set_hosts([B, C])
    assert back == [A]
    assert c.ejected_hosts() == []
