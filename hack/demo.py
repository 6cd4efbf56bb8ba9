"""The local demo behind hack/demo.sh: a real API server with our CRDs and examples/ applied.

Starts etcd and kube-apiserver 1.20 on free loopback ports (the same code the integration
tests use), installs the CRDs with `scctl crds | kubectl apply -f -`, applies examples/ with
server-side apply, shows what was created and how to point kubectl at it, then keeps running
until Ctrl-C (or stops at once with --once). Everything it started is stopped and removed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.crds import wait_established  # noqa: E402
from support.envtest import EnvTest, Unavailable, find_assets, find_tools  # noqa: E402
from support.kubectl import Kubectl  # noqa: E402


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(once: bool) -> int:
    try:
        assets, tools = find_assets(), find_tools()
    except Unavailable as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="serviceconnect-demo-"))
    env = EnvTest(assets, workdir)
    started = time.monotonic()
    keep_logs = False
    try:
        say("starting etcd and kube-apiserver 1.20 on 127.0.0.1")
        api = env.start()
        print(f"API server {api.url} ready in {time.monotonic() - started:.1f} s")
        kubectl = Kubectl(tools / "kubectl", api.kubeconfig)

        say("installing the CRDs: scctl crds | kubectl apply -f -")
        scctl = Path(sys.executable).with_name("scctl")
        crds = subprocess.run([str(scctl), "crds"], capture_output=True, text=True, check=True, timeout=60)
        print(kubectl("apply", "-f", "-", input=crds.stdout), end="")
        names = [d["metadata"]["name"] for d in yaml.safe_load_all(crds.stdout) if d]
        with api.api_client() as client:
            wait_established(client, names)

        say("applying examples/: kubectl apply --server-side -f examples/")
        print(kubectl("apply", "--server-side", "-f", str(ROOT / "examples")), end="")

        say("what was created: kubectl get serviceconnect -A")
        print(kubectl("get", "serviceconnect", "-A"), end="")

        say(f"ready after {time.monotonic() - started:.1f} s; point kubectl at it with")
        print(f"  export KUBECONFIG={api.kubeconfig}")
        print("  kubectl get connectnamespaces,connectservices -A")
        print("  kubectl describe connectservice -n tutorial service-connect-nginx-service")
        if once:
            say("--once: tearing down")
            return 0
        say("running; Ctrl-C stops the API server and removes everything")
        while all(p.alive() for p in env.procs):
            time.sleep(1)
        dead = [p for p in env.procs if not p.alive()]
        print(f"demo: {dead[0].describe_exit()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping")
        return 0
    except (subprocess.CalledProcessError, AssertionError, RuntimeError, TimeoutError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"demo: failed: {exc}\n{detail}", file=sys.stderr)
        print(f"demo: logs kept in {workdir}", file=sys.stderr)
        keep_logs = True
        return 1
    finally:
        env.stop()
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="set up, show, and tear down right away")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return run(args.once)


if __name__ == "__main__":
    sys.exit(main())
