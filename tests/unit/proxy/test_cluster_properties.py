"""Invariants of the cluster under random sequences of outcomes, discovery changes and time (hypothesis)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import Outlier

HOSTS = [Host(f"10.0.0.{i}", 80) for i in range(1, 7)]

fail = st.tuples(st.just("fail"), st.integers(0, 3))
# Failures dominate so that runs long enough to eject several hosts are common.
step = st.one_of(
    fail,
    fail,
    fail,
    st.tuples(st.just("time"), st.floats(0, 8)),
    st.tuples(st.just("hosts"), st.lists(st.integers(0, 5), min_size=0, max_size=6)),
    st.tuples(st.just("pick"), st.lists(st.integers(0, 5), max_size=3)),
)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=80), st.integers(0, 100))
@example([("fail", i) for i in (0, 0, 1, 1, 2, 2)], 100)
def test_invariants(steps: list[tuple[str, object]], percent: int) -> None:
    clock = Clock()
    cfg = Outlier(failures=2, base_ejection_seconds=1, max_ejection_seconds=5, max_ejection_percent=percent)
    cluster = Cluster("b", cfg, HOSTS[:3], clock=clock)
    gauge = [0]
    cluster.on_eject = lambda h, s: gauge.__setitem__(0, gauge[0] + 1)
    cluster.on_return = lambda h, s: gauge.__setitem__(0, gauge[0] - 1)
    discovery_changed = False
    for kind, arg in steps:
        if kind == "fail":
            cluster.report_failure(HOSTS[arg])  # type: ignore[index]
        elif kind == "time":
            clock.now += arg  # type: ignore[operator]
        elif kind == "hosts":
            discovery_changed = True
            cluster.set_hosts(HOSTS[i] for i in arg)  # type: ignore[attr-defined]
        else:
            exclude = frozenset(HOSTS[i] for i in arg)  # type: ignore[attr-defined]
            picked = cluster.pick(exclude)
            candidates = set(cluster.hosts) - exclude
            # Something is picked whenever a candidate exists, and never an excluded host.
            assert (picked is None) == (not candidates)
            assert picked is None or picked in candidates
        ejected = cluster.ejected_hosts()
        hosts = cluster.hosts
        # Ejections only among current hosts; the metrics hooks agree with the state.
        assert set(ejected) <= set(hosts)
        assert gauge[0] == len(ejected)
        # Until discovery changes the set: never the last host in rotation, never beyond the share
        # (at least one allowed).
        if not discovery_changed:
            assert len(ejected) < len(hosts) or not ejected
            assert len(ejected) <= max(1, len(hosts) * percent // 100)
