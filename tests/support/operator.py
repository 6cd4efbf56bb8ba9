"""Operator integration tests: the operator as a real process against the envtest API server and
kube-controller-manager.

The kubelet is the only simulated part: there are no nodes, so the tests play the kubelet by writing
pod status through the pods' ``status`` subresource (Ready, restarts, Failed) — see :class:`Kubelet`.
Everything else (Deployments → ReplicaSets → Pods, garbage collection by owner references) is the real
kube-controller-manager.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sc_operator import API_VERSION
from sc_operator.kube import CONNECT_SERVICES, PODS, ApiError, Kube
from support.envtest import KubeAPI
from support.procs import Proc

T = TypeVar("T")
OPERATOR = Path(sys.executable).parent / "sc-operator"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 45.0, step: float = 0.3) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (ApiError, KeyError, IndexError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


class OperatorProcess:
    """``sc-operator --standalone --all-namespaces`` as a child process, killable at will."""

    def __init__(self, api: KubeAPI, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.api = api
        self.log_dir = log_dir
        self.env = {
            **api.env(),
            "SERVICECONNECT_RESYNC_SECONDS": "3",
            "SERVICECONNECT_PROGRESS_DEADLINE_SECONDS": "600",
            # Whole-path tests stop many server tasks, each would stay up 12 s; what the linger is for is
            # shown on the real node (tests/e2e) and in tests/integration/proxy/test_lifecycle.py.
            "SC_PROXY_LINGER_SECONDS": "0",
            **(env or {}),
        }
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = Proc(
            "sc-operator",
            [str(OPERATOR), "--standalone", "--all-namespaces"],
            self.log_dir / f"operator-{self.starts}.log",
            env=self.env,
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown — a crash."""
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid


class Kubelet:
    """Plays the kubelet for pods of a namespace by writing their status subresource (simulated: the
    envtest cluster has no nodes)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def pods(self, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.kube.list(PODS, self.namespace, labels)
            if not p["metadata"].get("deletionTimestamp")
        ]

    def _status(self, pod: dict[str, Any], ready: bool, restarts: int, phase: str) -> dict[str, Any]:
        containers = [c["name"] for c in pod["spec"]["containers"]]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        state: dict[str, Any] = {"running": {"startedAt": now}}
        if restarts:
            state = {"waiting": {"reason": "CrashLoopBackOff"}}
        return {
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
                {
                    "type": "ContainersReady",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": now,
                },
            ],
            "podIP": "10.244.0.10",
            "containerStatuses": [
                {
                    "name": name,
                    "ready": ready,
                    "restartCount": restarts if i == len(containers) - 1 else 0,
                    "image": "sim",
                    "imageID": "",
                    "state": state if i == len(containers) - 1 else {"running": {"startedAt": now}},
                }
                for i, name in enumerate(containers)
            ],
        }

    def set(
        self, pod: dict[str, Any], *, ready: bool = True, restarts: int = 0, phase: str = "Running"
    ) -> None:
        self.kube.patch(
            PODS,
            pod["metadata"]["name"],
            {"status": self._status(pod, ready, restarts, phase)},
            self.namespace,
            sub="status",
        )

    def ready_all(self, labels: dict[str, str]) -> int:
        """Mark every pod with ``labels`` Ready; returns how many."""
        pods = self.pods(labels)
        for pod in pods:
            if not _is_ready(pod):
                self.set(pod)
        return len(pods)


def running_operator(kube_api: KubeAPI, workdir: Path, **env: str) -> Iterator[OperatorProcess]:
    """An operator with extra settings ``env``, stopped when the generator closes (for fixtures)."""
    op = OperatorProcess(kube_api, workdir, env=env)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


# -- spec builders ----------------------------------------------------------------------------------------

BASE_TASK: dict[str, Any] = {
    "family": "app",
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {
            "name": "app",
            "image": "registry.example/app:1",
            "essential": True,
            "portMappings": [
                {"name": "http", "containerPort": 8080, "protocol": "tcp", "appProtocol": "http"}
            ],
        }
    ],
}


def service_body(
    name: str,
    namespace: str,
    connect_ns: str | None,
    *,
    discovery: str | None = None,
    dns: str | None = None,
    port: int = 80,
    desired: int = 1,
    serve: bool = True,
    breaker: tuple[bool, bool] | None = None,
    image: str = "registry.example/app:1",
) -> dict[str, Any]:
    """A ConnectService: serves ``http`` (containerPort 8080) as ``discovery`` on ``dns:port`` unless
    ``serve`` is False (client only)."""
    task = copy.deepcopy(BASE_TASK)
    task["family"] = name
    task["containerDefinitions"][0]["image"] = image
    scc: dict[str, Any] = {"enabled": True}
    if connect_ns is not None:
        scc["namespace"] = connect_ns
    if serve:
        scc["services"] = [
            {
                "portName": "http",
                "discoveryName": discovery or name,
                "clientAliases": [{"port": port, "dnsName": dns or discovery or name}],
            }
        ]
    spec: dict[str, Any] = {
        "desiredCount": desired,
        "taskDefinition": task,
        "serviceConnectConfiguration": scc,
        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 0},
    }
    if breaker is not None:
        spec["deploymentConfiguration"]["deploymentCircuitBreaker"] = {
            "enable": breaker[0],
            "rollback": breaker[1],
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "ConnectService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def accepted(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Accepted condition once the operator has judged the current generation."""
    svc = kube.get(CONNECT_SERVICES, name, namespace)
    status = svc.get("status") or {}
    if status.get("observedGeneration") != svc["metadata"]["generation"]:
        return None
    return next((c for c in status.get("conditions") or [] if c["type"] == "Accepted"), None)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}
