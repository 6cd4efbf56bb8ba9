"""The demo behind hack/demo.sh: Service Connect on a real single-node Kubernetes on this machine.

hack/demo.sh has already brought the node up (hack/cluster.sh) and built and loaded the images
(hack/build-images.sh); this script then:
1. installs the chart with helm, with the local images, and waits for the operator;
2. applies examples/ (the tutorial's nginx and busybox images replaced by the locally built ones, since
   nothing can be pulled here) and waits until both services are Accepted and rolled out;
3. runs the tutorial's `curl http://nginx:80/` in the client pod — through its proxy and nginx's proxy —
   and prints the answer and what both proxies counted;
4. prints how to point kubectl at the cluster, then waits for Ctrl-C (or stops at once with --once).
Tearing down (helm uninstall, the cluster) is hack/demo.sh's job, on every way out.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "hack"))

from demo import describe_response, metrics_summary  # noqa: E402

from support.e2estory import (  # noqa: E402
    ADMIN_PORT,
    CLIENT,
    NGINX,
    NS,
    PROXY,
    accepted,
    apply,
    example,
    rolled_out,
    wait_for,
    webhook_answers,
)
from support.helmchart import CHART, Helm  # noqa: E402
from support.kindenv import OPERATOR_IMAGE, PROXY_IMAGE, RELEASE, RELEASE_NS, Images  # noqa: E402
from support.kubectl import Kubectl  # noqa: E402

REQUESTS = 3


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def metrics(kubectl: Kubectl, target: str) -> dict[str, float]:
    """A proxy's /metrics as {'Name{labels}': value}, read from inside its pod."""
    script = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{ADMIN_PORT}/metrics').read().decode())"
    )
    out = kubectl("exec", target, "-n", NS, "-c", PROXY, "--", "python", "-c", script)
    parsed: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+?)(?:_total)?(\{[^}]*\})? (\S+)$", line)
        if m and not line.startswith("#"):
            labels = ",".join(
                part for part in (m.group(2) or "").strip("{}").split(",") if "DiscoveryName" in part
            )
            key = f"{m.group(1)}{{{labels}}}"
            parsed[key] = parsed.get(key, 0.0) + float(m.group(3))
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--once", action="store_true", help="show it, then stop at once")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--tools", type=Path, required=True, help="directory with kubectl and helm")
    parser.add_argument("--tag", required=True, help="tag of the images hack/build-images.sh loaded")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    started = time.monotonic()
    kubectl = Kubectl(args.tools / "kubectl", args.kubeconfig)
    images = Images(args.tag)

    chart = CHART.relative_to(ROOT)
    say(f"helm install {RELEASE} {chart} --namespace {RELEASE_NS} (local images, tag {args.tag})")
    Helm(args.tools / "helm").run(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
        "--wait", "--timeout", "5m", "--kubeconfig", str(args.kubeconfig),
        "--set", f"image.repository={OPERATOR_IMAGE}", "--set", f"image.tag={args.tag}",
        "--set", f"proxy.image.repository={PROXY_IMAGE}", "--set", f"proxy.image.tag={args.tag}",
        timeout=400,
    )  # fmt: skip
    wait_for("the admission webhook to answer", lambda: webhook_answers(kubectl), timeout=60)
    print(f"operator ready after {time.monotonic() - started:.0f} s")

    say("kubectl apply -f examples/ (nginx and busybox replaced by the locally built images)")
    proc = kubectl.run("apply", "-f", str(ROOT / "examples" / "00-namespaces.yaml"), check=False)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    # The client after nginx registered: its rollout pins the endpoints there are when it starts.
    for name, file in ((NGINX, "10-nginx.yaml"), (CLIENT, "20-client.yaml")):
        proc = apply(kubectl, example(file, images))
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        wait_for(f"{name} Accepted", lambda name=name: accepted(kubectl, name))  # type: ignore[misc]
        rolled_out(kubectl, name)
    print(kubectl("get", "pods", "-n", NS, "-o", "wide"))

    say(f"kubectl exec deploy/{CLIENT} -c client -- curl -si http://nginx:80/   ({REQUESTS} times)")
    curl = (
        "exec",
        f"deploy/{CLIENT}",
        "-n",
        NS,
        "-c",
        "client",
        "--",
        "curl",
        "-si",
        "-m",
        "5",
        "http://nginx:80/",
    )

    def answered() -> str | None:
        proc = kubectl.run(*curl, check=False)
        return proc.stdout if proc.returncode == 0 else None

    answer = ""
    for _ in range(REQUESTS):
        answer = wait_for("an answer from http://nginx:80/", answered, timeout=60)
    print("\n".join(describe_response(answer)))
    client = metrics(kubectl, f"deploy/{CLIENT}")
    server = metrics(kubectl, f"deploy/{NGINX}")
    say("what the proxies counted")
    print("\n".join(metrics_summary(client, server, "nginx")))

    say(f"ready after {time.monotonic() - started:.0f} s; point kubectl at the cluster with:")
    print(f"  export KUBECONFIG={args.kubeconfig}")
    print(f"  kubectl get connectservices,connectdeployments,pods -n {NS}")
    if args.once:
        return 0
    print("\nPress Ctrl-C to stop (helm uninstall, then the cluster goes down).", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
