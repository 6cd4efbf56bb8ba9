"""Reading a linked cluster (I/O): its kubeconfig from a Secret here, its ConnectNamespace and
EndpointSlices there.

Only two reads per peer and poll: the ConnectNamespace of the same name (GET by name, which the link's
Role allows for that one name) and the EndpointSlices of the whole cluster (from the API server's
cache), filtered here to the headless Services of the peer's endpoints. That is all the link's
credential may read (``scctl link``). Requests time out quickly: a peer that hangs must not hold up the
loop that reads the others.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from sc_operator.api.common import Endpoint
from sc_operator.api.namespace import PeerCluster
from sc_operator.kube import CONNECT_NAMESPACES, ApiError, Kube, Resource
from sc_operator.peer_mirror import SERVICE_NAME_LABEL, Backend, mirror_key, ready_backends
from sc_operator.peers import peer_endpoints

SECRETS = Resource("", "v1", "secrets")
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
#: Seconds per request to a peer.
PEER_TIMEOUT = 5.0


class PeerUnavailable(Exception):
    """The peer could not be read; the message says why (for the stale condition)."""


@dataclass(frozen=True)
class PeerView:
    """What was read from a peer: its own endpoints (marked with its name) and, per endpoint's
    headless Service (namespace, name), the ready tasks."""

    endpoints: tuple[Endpoint, ...]
    backends: dict[tuple[str, str], list[Backend]]
    found: bool = True
    """False: the peer has no ConnectNamespace of this name (a reachable answer: no endpoints)."""


class PeerClients:
    """One API client per peer kubeconfig, rebuilt when its Secret changes."""

    def __init__(self, local: Kube) -> None:
        self.local = local
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], tuple[str, Kube]] = {}

    def client(self, peer: PeerCluster) -> Kube:
        ref = peer.kubeconfig_secret
        where = f"Secret {ref.namespace}/{ref.name}"
        try:
            secret = self.local.get(SECRETS, ref.name, ref.namespace)
        except ApiError as exc:
            raise PeerUnavailable(f"{where} (spec.peers[].kubeconfigSecret) cannot be read: {exc}") from exc
        version = str(secret["metadata"].get("resourceVersion", ""))
        key = (ref.namespace, ref.name, ref.key)
        with self._lock:
            hit = self._clients.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        raw = (secret.get("data") or {}).get(ref.key)
        if not raw:
            raise PeerUnavailable(f"{where} has no key {ref.key!r} (spec.peers[].kubeconfigSecret.key)")
        try:
            doc = yaml.safe_load(base64.b64decode(raw))
            kube = kube_from_kubeconfig(doc)
        except Exception as exc:  # a malformed kubeconfig: say so, per peer, and keep going
            raise PeerUnavailable(f"{where} key {ref.key!r} is not a usable kubeconfig: {exc}") from exc
        with self._lock:
            self._clients[key] = (version, kube)
        return kube


def kube_from_kubeconfig(doc: dict[str, Any], timeout: float = PEER_TIMEOUT) -> Kube:
    """A :class:`Kube` for the current context of a kubeconfig given as data (files it names are not
    read: a link's kubeconfig embeds its CA and token)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config_from_dict(doc, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = False  # one attempt: a down peer is news, not something to wait out
    return Kube(client.ApiClient(configuration), timeout=timeout)


def read_peer(peer: Kube, connect_namespace: str, cluster: str) -> PeerView:
    """Read the peer's endpoints of ``connect_namespace`` and the ready tasks behind them."""
    try:
        obj = peer.get_or_none(CONNECT_NAMESPACES, connect_namespace)
    except ApiError as exc:
        raise PeerUnavailable(f"reading ConnectNamespace {connect_namespace}: {exc}") from exc
    if obj is None:
        return PeerView(endpoints=(), backends={}, found=False)
    endpoints = peer_endpoints(cluster, obj.get("status"))
    if not endpoints:
        return PeerView(endpoints=(), backends={})
    try:
        slices = peer.list(ENDPOINT_SLICES)
    except ApiError as exc:
        raise PeerUnavailable(f"listing EndpointSlices: {exc}") from exc
    return PeerView(endpoints=endpoints, backends=backends_of(endpoints, connect_namespace, slices))


def backends_of(
    endpoints: Sequence[Endpoint], connect_namespace: str, slices: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], list[Backend]]:
    """Per endpoint's headless Service, its ready tasks in ``slices``."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            by_service.setdefault((str(meta.get("namespace")), str(service)), []).append(sl)
    out: dict[tuple[str, str], list[Backend]] = {}
    for ep in endpoints:
        key = mirror_key(ep, connect_namespace)
        out[key] = ready_backends(by_service.get(key, []), ep.app_protocol)
    return out
