"""``scctl link`` / ``scctl unlink``: join a ConnectNamespace across two clusters, or part them.

``scctl link NS --peer-name a --peer-kubeconfig a.kubeconfig`` (run with this cluster's kubeconfig):

1. on the peer, a ServiceAccount ``sc-link-<this cluster>-<hash of NS>`` in ``--peer-namespace``, bound to
   a ClusterRole that may ``get`` the ConnectNamespace NS (that one name) and ``list`` EndpointSlices —
   nothing else: no Secrets, no pods, no writes;
2. a token for it from the TokenRequest API (``--token-seconds``; re-run ``scctl link`` to renew);
3. here, a Secret ``sc-link-<peer>`` in ``--secret-namespace`` (the operator's namespace) holding a
   kubeconfig with the peer's server, CA and that token;
4. here, ``spec.peers`` of ConnectNamespace NS gains (or updates) the entry for the peer.

The link is one-way: this cluster's operator reads the peer. Run it the other way round too for the peer
to see this cluster's endpoints. ``scctl unlink`` removes the entry and the Secret here and, given the
peer's kubeconfig, the ServiceAccount and its role there (which revokes the token).
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any, TextIO

import yaml

from sc_operator.kube import CONNECT_NAMESPACES, NAMESPACES, ApiError, Kube, Resource
from sc_operator.peer_client import SECRETS
from sc_operator.render.names import MANAGED_BY_LABEL, MANAGED_BY_VALUE, short_hash
from sc_operator.validation.namespace import gateway_problem

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)
DEFAULT_NAMESPACE = "serviceconnect-system"
YEAR = 365 * 24 * 3600


class LinkError(Exception):
    """A step failed; the message says which and why."""


def add_parsers(sub: Any) -> None:
    """Register ``link`` and ``unlink`` on ``scctl``'s subparsers."""
    p = sub.add_parser(
        "link",
        help="share a ConnectNamespace with another cluster (this cluster reads the peer's endpoints)",
        description=(
            "Create on the peer a ServiceAccount that may read only ConnectNamespace NS and EndpointSlices, "
            "store a kubeconfig for it in a Secret here, and add the peer to NS's spec.peers. One-way: run "
            "it from the other side too. Re-run it to renew the token."
        ),
    )
    _common(p)
    p.add_argument(
        "--cluster-name",
        required=True,
        help="this cluster's name (the operator's SC_CLUSTER_NAME here); names the peer-side account",
    )
    p.add_argument("--peer-context", help="context in --peer-kubeconfig (default: its current one)")
    p.add_argument(
        "--network",
        choices=("flat", "gateway"),
        default="flat",
        help="flat: pod IPs are routable between the clusters; gateway: they are not, and this cluster's "
        "proxies reach the peer's tasks through its gateway (--gateway-address)",
    )
    p.add_argument(
        "--gateway-address",
        help="with --network gateway: the IP address of the peer's gateway Service (its LoadBalancer or node "
        "address)",
    )
    p.add_argument("--gateway-port", type=int, default=15443, help="the peer's gateway port (default 15443)")
    p.add_argument(
        "--token-seconds",
        type=int,
        default=YEAR,
        help=f"lifetime of the peer-side token (default {YEAR}, a year; the peer may cap it)",
    )
    u = sub.add_parser(
        "unlink",
        help="stop sharing a ConnectNamespace with a cluster (its endpoints leave this registry)",
        description=(
            "Remove the peer from NS's spec.peers and delete its kubeconfig Secret here; the operator then "
            "removes the peer's endpoints and mirrored Services. With --peer-kubeconfig, also delete the "
            "peer-side ServiceAccount and role (--cluster-name needed), which revokes the token."
        ),
    )
    _common(u, peer_kubeconfig_required=False)
    u.add_argument("--cluster-name", help="this cluster's name, to find the peer-side account")
    u.add_argument("--peer-context", help="context in --peer-kubeconfig")


