"""Scaling on real sockets: a new server task joins the balancing; a dying one costs the client nothing.

One server service ``web`` (an HTTP app naming its pod in every answer) and a client, deployed once for
the module. Scaling ``desiredCount`` creates no new ConnectDeployment: the Deployment scales, the new pod
(run by the harness) turns Ready, DNS answers its address, and the running client proxy balances new
requests over both tasks without being redeployed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sc_operator.kube import Kube
from support.operator import OperatorProcess
from support.tasks import (
    Harness,
    Network,
    Task,
    apply_accepted,
    connect_service,
    running,
    scale,
    scratch_namespaces,
)

pytestmark = pytest.mark.netns


@dataclass
class Deployed:
    kube: Kube
    harness: Harness
    namespace: str
    client: Task


@pytest.fixture(scope="module")
def deployed(
    kube: Kube, wp_network: Network, wp_operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    workdir = tmp_path_factory.mktemp("scaling")
    with (
        scratch_namespaces(kube) as (namespace, cns),
        running(kube, wp_network, namespace, workdir) as harness,
    ):
        apply_accepted(kube, connect_service("web", namespace, cns))
        harness.run_pods("web")
        harness.wait_dns("web", 1)
        apply_accepted(kube, connect_service("client", namespace, cns, serve=False))
        [client] = harness.run_pods("client")
        yield Deployed(kube, harness, namespace, client)


def served_by(client: Task) -> str:
    """One request on a new connection (a fresh curl); the pod that answered."""
    result = client.curl("http://web:80/")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["name"])


def two_tasks(d: Deployed) -> list[Task]:
    """Scale ``web`` to 2 and wait until the client's proxy has sent a request to each task."""
    scale(d.kube, d.namespace, "web", 2)
    tasks = d.harness.run_pods("web", count=2)
    assert sorted(d.harness.wait_dns("web", 2)) == sorted(t.address for t in tasks)
    # The client proxy re-resolves on its own schedule (a few seconds): bounded wait until it uses both.
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while seen != {t.pod for t in tasks}:
        assert time.monotonic() < deadline, f"the client proxy only ever used {seen}"
        seen.add(served_by(d.client))
    return tasks


def test_scale_out_balances_new_connections_over_both_tasks(deployed: Deployed) -> None:
    [first] = deployed.harness.run_pods("web")
    assert {served_by(deployed.client) for _ in range(3)} == {first.pod}

    tasks = two_tasks(deployed)  # the new task received a request: new connections reach it
    pods = {t.pod for t in tasks}
    counts = Counter(served_by(deployed.client) for _ in range(12))
    assert set(counts) == pods
    assert min(counts.values()) >= 4, counts  # round robin: 6 and 6 (some slack for a re-resolution)


# Idempotent GETs, each on a new connection, until a time or count limit; one JSON line per request.
LOAD = """
import http.client, json, sys, time
end = time.monotonic() + float(sys.argv[1])
for i in range(int(sys.argv[2])):
    if time.monotonic() > end:
        break
    conn = http.client.HTTPConnection("web", 80, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        who = json.loads(body)["name"] if resp.status == 200 else body.decode(errors="replace")
        print(json.dumps({"t": time.monotonic(), "status": resp.status, "who": who}), flush=True)
    except Exception as exc:
        print(json.dumps({"t": time.monotonic(), "status": 0, "who": repr(exc)}), flush=True)
    finally:
        conn.close()
    time.sleep(0.02)
"""


def test_a_dying_task_fails_no_idempotent_request(deployed: Deployed, tmp_path: Path) -> None:
    victim, survivor = two_tasks(deployed)
    script = tmp_path / "load.py"
    script.write_text(LOAD)
    out = tmp_path / "load.out"
    with out.open("wb") as sink:
        load = subprocess.Popen(
            deployed.client.argv(sys.executable, str(script), "8", "400"),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(2.5)
        killed_at = time.monotonic()
        # The task dies (SIGKILL: no drain) and, for a while, DNS still lists it: the kubelet has not noticed.
        deployed.harness.kill(victim, report=False)
        time.sleep(2.0)
        deployed.harness.set_ready(victim, False)
        assert load.wait(60) == 0, out.read_text()
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(10)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [r for r in results if r["status"] != 200]
    assert not failed, failed
    after = [r["who"] for r in results if r["t"] > killed_at + 0.5]  # answers in flight at the kill aside
    assert len(after) >= 20, f"too few requests after the kill to show anything: {len(after)}"
    assert set(after) == {survivor.pod}
    before = {r["who"] for r in results if r["t"] < killed_at}
    assert before == {victim.pod, survivor.pod}  # both served before the kill: the victim was in rotation
    assert deployed.harness.wait_dns("web", 1) == [survivor.address]
    # The dead task was tried and the failure hidden: a connection failure, a retry on the other task.
    m = deployed.client.metrics()
    label = '{TargetDiscoveryName="web"}'
    assert m["TargetConnectFailureCount" + label] >= 1
    assert m["TargetRetryCount" + label] >= 1
    assert m.get("HTTPCode_Target_5XX_Count" + label, 0) == 0
