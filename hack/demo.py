"""The network-namespace demo behind hack/demo.sh --netns: Service Connect end to end on one machine.

1. etcd, kube-apiserver (the current version, from hack/envtest.sh) and kube-controller-manager on free
   loopback ports (the code the integration tests use);
2. the CRDs (`scctl crds | kubectl apply -f -`) and the operator (`sc-operator`) as a real process;
3. examples/ applied with server-side apply, and a wait until the operator accepted every ConnectService;
4. the data path (unless --no-traffic, or not root, or a tool missing): every example task runs in
   its own network namespace, exactly as the operator rendered it, and the client task sends a few
   requests to http://nginx:80/ through its proxy and nginx's proxy; the responses and both proxies'
   metrics are printed.

Then it keeps running until Ctrl-C (or stops at once with --once). Everything it started is stopped and
removed on every way out: a failure, Ctrl-C, SIGTERM, SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import FrameType

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sc_operator.kube import Kube  # noqa: E402
from support.crds import wait_established  # noqa: E402
from support.envtest import EnvTest, KubeAPI, Unavailable, find_assets, find_tools  # noqa: E402
from support.kubectl import Kubectl  # noqa: E402
from support.operator import OperatorProcess, accepted, wait_for  # noqa: E402
from support.tasks import Harness, Network, Task, missing_prerequisites  # noqa: E402

EXAMPLES = ROOT / "examples"
NAMESPACE = "tutorial"
SERVER, CLIENT = "service-connect-nginx-service", "client"
URL = "http://nginx:80/"
REQUESTS = 3
#: Response headers worth showing: the status and what the proxies add or replace.
SHOWN_HEADERS = ("server", "x-envoy-upstream-service-time", "x-served-by", "content-type")


class DemoFailed(Exception):
    """A step of the demo did not do what it should; the message says which and why."""


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP unwind like Ctrl-C does, so every cleanup below runs.
    raise SystemExit(128 + signum)


def example_services(path: Path) -> list[tuple[str, str]]:
    """(namespace, name) of every ConnectService in one file of examples/."""
    return [
        (doc["metadata"].get("namespace", "default"), doc["metadata"]["name"])
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "ConnectService"
    ]


def describe_response(raw: str) -> list[str]:
    """The lines of a `curl -i` answer worth showing: status, the proxies' headers, the page's title."""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    shown = [lines[0]] if lines else ["(no response)"]
    for line in lines[1:]:
        name = line.split(":", 1)[0].strip().lower()
        if name in SHOWN_HEADERS:
            shown.append(f"  {line.strip()}")
    title = re.search(r"<h1>.*?</h1>", body)
    if title:
        shown.append(f"  body: ... {title.group(0)} ...")
    return shown


def metrics_summary(client: dict[str, float], server: dict[str, float], endpoint: str) -> list[str]:
    """What each proxy counted for `endpoint`: the client's egress by target, the server's ingress."""

    def value(metrics: dict[str, float], name: str, label: str) -> float:
        return metrics.get(f'{name}{{{label}="{endpoint}"}}', 0.0)

    def mean_ms(metrics: dict[str, float], name: str, label: str) -> str:
        count = value(metrics, f"{name}_count", label)
        return f"{value(metrics, f'{name}_sum', label) / count:.1f} ms" if count else "-"

    t, d = "TargetDiscoveryName", "DiscoveryName"
    return [
        f"client proxy (egress, {t}={endpoint}):",
        f"  RequestCountPerTarget {value(client, 'RequestCountPerTarget', t):.0f}"
        f"  HTTPCode_Target_2XX_Count {value(client, 'HTTPCode_Target_2XX_Count', t):.0f}"
        f"  HTTPCode_Target_5XX_Count {value(client, 'HTTPCode_Target_5XX_Count', t):.0f}"
        f"  TargetResponseTime mean {mean_ms(client, 'TargetResponseTime', t)}",
        f"server proxy (ingress, {d}={endpoint}):",
        f"  RequestCount {value(server, 'RequestCount', d):.0f}"
        f"  HTTPCode_2XX_Count {value(server, 'HTTPCode_2XX_Count', d):.0f}"
        f"  NewConnectionCount {value(server, 'NewConnectionCount', d):.0f}"
        f"  ResponseTime mean {mean_ms(server, 'ResponseTime', d)}",
    ]


class Demo:
    """The demo's steps; each one registers how to undo itself on `cleanup`."""

    def __init__(self, workdir: Path, cleanup: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self.cleanup = cleanup
        self.started = time.monotonic()
        self.summary: list[str] = []
        self.env: EnvTest | None = None
        self.api: KubeAPI | None = None
        self.operator: OperatorProcess | None = None
        self.network: Network | None = None
        self.client_task: Task | None = None

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"

    def control_plane(self, assets: Path, tools: Path) -> Kubectl:
        say("starting etcd, kube-apiserver and kube-controller-manager on 127.0.0.1")
        env = self.env = EnvTest(assets, self.workdir / "cluster")
        self.cleanup.callback(env.stop)
        api = self.api = env.start()
        env.start_controller_manager()
        print(f"API server {api.url} ready after {self.elapsed()}")
        kubectl = Kubectl(tools / "kubectl", api.kubeconfig)

        say("installing the CRDs: scctl crds | kubectl apply -f -")
        scctl = Path(sys.executable).with_name("scctl")
        crds = subprocess.run([str(scctl), "crds"], capture_output=True, text=True, check=True, timeout=60)
        print(kubectl("apply", "-f", "-", input=crds.stdout), end="")
        names = [d["metadata"]["name"] for d in yaml.safe_load_all(crds.stdout) if d]
        with api.api_client() as client:
            wait_established(client, names)
        return kubectl

    def pod_network(self) -> None:
        """The stand-in for pod networking and cluster DNS, before the operator renders any proxy config."""
        say("creating the pod network: a hub network namespace with a bridge and the cluster DNS")
        net = self.network = Network(self.workdir / "network", tag=f"demo{os.getpid() % 10000}")
        self.cleanup.callback(net.close)
        print(f"network namespaces sc-wp-{net.tag}-*, addresses 169.254.0.0/16, DNS on {net.resolver}")

    def start_operator(self) -> None:
        assert self.api is not None
        say("starting the operator: sc-operator --standalone --all-namespaces")
        logs = self.workdir / "operator"
        logs.mkdir()
        # The proxies resolve headless Services with the pod network's DNS (a cluster's would be CoreDNS).
        env = {"SC_DNS_RESOLVER": self.network.resolver} if self.network else None
        op = self.operator = OperatorProcess(self.api, logs, env=env)
        op.start()
        self.cleanup.callback(op.stop)

    def send_traffic(self, kube: Kube, kubectl: Kubectl) -> None:
        """Run the example tasks as rendered, then curl nginx from the client task through both proxies."""
        assert self.network is not None
        harness = Harness(kube, self.network, NAMESPACE, self.workdir / "tasks")
        self.cleanup.callback(harness.close)
        say("starting the example tasks as the operator rendered them (servers first, as ECS advises)")
        [server] = harness.run_pods(SERVER)
        print(f"{server.pod}: network namespace {server.netns}, address {server.address}, ready")
        harness.wait_dns("nginx", 1)
        [client] = harness.run_pods(CLIENT)
        self.client_task = client
        print(f"{client.pod}: network namespace {client.netns}, address {client.address}, ready")
        hosts = client.run("getent", "hosts", "nginx").stdout.split()
        print(f"in the client task, nginx resolves to {' '.join(hosts[:1]) or '(nothing)'} (its hosts file)")

        say(f"sending {REQUESTS} requests from the client task: curl -i {URL}")
        ok = 0
        for i in range(1, REQUESTS + 1):
            result = client.curl(URL, "-i")
            if result.returncode != 0:
                raise DemoFailed(f"curl {URL} failed in {client.pod}: {result.stderr.strip()}")
            lines = describe_response(result.stdout)
            ok += lines[0].startswith("HTTP/1.1 200")
            print(f"[{i}] " + "\n    ".join(lines))
        if ok != REQUESTS:
            raise DemoFailed(f"{REQUESTS - ok} of {REQUESTS} requests to {URL} did not answer 200")

        say("what both proxies counted (their /metrics, named after the CloudWatch metrics)")
        for line in metrics_summary(client.metrics(), server.metrics(), "nginx"):
            print(line)
        self.summary.append(
            f"{REQUESTS} requests from the client task to {URL}: {ok} answered 200 by nginx "
            "through the client's and the server's proxies"
        )

        say("the rollouts, now that the (simulated) kubelet reports the tasks Ready")
        print(kubectl("get", "connectservices", "-n", NAMESPACE), end="")

    def apply_examples(self, kubectl: Kubectl, kube: Kube) -> None:
        # File by file, each accepted before the next: servers first, then clients, as ECS advises. A
        # client's rollout pins the endpoints registered at that moment, so a client applied together
        # with its server could pin an empty list and never reach it until redeployed.
        accepted_count = 0
        for path in sorted(EXAMPLES.glob("*.yaml")):
            say(f"applying examples/{path.name}: kubectl apply --server-side -f examples/{path.name}")
            print(kubectl("apply", "--server-side", "-f", str(path)), end="")
            for namespace, name in example_services(path):
                cond = wait_for(f"{namespace}/{name} Accepted", partial(accepted, kube, namespace, name), 90)
                if cond["status"] != "True":
                    raise DemoFailed(f"{namespace}/{name} was refused: {cond.get('message')}")
                print(f"{namespace}/{name}: Accepted ({cond.get('reason')})")
                accepted_count += 1
        self.summary.append(f"{accepted_count} ConnectServices accepted by the operator")

        say("what the operator made of them")
        print(kubectl("get", "serviceconnect", "-A"), end="")
        print(kubectl("get", "deployments,configmaps,services", "-n", "tutorial"), end="")

    def operator_healthy(self) -> Callable[[], bool]:
        def alive() -> bool:
            procs = [*(self.env.procs if self.env else []), *([self.operator.proc] if self.operator else [])]
            return all(p is None or p.alive() for p in procs)

        return alive

    def describe_death(self) -> str:
        procs = [*(self.env.procs if self.env else []), *([self.operator.proc] if self.operator else [])]
        dead = [p for p in procs if p is not None and not p.alive()]
        return dead[0].describe_exit() if dead else "a process ended"


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    # A second Ctrl-C while cleaning up must not leave namespaces or processes behind.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(once: bool, traffic: bool) -> int:
    try:
        assets, tools = find_assets(), find_tools()
    except Unavailable as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    if traffic:
        reason = missing_prerequisites()
        if reason:
            print(f"demo: skipping the data path: {reason}; run as root for it, or pass --no-traffic")
            traffic = False
    workdir = Path(tempfile.mkdtemp(prefix="serviceconnect-demo-"))
    keep_logs = False
    cleanup = contextlib.ExitStack()
    demo = Demo(workdir, cleanup)
    try:
        kubectl = demo.control_plane(assets, tools)
        assert demo.api is not None
        if traffic:
            demo.pod_network()
        demo.start_operator()
        client = demo.api.api_client()
        cleanup.callback(client.close)
        kube = Kube(client)
        demo.apply_examples(kubectl, kube)
        if traffic:
            demo.send_traffic(kube, kubectl)
        else:
            demo.summary.append("data path skipped (--no-traffic, or not possible here)")

        say(f"ready after {demo.elapsed()}")
        for line in demo.summary:
            print(f"  - {line}")
        assert demo.api is not None
        print("point kubectl at it with")
        print(f"  export KUBECONFIG={demo.api.kubeconfig}")
        print("  kubectl get connectnamespaces,connectservices,connectdeployments -A")
        print("  kubectl describe connectservice -n tutorial service-connect-nginx-service")
        if demo.client_task is not None:
            print("and send requests from the client task with")
            print(f"  ip netns exec {demo.client_task.netns} curl -i {URL}")
        if once:
            say("--once: tearing down")
            return 0
        say("running; Ctrl-C stops everything and removes it")
        alive = demo.operator_healthy()
        while alive():
            time.sleep(1)
        print(f"demo: {demo.describe_death()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping")
        return 0
    except (subprocess.SubprocessError, AssertionError, RuntimeError, TimeoutError, DemoFailed) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"demo: failed: {exc}\n{detail}", file=sys.stderr)
        print(f"demo: logs kept in {workdir}", file=sys.stderr)
        keep_logs = True
        return 1
    finally:
        with _no_interrupts():
            cleanup.close()
            if not keep_logs:
                shutil.rmtree(workdir, ignore_errors=True)
            print(f"demo: stopped and removed everything it started ({demo.elapsed()} in all)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="set up, show, send traffic, and tear down")
    parser.add_argument(
        "--no-traffic",
        action="store_true",
        help="skip the data path (the example tasks in network namespaces); needs no root",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    return run(args.once, not args.no_traffic)


if __name__ == "__main__":
    sys.exit(main())
