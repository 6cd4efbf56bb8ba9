"""The operator killed (SIGKILL) mid-way through 50 services converges when restarted: every service is
registered exactly once and has exactly one ConnectDeployment (adopted by its deterministic name)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sc_operator.kube import CONNECT_DEPLOYMENTS, CONNECT_NAMESPACES, CONNECT_SERVICES, DEPLOYMENTS, Kube
from support.operator import OperatorProcess, accepted, service_body, wait_for

COUNT = 50


def test_sigkill_mid_way_converges_without_duplicates(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    names = [f"svc-{i:02d}" for i in range(COUNT)]

    def create(name: str) -> None:
        kube.create(CONNECT_SERVICES, service_body(name, namespace, connect_namespace), namespace)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))

    def progress() -> int:
        return len(kube.list(CONNECT_DEPLOYMENTS, namespace))

    # Kill once the operator is visibly part-way through (some rollouts exist, not all).
    wait_for("some rollouts", lambda: progress() >= 5, timeout=60, step=0.05)
    operator.kill()
    done_at_kill = progress()
    assert done_at_kill < COUNT, "the operator finished before it could be killed; the test proves nothing"
    time.sleep(1)
    operator.start()

    def all_accepted() -> bool:
        return all((c := accepted(kube, namespace, n)) is not None and c["status"] == "True" for n in names)

    wait_for("all 50 accepted after the restart", all_accepted, timeout=120, step=1)
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    owners = Counter(e["service"]["name"] for e in registry["endpoints"])
    assert sorted(owners) == names
    assert set(owners.values()) == {1}
    assert registry["serviceCount"] == COUNT
    # One revision per registration: re-running a handler after the crash registered nothing twice.
    assert registry["revision"] == COUNT
    per_service = Counter(c["spec"]["service"] for c in kube.list(CONNECT_DEPLOYMENTS, namespace))
    assert per_service == dict.fromkeys(names, 1)
    assert sorted(d["metadata"]["name"] for d in kube.list(DEPLOYMENTS, namespace)) == names
    assert operator.starts == 2
    assert done_at_kill > 0
