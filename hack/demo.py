"""The local demo behind hack/demo.sh: Service Connect end to end on one machine.

1. etcd, kube-apiserver 1.20 and kube-controller-manager on free loopback ports (the code the integration
   tests use);
2. the CRDs (`scctl crds | kubectl apply -f -`) and the operator (`sc-operator`) as a real process;
3. examples/ applied with server-side apply, and a wait until the operator accepted every ConnectService;
4. the data path (unless --no-traffic, or not root, or `ip`/`iptables` missing): every example task runs in
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

EXAMPLES = ROOT / "examples"


class DemoFailed(Exception):
    """A step of the demo did not do what it should; the message says which and why."""


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP unwind like Ctrl-C does, so every cleanup below runs.
    raise SystemExit(128 + signum)


def example_services() -> list[tuple[str, str]]:
    """(namespace, name) of every ConnectService in examples/."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConnectService":
                found.append((doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]))
    return found


def data_path_unavailable() -> str | None:
    """Why the example tasks cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "not root (network namespaces and iptables need it)"
    missing = [tool for tool in ("ip", "iptables", "curl") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found"
    return None


class Demo:
    """The demo's steps; each one registers how to undo itself on `cleanup`."""

    def __init__(self, workdir: Path, cleanup: contextlib.ExitStack, traffic: bool) -> None:
        self.workdir = workdir
        self.cleanup = cleanup
        self.traffic = traffic
        self.started = time.monotonic()
        self.summary: list[str] = []
        self.env: EnvTest | None = None
        self.api: KubeAPI | None = None
        self.operator: OperatorProcess | None = None

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"

    def control_plane(self, assets: Path, tools: Path) -> Kubectl:
        say("starting etcd, kube-apiserver 1.20 and kube-controller-manager on 127.0.0.1")
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

    def start_operator(self, extra_env: dict[str, str] | None = None) -> None:
        assert self.api is not None
        say("starting the operator: sc-operator --standalone --all-namespaces")
        logs = self.workdir / "operator"
        logs.mkdir()
        op = self.operator = OperatorProcess(self.api, logs, env=extra_env)
        op.start()
        self.cleanup.callback(op.stop)

    def apply_examples(self, kubectl: Kubectl, kube: Kube) -> None:
        say("applying examples/: kubectl apply --server-side -f examples/")
        print(kubectl("apply", "--server-side", "-f", str(EXAMPLES)), end="")
        services = example_services()
        say(f"waiting for the operator to accept {len(services)} ConnectServices")
        for namespace, name in services:
            cond = wait_for(f"{namespace}/{name} Accepted", partial(accepted, kube, namespace, name), 90)
            if cond["status"] != "True":
                raise DemoFailed(f"{namespace}/{name} was refused: {cond.get('message')}")
            print(f"{namespace}/{name}: Accepted ({cond.get('reason')})")
        self.summary.append(f"{len(services)} ConnectServices accepted by the operator")

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
        reason = data_path_unavailable()
        if reason:
            print(f"demo: skipping the data path: {reason}; run as root for it, or pass --no-traffic")
            traffic = False
    workdir = Path(tempfile.mkdtemp(prefix="serviceconnect-demo-"))
    keep_logs = False
    cleanup = contextlib.ExitStack()
    demo = Demo(workdir, cleanup, traffic)
    try:
        kubectl = demo.control_plane(assets, tools)
        assert demo.api is not None
        demo.start_operator()
        client = demo.api.api_client()
        cleanup.callback(client.close)
        kube = Kube(client)
        demo.apply_examples(kubectl, kube)
        if not traffic:
            demo.summary.append("data path skipped (--no-traffic, or not possible here)")

        say(f"ready after {demo.elapsed()}")
        for line in demo.summary:
            print(f"  - {line}")
        assert demo.api is not None
        print("point kubectl at it with")
        print(f"  export KUBECONFIG={demo.api.kubeconfig}")
        print("  kubectl get connectnamespaces,connectservices,connectdeployments -A")
        print("  kubectl describe connectservice -n tutorial service-connect-nginx-service")
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
    except (subprocess.CalledProcessError, AssertionError, RuntimeError, TimeoutError, DemoFailed) as exc:
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
