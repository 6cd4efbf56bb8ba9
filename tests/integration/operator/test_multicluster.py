"""One ConnectNamespace across two clusters: two real API servers (two envtest instances), an operator
each, linked with ``scctl link`` against the real servers.

Real: both API servers and etcds; both operators, B's running as the chart's ServiceAccount with
``rbac.links=true`` (so the chart's least-privilege roles are proven enough); cluster A's
kube-controller-manager (Deployments → Pods, and its endpointslice controller turning A's Ready pods into
the EndpointSlices B reads); RBAC on both sides: B's operator reads A with the token ``scctl link``
obtained from A's TokenRequest API for a ServiceAccount that may only get the ConnectNamespace and list
EndpointSlices. Simulated: the kubelet (pods are bound to a Node object and their status written, see
``support.operator.Kubelet``); the network (no packets here: the whole path lives in
tests/integration/wholepath).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator import API_VERSION, cli
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    PODS,
    SERVICES,
    ApiError,
    Kube,
    Resource,
)
from sc_operator.peer_client import ENDPOINT_SLICES, SECRETS, kube_from_kubeconfig
from sc_operator.peer_mirror import SLICE_MANAGER
from sc_operator.render.names import headless_service_name
from support.crds import crd_documents, wait_established
from support.envtest import EnvTest, Unavailable, find_tools
from support.gate import unavailable
from support.helmchart import Helm
from support.operator import OperatorProcess, accepted, service_body, wait_for

CNS = "mesh"
NS = "shop"
LINKS = "serviceconnect-system"
NODES = Resource("", "v1", "nodes", namespaced=False)


@dataclass
class Cluster:
    name: str
    env: EnvTest
    kube: Kube
    operator: OperatorProcess

    @property
    def kubeconfig(self) -> Path:
        assert self.env.api is not None
        return self.env.api.kubeconfig


RBAC_PATHS = {
    "ServiceAccount": Resource("", "v1", "serviceaccounts"),
    "Role": Resource("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Resource("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "ClusterRole": Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False),
    "ClusterRoleBinding": Resource(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False
    ),
}


def chart_account(kube: Kube, api_url: str, ca: Path, tmp: Path) -> Path:
    """The chart's ServiceAccount and roles with ``rbac.links=true`` (release namespace LINKS), and a
    kubeconfig with a TokenRequest token for it: an operator that runs as what the chart grants."""
    try:
        helm = Helm(find_tools() / "helm")
    except Unavailable as exc:
        unavailable(f"no helm: {exc}")
    docs = helm.template(release="sc", namespace=LINKS, sets={"rbac.links": True})
    account = None
    for doc in docs:
        res = RBAC_PATHS.get(doc["kind"])
        if res is None:
            continue
        kube.create(res, doc, LINKS if res.namespaced else None)
        if doc["kind"] == "ServiceAccount":
            account = doc["metadata"]["name"]
    assert account is not None
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    token = kube.request("POST", RBAC_PATHS["ServiceAccount"].path(LINKS, account, "token"), request)[
        "status"
    ]["token"]
    path = tmp / "chart-account.kubeconfig"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": api_url, "certificate-authority": str(ca)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    # Guard against a test that passes because it runs as admin: no Secrets outside the release namespace.
    as_account = kube_from_kubeconfig(doc)
    with pytest.raises(ApiError) as info:
        as_account.list(SECRETS, NS)
    assert info.value.status == 403
    assert as_account.get_or_none(SECRETS, "absent", LINKS) is None  # allowed: 404, not 403
    return path


def _start(name: str, assets: Path, tmp: Path, controllers: bool, as_chart: bool = False) -> Cluster:
    env = EnvTest(assets, tmp / f"envtest-{name}")
    api = env.start()
    if controllers:
        try:
            env.start_controller_manager()
        except Unavailable as exc:
            env.stop()
            unavailable(str(exc))
    client = api.api_client()
    from kubernetes import client as k8s

    ext = k8s.ApiextensionsV1Api(client)
    docs = crd_documents()
    for doc in docs:
        ext.create_custom_resource_definition(doc)
    wait_established(client, [d["metadata"]["name"] for d in docs])
    kube = Kube(client)
    for ns in (NS, LINKS):
        kube.create(NAMESPACES, {"metadata": {"name": ns}})
    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": CNS}}
    )
    op_env = {"SC_CLUSTER_NAME": name, "SERVICECONNECT_PEER_SYNC_SECONDS": "1"}
    if name == "a":
        op_env["SC_GATEWAY_ENABLED"] = "true"  # A runs a gateway (an operator as admin: no chart RBAC)
    if as_chart:
        op_env["KUBECONFIG"] = str(chart_account(kube, api.url, api.certs.ca_cert, tmp))
    op = OperatorProcess(api, tmp / f"operator-{name}", env=op_env)
    (tmp / f"operator-{name}").mkdir()
    op.start()
    return Cluster(name, env, kube, op)


@pytest.fixture(scope="module")
def clusters(
    envtest_assets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    tmp = tmp_path_factory.mktemp("multicluster")
    a = _start("a", envtest_assets, tmp, controllers=True)
    try:
        # B's operator runs as the chart's ServiceAccount (rbac.links=true), not as admin: what the
        # chart grants is enough to link (Secrets in its namespace only, EndpointSlices for the mirror).
        b = _start("b", envtest_assets, tmp, controllers=False, as_chart=True)
    except BaseException:
        a.operator.stop()
        a.env.stop()
        raise
    try:
        yield a, b
    finally:
        for c in (b, a):
            c.operator.stop()
            c.env.stop()


def scctl(*argv: str) -> None:
    code = cli.main(list(argv))
    assert code == 0, f"scctl {' '.join(argv)} exited {code}"


def link(here: Cluster, peer: Cluster) -> None:
    scctl(
        "link", CNS,
        "--peer-name", peer.name,
        "--peer-kubeconfig", str(peer.kubeconfig),
        "--cluster-name", here.name,
        "--kubeconfig", str(here.kubeconfig),
        "--secret-namespace", LINKS,
        "--peer-namespace", LINKS,
    )  # fmt: skip


def run_pods(cluster: Cluster, service: str, ips: list[str]) -> None:
    """Play A's kubelet: bind the service's pods to a Node and report them Ready at ``ips``."""
    kube = cluster.kube
    if kube.get_or_none(NODES, "node-a") is None:
        kube.create(NODES, {"metadata": {"name": "node-a"}})
    labels = {"serviceconnect.dev/service": service}
    pods = wait_for(
        f"{len(ips)} pods of {service}",
        lambda: (p := kube.list(PODS, NS, labels)) and len(p) == len(ips) and p,
    )
    now = "2026-01-01T00:00:00Z"
    for pod, ip in zip(sorted(pods, key=lambda p: p["metadata"]["name"]), ips, strict=True):
        name = pod["metadata"]["name"]
        if not pod["spec"].get("nodeName"):
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name},
                "target": {"kind": "Node", "name": "node-a"},
            }
            kube.request("POST", PODS.path(NS, name, "binding"), binding)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": c,
                    "ready": True,
                    "restartCount": 0,
                    "image": "sim",
                    "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }
        kube.patch(PODS, name, {"status": status}, NS, sub="status")


def endpoints(cluster: Cluster) -> dict[str, str | None]:
    status = cluster.kube.get(CONNECT_NAMESPACES, CNS).get("status") or {}
    return {e["discoveryName"]: e.get("cluster") for e in status.get("endpoints") or []}


def peer_state(cluster: Cluster, peer: str) -> dict[str, Any]:
    status = cluster.kube.get(CONNECT_NAMESPACES, CNS).get("status") or {}
    return next((p for p in status.get("peers") or [] if p["cluster"] == peer), {})


def mirrored_ips(cluster: Cluster, discovery: str) -> set[str]:
    name = headless_service_name(discovery, CNS)
    slices = cluster.kube.list(ENDPOINT_SLICES, NS, {"kubernetes.io/service-name": name}, cached=False)
    return {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}


def is_accepted(cluster: Cluster, name: str) -> dict[str, Any] | None:
    cond = accepted(cluster.kube, NS, name)
    return cond if cond is not None and cond["status"] == "True" else None


def test_one_namespace_across_two_clusters(clusters: tuple[Cluster, Cluster]) -> None:
    a, b = clusters
    link(b, a)  # B reads A
    link(a, b)  # A reads B

    # The link's credential is least privilege: it reads the ConnectNamespace, nothing else of A's.
    secret = b.kube.get(SECRETS, f"sc-link-{a.name}", LINKS)
    doc = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    reader = kube_from_kubeconfig(doc)
    assert reader.get(CONNECT_NAMESPACES, CNS)["metadata"]["name"] == CNS
    for forbidden in (
        lambda: reader.list(SECRETS, LINKS),
        lambda: reader.list(PODS, NS),
        lambda: reader.list(CONNECT_NAMESPACES),
    ):
        with pytest.raises(ApiError) as info:
            forbidden()
        assert info.value.status == 403

    # A service in A is visible in B's registry, marked as A's, and its Ready tasks are mirrored.
    a.kube.create(CONNECT_SERVICES, service_body("nginx", NS, CNS, desired=2), NS)
    wait_for("nginx accepted in A", lambda: is_accepted(a, "nginx"))
    run_pods(a, "nginx", ["10.1.0.5", "10.1.0.6"])
    wait_for("nginx in B's registry as cluster a's", lambda: endpoints(b).get("nginx") == "a")
    wait_for("A's two tasks mirrored into B", lambda: mirrored_ips(b, "nginx") == {"10.1.0.5", "10.1.0.6"})
    mirror = b.kube.get(SERVICES, headless_service_name("nginx", CNS), NS)
    assert mirror["spec"]["clusterIP"] == "None"
    assert "selector" not in mirror["spec"]
    assert wait_for("B's peer status", lambda: peer_state(b, "a").get("reachable"))

    # A client deployed in B afterwards pins A's endpoint, found through the mirrored headless Service.
    b.kube.create(CONNECT_SERVICES, service_body("web", NS, CNS, serve=False), NS)
    rollout = wait_for(
        "web's deployment in B",
        lambda: b.kube.list(CONNECT_DEPLOYMENTS, NS, {"serviceconnect.dev/service": "web"}),
    )[0]
    pinned = {e["discoveryName"]: e.get("cluster") for e in rollout["spec"]["endpoints"]}
    assert pinned == {"nginx": "a"}
    config_maps = b.kube.list(CONFIGMAPS, NS, {"serviceconnect.dev/service": "web"})
    proxy = json.loads(config_maps[0]["data"]["proxy.json"])
    dumped = json.dumps(proxy)
    assert f"{headless_service_name('nginx', CNS)}.{NS}.svc." in dumped, dumped[:2000]

    # A duplicate discoveryName across clusters is refused on the later registration, naming the owner
    # in the other cluster (the refused service is the object the condition is on).
    b.kube.create(CONNECT_SERVICES, service_body("nginx-b", NS, CNS, discovery="nginx", dns="nginx-b"), NS)
    cond = wait_for(
        "nginx-b refused in B",
        lambda: (c := accepted(b.kube, NS, "nginx-b")) and c["status"] == "False" and c,
    )
    assert cond["reason"] == "DiscoveryNameDuplicate", cond
    assert "shop/nginx in cluster a" in cond["message"], cond

    # B's own service is mirrored into A as cluster b's (the link works both ways, without loops).
    b.kube.create(CONNECT_SERVICES, service_body("api", NS, CNS), NS)
    wait_for("api accepted in B", lambda: is_accepted(b, "api"))
    wait_for("api in A's registry as cluster b's", lambda: endpoints(a).get("api") == "b")
    assert endpoints(b) == {"nginx": "a", "api": None}

    # A's API server stops: B keeps A's endpoints and mirrored tasks, marked stale with the time, and
    # B's own services still reconcile.
    a.operator.stop()
    a.env.stop_apiserver()
    state = wait_for("A stale in B", lambda: (s := peer_state(b, "a")) and s.get("stale") and s)
    assert state["reachable"] is False
    assert state["unreachableSince"]
    assert state["endpointCount"] == 1
    assert endpoints(b) == {"nginx": "a", "api": None}
    assert mirrored_ips(b, "nginx") == {"10.1.0.5", "10.1.0.6"}
    cns_b = b.kube.get(CONNECT_NAMESPACES, CNS)
    synced = next(c for c in cns_b["status"]["conditions"] if c["type"] == "PeersSynced")
    assert (synced["status"], synced["reason"]) == ("False", "PeerUnreachable")
    assert "cluster a unreachable since" in synced["message"]
    warned = wait_for(
        "a PeerUnreachable Event",
        lambda: [e for e in b.kube.list(EVENTS, "default") if e.get("reason") == "PeerUnreachable"],
    )
    assert warned[0]["involvedObject"]["name"] == CNS
    b.kube.create(CONNECT_SERVICES, service_body("cart", NS, CNS), NS)
    wait_for("cart accepted in B while A is down", lambda: is_accepted(b, "cart"))
    cart = wait_for(
        "cart's deployment",
        lambda: b.kube.list(CONNECT_DEPLOYMENTS, NS, {"serviceconnect.dev/service": "cart"}),
    )[0]
    assert {e["discoveryName"] for e in cart["spec"]["endpoints"]} == {"nginx", "api", "cart"}

    # A comes back: B converges (fresh, not stale) and A sees B's new service.
    a.env.restart_apiserver()
    a.operator.start()
    wait_for(
        "A fresh again in B",
        lambda: peer_state(b, "a").get("reachable") is True and not peer_state(b, "a").get("stale"),
    )
    wait_for("cart in A's registry", lambda: endpoints(a).get("cart") == "b", timeout=60)

    # Deleting A's service deregisters it everywhere, mirror included; B's nginx-b, refused while A held
    # the name, is retried and now gets it, with a headless Service of its own (not the mirror's).
    a.kube.delete(CONNECT_SERVICES, "nginx", NS)
    wait_for("nginx no longer A's in B's registry", lambda: endpoints(b).get("nginx") != "a")
    wait_for("nginx-b accepted once the name is free", lambda: is_accepted(b, "nginx-b"), timeout=60)
    assert endpoints(b)["nginx"] is None
    local = wait_for(
        "nginx-b's own headless Service",
        lambda: (
            (svc := b.kube.get_or_none(SERVICES, headless_service_name("nginx", CNS), NS))
            and svc["spec"].get("selector")
            and svc
        ),
    )
    assert local["metadata"]["ownerReferences"][0]["kind"] == "ConnectService"
    assert not [
        s
        for s in b.kube.list(ENDPOINT_SLICES, NS, cached=False)
        if s["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by") == SLICE_MANAGER
        and s["metadata"]["labels"].get("kubernetes.io/service-name") == local["metadata"]["name"]
    ]

    # Unlinking removes the peer's endpoints; the namespace and B's own services stay.
    a.kube.create(CONNECT_SERVICES, service_body("search", NS, CNS), NS)
    wait_for("search in B's registry", lambda: endpoints(b).get("search") == "a")
    scctl(
        "unlink", CNS,
        "--peer-name", a.name,
        "--kubeconfig", str(b.kubeconfig),
        "--secret-namespace", LINKS,
        "--peer-kubeconfig", str(a.kubeconfig),
        "--peer-namespace", LINKS,
        "--cluster-name", b.name,
    )  # fmt: skip
    wait_for("A's endpoints gone from B", lambda: endpoints(b) == {"api": None, "cart": None, "nginx": None})
    wait_for(
        "search's mirror gone",
        lambda: b.kube.get_or_none(SERVICES, headless_service_name("search", CNS), NS) is None,
    )
    cns_b = b.kube.get(CONNECT_NAMESPACES, CNS)
    assert not cns_b["status"].get("peers")
    with pytest.raises(ApiError) as info:  # revoked: its role is gone (403), its account too (401 later:
        reader.get(CONNECT_NAMESPACES, CNS)  # the API server caches authenticated tokens for a while)
    assert info.value.status in (401, 403)


def test_gateway_links_need_the_gateway_address_and_a_cluster_runs_its_gateway(
    clusters: tuple[Cluster, Cluster],
) -> None:
    a, b = clusters
    code = cli.main(
        [
            "link",
            CNS,
            "--peer-name",
            "z",
            "--peer-kubeconfig",
            str(b.kubeconfig),
            "--cluster-name",
            "b",
            "--network",
            "gateway",
        ]
    )
    assert code == 1
    # Written directly, past scctl: the operator refuses it in the ConnectNamespace's condition.
    b.kube.patch(
        CONNECT_NAMESPACES,
        CNS,
        {
            "spec": {
                "peers": [
                    {
                        "cluster": "z",
                        "network": "gateway",
                        "kubeconfigSecret": {"namespace": LINKS, "name": "none"},
                    }
                ]
            }
        },
    )
    try:

        def refused() -> dict[str, Any] | None:
            status = b.kube.get(CONNECT_NAMESPACES, CNS).get("status") or {}
            cond = next((c for c in status.get("conditions") or [] if c["type"] == "PeersSynced"), None)
            return cond if cond is not None and cond["reason"] == "PeerRefused" else None

        cond = wait_for("the gateway peer refused", refused)
        assert "spec.peers[0].gateway" in cond["message"]
        assert "required with network: gateway" in cond["message"]
    finally:
        b.kube.patch(CONNECT_NAMESPACES, CNS, {"spec": {"peers": None}})

    # A runs its gateway (SC_GATEWAY_ENABLED): admitting the tasks of A's own endpoints in its linked
    # ConnectNamespace, found through their headless Services; never what A mirrored.
    link(a, b)
    a.kube.create(CONNECT_SERVICES, service_body("gwweb", NS, CNS), NS)
    wait_for("gwweb accepted in A", lambda: is_accepted(a, "gwweb"))
    headless = f"{headless_service_name('gwweb', CNS)}.{NS}.svc."

    def gateway_config() -> dict[str, Any] | None:
        cm = a.kube.get_or_none(CONFIGMAPS, "sc-gateway", "default")
        doc = json.loads(cm["data"]["proxy.json"]) if cm else None
        return doc if doc and headless in json.dumps(doc["gateway"]["allow"]) else None

    doc = wait_for("A's gateway admitting gwweb", gateway_config)
    assert all(not e["dns"]["name"].startswith("sc-web-") for e in doc["gateway"]["allow"])  # B's client

    def rolled() -> bool:  # the ConfigMap is written first, the Deployment right after
        deployment = a.kube.get(DEPLOYMENTS, "sc-gateway", "default")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return bool(annotations["serviceconnect.dev/gateway-config"] == doc["version"])

    wait_for("the gateway Deployment running that configuration", rolled)
    service = a.kube.get(SERVICES, "sc-gateway", "default")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 15443
