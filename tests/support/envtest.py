"""A real etcd + kube-apiserver (and kube-controller-manager on demand) on loopback.

The binaries come from `hack/envtest.sh` (or `KUBEBUILDER_ASSETS`): the current Kubernetes by
default, the oldest supported one (1.20) with `hack/envtest.sh --oldest`. Which one it is comes from
`kube-apiserver --version`, and the flags follow it: the ones removed since 1.20 are passed to old
servers only. kubectl and helm come from `hack/tools.sh`. Everything listens on free 127.0.0.1 ports
and lives in one temporary directory, so several test sessions can run side by side on one machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import subprocess
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .certs import CertFiles, write_certs
from .procs import Proc, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]

# Enough for Deployments to become ReplicaSets and Pods, for owner-reference garbage collection,
# for Pods to pass the ServiceAccount admission plugin, and for namespaces to really go away.
# These are 1.20's names; current versions call them deployment-controller, garbage-collector-controller,
# ... (since 1.28) and still accept these as aliases.
CONTROLLERS = (
    "deployment",
    "replicaset",
    "garbagecollector",
    "serviceaccount",
    "serviceaccount-token",
    "namespace",
    "endpoint",
    "endpointslice",
)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"

#: The first version without the insecure ports (kube-apiserver --insecure-port, kube-controller-manager
#: --port): passing those flags to it is an error.
NO_INSECURE_PORT_VERSION = (1, 24)


class Unavailable(Exception):
    """The binaries a test needs are not on this machine (and it says how to get them)."""


def _run_hack(script: str, *args: str) -> Path:
    try:
        out = subprocess.run(
            [str(REPO / "hack" / script), *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"hack/{script} failed: {exc}") from exc
    if out.returncode != 0:
        raise Unavailable(f"hack/{script} {' '.join(args)} failed: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def find_assets() -> Path:
    """The directory with etcd and kube-apiserver: KUBEBUILDER_ASSETS or the envtest cache.

    Never starts a build (that takes minutes and root); `hack/test.sh` does it up front.
    """
    return _run_hack("envtest.sh", "--check")


def binary_version(binary: Path) -> tuple[str, tuple[int, int]]:
    """``binary --version`` ("Kubernetes v1.37.2") as the git version and (major, minor)."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{binary} --version failed: {exc}") from exc
    match = re.search(r"\bv(\d+)\.(\d+)\.\S*", out.stdout)
    if out.returncode != 0 or match is None:
        raise Unavailable(f"{binary} --version said {(out.stdout + out.stderr).strip()!r}")
    return match.group(0), (int(match.group(1)), int(match.group(2)))


def find_tools() -> Path:
    """The directory with kubectl and helm (SC_TOOLS_DIR, or extracted once by hack/tools.sh)."""
    return _run_hack("tools.sh")


def _https_opener(ca_file: Path) -> urllib.request.OpenerDirector:
    # No proxy handler: test traffic stays on loopback whatever *_proxy variables say.
    ctx = ssl.create_default_context(cafile=str(ca_file))
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )


@dataclass
class KubeAPI:
    """A running API server: where it is, how to authenticate, and clients for it."""

    url: str
    token: str = field(repr=False)
    kubeconfig: Path
    certs: CertFiles = field(repr=False)
    workdir: Path
    #: What the binary says it is (`kube-apiserver --version`): ("v1.37.2", (1, 37)).
    git_version: str = ""
    version: tuple[int, int] = (0, 0)

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this server (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET `path` with the admin token and return the decoded JSON (or text)."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with _https_opener(self.certs.ca_cert).open(req, timeout=timeout) as resp:
            body = resp.read().decode()
        try:
            return json.loads(body)
        except ValueError:
            return body

    def env(self) -> dict[str, str]:
        """The environment for a child process (kubectl, the operator) aimed at this server."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def _write_kubeconfig(path: Path, url: str, ca: Path, token: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def _start_with_retry(start: Any, attempts: int = 3) -> Any:
    # A port picked by free_port() can be taken by someone else before the child binds it.
    for attempt in range(attempts):
        try:
            return start()
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_etcd(assets: Path, workdir: Path) -> tuple[Proc, str]:
    """Start etcd with its data under `workdir`; return it and its client URL once healthy."""

    def start() -> tuple[Proc, str]:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = workdir / f"etcd-{client}"
        proc = Proc(
            "etcd",
            [
                str(assets / "etcd"),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # tests need speed, not durability
            ],
            workdir / "etcd.log",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def healthy() -> bool:
            with opener.open(f"{client_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        try:
            wait_until("etcd /health", healthy, timeout=30, proc=proc)
        except BaseException:
            proc.stop()
            raise
        return proc, client_url

    result: tuple[Proc, str] = _start_with_retry(start)
    return result


def start_apiserver(
    assets: Path,
    workdir: Path,
    etcd_url: str,
    certs: CertFiles,
    token: str,
    version: tuple[int, int] | None = None,
    port: int | None = None,
) -> tuple[Proc, str]:
    """Start kube-apiserver with token auth and RBAC; return it and its URL once /readyz is ok.

    ``version`` is the binary's (major, minor), read from ``--version`` when not given. ``port``: listen
    there (a restart keeps its URL, so kubeconfigs that name it stay valid); default a free one.
    """
    fixed_port = port
    if version is None:
        version = binary_version(assets / "kube-apiserver")[1]
    # Before 1.24 there is an unauthenticated insecure port (127.0.0.1:8080 on 1.20); 0 turns it off.
    old_flags = ["--insecure-port=0"] if version < NO_INSECURE_PORT_VERSION else []
    tokens = workdir / "tokens.csv"
    tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n')
    tokens.chmod(0o600)

    def start() -> tuple[Proc, str]:
        port = fixed_port or free_port()
        url = f"https://127.0.0.1:{port}"
        proc = Proc(
            "kube-apiserver",
            [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Nothing reaches this server through the `kubernetes` Service, and current versions
                # refuse to publish a loopback address there ("may not be in the loopback range").
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                *old_flags,
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            workdir / "kube-apiserver.log",
        )
        opener = _https_opener(certs.ca_cert)

        def ready() -> bool:
            req = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
            with opener.open(req, timeout=5) as resp:
                return bool(resp.status == 200)

        try:
            wait_until("kube-apiserver /readyz", ready, timeout=90, proc=proc, step=0.5)
        except BaseException:
            proc.stop()
            raise
        return proc, url

    result: tuple[Proc, str] = _start_with_retry(start)
    return result


class EnvTest:
    """etcd + kube-apiserver in `workdir`; `start()` returns the `KubeAPI`, `stop()` ends both."""

    def __init__(self, assets: Path, workdir: Path) -> None:
        self.assets = assets
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.api: KubeAPI | None = None
        self.git_version = ""
        self.version = (0, 0)
        self._apiserver: Proc | None = None
        self._etcd_url = ""
        self._token = ""

    def start(self) -> KubeAPI:
        self.git_version, self.version = binary_version(self.assets / "kube-apiserver")
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = write_certs(self.workdir / "pki")
        token = secrets.token_urlsafe(24)
        try:
            etcd, etcd_url = start_etcd(self.assets, self.workdir)
            self.procs.append(etcd)
            apiserver, url = start_apiserver(self.assets, self.workdir, etcd_url, certs, token, self.version)
            self.procs.append(apiserver)
            self._apiserver, self._etcd_url, self._token = apiserver, etcd_url, token
        except BaseException:
            self.stop()
            raise
        kubeconfig = self.workdir / "kubeconfig"
        _write_kubeconfig(kubeconfig, url, certs.ca_cert, token)
        self.api = KubeAPI(
            url=url,
            token=token,
            kubeconfig=kubeconfig,
            certs=certs,
            workdir=self.workdir,
            git_version=self.git_version,
            version=self.version,
        )
        return self.api

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (etcd keeps the data): clients see a server that went away."""
        assert self._apiserver is not None, "start() first"
        self._apiserver.stop()
        self.procs.remove(self._apiserver)
        self._apiserver = None

    def restart_apiserver(self) -> None:
        """Start kube-apiserver again on the same URL, with the same data and credentials."""
        assert self.api is not None, "start() first"
        assert self._apiserver is None, "stop_apiserver() first"
        port = int(self.api.url.rsplit(":", 1)[1])
        proc, _ = start_apiserver(
            self.assets, self.workdir, self._etcd_url, self.api.certs, self._token, self.version, port=port
        )
        self.procs.insert(1, proc)  # after etcd, before anything that talks to it
        self._apiserver = proc

    def start_controller_manager(self, controllers: Sequence[str] = CONTROLLERS) -> Proc:
        """Start kube-controller-manager against the running API server; wait until it works."""
        assert self.api is not None, "start() the API server first"
        binary = self.assets / "kube-controller-manager"
        if not os.access(binary, os.X_OK):
            raise Unavailable(f"{self.assets} has no kube-controller-manager (setup-envtest dirs lack it)")
        api = self.api
        # Before 1.24 it also serves an insecure port (10252 on 1.20: a clash between sessions); 0: none.
        old_flags = ["--port=0"] if self.version < NO_INSECURE_PORT_VERSION else []
        proc = Proc(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={api.kubeconfig}",
                f"--service-account-private-key-file={api.certs.sa_key}",
                f"--root-ca-file={api.certs.ca_cert}",
                f"--controllers={','.join(controllers)}",
                "--leader-elect=false",
                *old_flags,
                "--secure-port=0",
                "--use-service-account-credentials=false",
                "--v=1",
            ],
            self.workdir / "kube-controller-manager.log",
        )
        self.procs.append(proc)

        # The serviceaccount controller creating `default` in `default` proves the loops run.
        def default_sa() -> bool:
            return bool(api.get("/api/v1/namespaces/default/serviceaccounts/default").get("metadata"))

        wait_until("kube-controller-manager (default ServiceAccount)", default_sa, timeout=60, proc=proc)
        return proc

    def stop(self) -> None:
        """Stop every child, newest first (so nothing logs errors about a vanished etcd)."""
        errors: list[BaseException] = []
        while self.procs:
            proc = self.procs.pop()
            try:
                proc.stop()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