def _common(p: argparse.ArgumentParser, peer_kubeconfig_required: bool = True) -> None:
    p.add_argument(
        "connect_namespace", metavar="NS", help="the ConnectNamespace (same name in both clusters)"
    )
    p.add_argument("--peer-name", required=True, help="the peer's cluster name, as this cluster calls it")
    p.add_argument(
        "--peer-kubeconfig", required=peer_kubeconfig_required, help="kubeconfig of the peer (admin there)"
    )
    p.add_argument(
        "--peer-namespace",
        default=DEFAULT_NAMESPACE,
        help=f"namespace on the peer for the link's ServiceAccount (default {DEFAULT_NAMESPACE}; created)",
    )
    p.add_argument(
        "--secret-namespace",
        default=DEFAULT_NAMESPACE,
        help=f"namespace here for the kubeconfig Secret: the operator's (default {DEFAULT_NAMESPACE})",
    )
    p.add_argument("--kubeconfig", help="this cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="context in --kubeconfig")


def _load(kubeconfig: str | None, context: str | None) -> tuple[Kube, Any]:
    from kubernetes import client, config

    if not kubeconfig and not context:
        kube = Kube.from_environment()
        return kube, kube.api_client.configuration
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    return Kube(client.ApiClient(configuration)), configuration


def account_name(cluster_name: str, connect_namespace: str) -> str:
    """The peer-side ServiceAccount (and role) of a link: per reading cluster and ConnectNamespace."""
    return f"sc-link-{cluster_name}"[:50].rstrip("-") + f"-{short_hash(connect_namespace)}"


def reader_role(name: str, connect_namespace: str) -> dict[str, Any]:
    """Least privilege for reading a peer: its ConnectNamespace (one name) and EndpointSlices."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
        "rules": [
            {
                "apiGroups": ["serviceconnect.dev"],
                "resources": ["connectnamespaces"],
                "resourceNames": [connect_namespace],
                "verbs": ["get"],
            },
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
        ],
    }


def peer_kubeconfig(
    server: str, ca_pem: bytes | None, insecure: bool, token: str, peer: str
) -> dict[str, Any]:
    """A self-contained kubeconfig (CA and token embedded: the operator reads no files)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": peer, "cluster": cluster}],
        "users": [{"name": f"sc-link-{peer}", "user": {"token": token}}],
        "contexts": [{"name": peer, "context": {"cluster": peer, "user": f"sc-link-{peer}"}}],
        "current-context": peer,
    }


def _apply(kube: Kube, res: Resource, body: dict[str, Any], namespace: str | None = None) -> None:
    obj, created = kube.create_or_get(res, body, namespace)
    if not created:
        body = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": obj["metadata"]["resourceVersion"]},
        }
        kube.replace(res, body, namespace)


def _step(what: str, fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        raise LinkError(f"{what}: {exc}") from exc


def link(args: argparse.Namespace, out: TextIO) -> None:
    gateway = (
        {"address": args.gateway_address, "port": args.gateway_port}
        if args.gateway_address is not None
        else None
    )
    problem = gateway_problem(args.network, gateway)
    if problem is not None:
        raise LinkError(f"--gateway-address: {problem}")
    if args.peer_name == args.cluster_name:
        raise LinkError("--peer-name and --cluster-name must differ: each cluster needs its own name")
    cns = args.connect_namespace
    here, _ = _load(args.kubeconfig, args.context)
    peer, peer_conf = _load(args.peer_kubeconfig, args.peer_context)
    if (
        _step(f"reading ConnectNamespace {cns} here", lambda: here.get_or_none(CONNECT_NAMESPACES, cns))
        is None
    ):
        raise LinkError(f"ConnectNamespace {cns} does not exist in this cluster: create it first (same name)")
    if (
        _step(
            f"reading ConnectNamespace {cns} on the peer", lambda: peer.get_or_none(CONNECT_NAMESPACES, cns)
        )
        is None
    ):
        out.write(f"note: the peer has no ConnectNamespace {cns} yet; its endpoints appear once it does\n")
    # The peer side: an account that may read NS and EndpointSlices, and a token for it.
    name, ns = account_name(args.cluster_name, cns), args.peer_namespace
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    _step(
        f"creating namespace {ns} on the peer",
        lambda: peer.create_or_get(NAMESPACES, {"metadata": {"name": ns, "labels": labels}}),
    )
    _step(
        f"creating ServiceAccount {ns}/{name} on the peer",
        lambda: peer.create_or_get(SERVICE_ACCOUNTS, {"metadata": {"name": name, "labels": labels}}, ns),
    )
    _step(
        f"creating ClusterRole {name} on the peer",
        lambda: _apply(peer, CLUSTER_ROLES, reader_role(name, cns)),
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }
    _step(
        f"creating ClusterRoleBinding {name} on the peer",
        lambda: _apply(peer, CLUSTER_ROLE_BINDINGS, binding),
    )
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": args.token_seconds},
    }
    answer = _step(
        "requesting a token on the peer (TokenRequest)",
        lambda: peer.request("POST", SERVICE_ACCOUNTS.path(ns, name, "token"), request),
    )
    token = str(answer["status"]["token"])
    expires = answer["status"].get("expirationTimestamp", "?")
    ca_file = getattr(peer_conf, "ssl_ca_cert", None)
    ca_pem = Path(ca_file).read_bytes() if ca_file else None
    doc = peer_kubeconfig(str(peer_conf.host), ca_pem, not peer_conf.verify_ssl, token, args.peer_name)
    # This side: the kubeconfig Secret, then the peer in spec.peers.
    secret_name = f"sc-link-{args.peer_name}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": args.secret_namespace, "labels": labels},
        "type": "Opaque",
        "data": {"kubeconfig": base64.b64encode(yaml.safe_dump(doc).encode()).decode()},
    }
    _step(
        f"writing Secret {args.secret_namespace}/{secret_name} here",
        lambda: _apply(here, SECRETS, secret, args.secret_namespace),
    )
    entry = {
        "cluster": args.peer_name,
        "kubeconfigSecret": {"namespace": args.secret_namespace, "name": secret_name, "key": "kubeconfig"},
        "network": args.network,
    }
    if gateway is not None:
        entry["gateway"] = gateway
    _step(f"adding the peer to ConnectNamespace {cns}", lambda: _set_peer(here, cns, args.peer_name, entry))
    out.write(
        f"linked: ConnectNamespace {cns} here reads cluster {args.peer_name} as ServiceAccount {ns}/{name} "
        f"(token expires {expires}; Secret {args.secret_namespace}/{secret_name})\n"
    )


def _set_peer(kube: Kube, cns: str, cluster: str, entry: dict[str, Any] | None) -> None:
    """Put (or with ``None`` remove) ``cluster``'s entry in spec.peers, at the version read."""
    for _ in range(10):
        obj = kube.get(CONNECT_NAMESPACES, cns)
        peers = [p for p in (obj.get("spec") or {}).get("peers") or [] if p.get("cluster") != cluster]
        if entry is not None:
            peers.append(entry)
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "spec": {"peers": peers or None},
        }
        try:
            kube.patch(CONNECT_NAMESPACES, cns, patch)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
    raise LinkError(f"ConnectNamespace {cns}: spec kept changing under us")


def unlink(args: argparse.Namespace, out: TextIO) -> None:
    cns = args.connect_namespace
    here, _ = _load(args.kubeconfig, args.context)
    _step(
        f"removing the peer from ConnectNamespace {cns}", lambda: _set_peer(here, cns, args.peer_name, None)
    )
    secret_name = f"sc-link-{args.peer_name}"
    _step(
        f"deleting Secret {args.secret_namespace}/{secret_name}",
        lambda: here.delete(SECRETS, secret_name, args.secret_namespace),
    )
    out.write(f"unlinked: ConnectNamespace {cns} no longer reads cluster {args.peer_name}\n")
    if args.peer_kubeconfig:
        if not args.cluster_name:
            raise LinkError("--peer-kubeconfig needs --cluster-name to find the peer-side account")
        peer, _ = _load(args.peer_kubeconfig, args.peer_context)
        name, ns = account_name(args.cluster_name, cns), args.peer_namespace
        _step("deleting the peer-side ClusterRoleBinding", lambda: peer.delete(CLUSTER_ROLE_BINDINGS, name))
        _step("deleting the peer-side ClusterRole", lambda: peer.delete(CLUSTER_ROLES, name))
        _step("deleting the peer-side ServiceAccount", lambda: peer.delete(SERVICE_ACCOUNTS, name, ns))
        out.write(f"revoked: ServiceAccount {ns}/{name} deleted on the peer\n")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        (link if args.command == "link" else unlink)(args, out)
    except LinkError as exc:
        err.write(f"scctl {args.command}: {exc}\n")
        return EXIT_FAILED
    except Exception as exc:  # kubeconfig missing or unreadable: say so, no traceback
        err.write(f"scctl {args.command}: cannot reach a cluster: {exc}\n")
        return EXIT_FAILED
    return EXIT_OK
