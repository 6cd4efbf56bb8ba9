"""One round of linking for a ConnectNamespace: read each peer, merge into the registry, mirror discovery.

Runs on a timer per ConnectNamespace with ``spec.peers`` (and right after the spec changes), in its own
worker: services reconcile meanwhile, and write the registry through the same batching writer, so a
slow or dead peer never holds up local work. Each peer is read outside any lock; the merge
(:func:`sc_operator.peers.sync`) is one optimistic write of this cluster's own status.

After the write, the mirror objects (:mod:`sc_operator.peer_mirror`) are brought in line with the
endpoints mirrored from peers that answered. Those of a peer that did not answer are left exactly as
they were: its last known tasks stay reachable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sc_operator.api.common import Endpoint
from sc_operator.api.namespace import PeerCluster
from sc_operator.kube import CONNECT_NAMESPACES, NAMESPACES, SERVICES, ApiError, Obj
from sc_operator.peer_client import ENDPOINT_SLICES, PeerClients, PeerUnavailable, PeerView, read_peer
from sc_operator.peer_mirror import (
    CONNECT_NAMESPACE_LABEL,
    PEER_CLUSTER_LABEL,
    SERVICE_NAME_LABEL,
    mirror_key,
    render_mirror_service,
    render_mirror_slices,
)
from sc_operator.peers import (
    Outcome,
    Reached,
    Refused,
    Unreached,
    check_peers,
    sync,
    through_gateway,
    transitions,
)
from sc_operator.reconcile.context import Context
from sc_operator.reconcile.gateway import sync_gateway
from sc_operator.registry import NamespaceNotFound, Registry
from sc_operator.render.names import MANAGED_BY_LABEL, MANAGED_BY_VALUE, label_value

log = logging.getLogger(__name__)

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def needs_sync(spec: dict[str, Any] | None, status: dict[str, Any] | None) -> bool:
    """Links to read, or leftovers of links removed since (their endpoints and status go)."""
    if (spec or {}).get("peers") or (status or {}).get("peers"):
        return True
    return any(isinstance(ep, dict) and ep.get("cluster") for ep in (status or {}).get("endpoints") or [])


def sync_peers(ctx: Context, clients: PeerClients, name: str) -> Registry | None:
    """Read every peer of ConnectNamespace ``name``, merge, mirror; the registry as written.

    Mirror objects that go are deleted *before* the registry stops listing their endpoints, and new ones
    are created after: a local service waiting for a name a peer held registers only once the peer's
    mirrored Service of that name is gone, so it never finds (and adopts) a selector-less stand-in.
    """
    with _lock(name):
        cns = ctx.kube.get_or_none(CONNECT_NAMESPACES, name)
        if cns is None or cns["metadata"].get("deletionTimestamp"):
            return None
        raw_peers = [p for p in (cns.get("spec") or {}).get("peers") or [] if isinstance(p, dict)]
        outcomes, views = _read_peers(ctx, clients, name, raw_peers)
        now = ctx.clock()
        answered = {o.cluster for o in outcomes if isinstance(o, Reached)}
        unanswered = {o.cluster for o in outcomes if isinstance(o, Unreached)}
        current = Registry.from_status(cns.get("status"))
        planned = sync(current, outcomes, now) or current
        mirrors = _Mirrors.read(ctx, name)
        mirrors.remove_unwanted(ctx, _wanted(planned, name, answered), unanswered)
        try:
            registry = ctx.registry.update(name, lambda r: sync(r, outcomes, now))
        except NamespaceNotFound:
            return None
        before = (cns.get("status") or {}).get("peers") or []
        for type_, reason, message in transitions(before, registry.extra.get("peers") or []):
            ctx.kube.post_event(cns, type_, reason, message)
        mirrors.create_wanted(ctx, cns, _wanted(registry, name, answered), views)
    sync_gateway(ctx)
    return registry


def _read_peers(
    ctx: Context, clients: PeerClients, name: str, raw_peers: Sequence[dict[str, Any]]
) -> tuple[list[Outcome], dict[str, PeerView]]:
    refused = check_peers(ctx.settings.cluster_name, raw_peers)
    outcomes: list[Outcome] = []
    views: dict[str, PeerView] = {}
    seen: set[str] = set()
    missing_ns: dict[str, bool] = {}
    for raw in raw_peers:
        cluster = str(raw.get("cluster", ""))
        if cluster in seen:
            continue
        seen.add(cluster)
        if cluster in refused:
            outcomes.append(Refused(cluster, "PeerRefused", refused[cluster]))
            continue
        try:
            peer = PeerCluster.model_validate(raw)
        except ValidationError as exc:  # the CRD schema refuses this already; never act on it anyway
            outcomes.append(Refused(cluster, "PeerRefused", f"spec.peers: {exc}"))
            continue
        try:
            view = read_peer(clients.client(peer), name, cluster)
        except PeerUnavailable as exc:
            log.info("ConnectNamespace %s: peer %s unreachable: %s", name, cluster, exc)
            outcomes.append(Unreached(cluster, str(exc)))
            continue
        views[cluster] = view
        notes = [] if view.found else [f"cluster {cluster} has no ConnectNamespace {name!r}"]
        absent = sorted(
            {ep.service.namespace for ep in view.endpoints if not _ns_exists(ctx, ep, missing_ns)}
        )
        if absent:
            notes.append(
                "not reachable by DNS here until these Kubernetes namespaces exist in this cluster "
                f"(the operator does not create namespaces): {', '.join(absent)}"
            )
        endpoints = through_gateway(view.endpoints, peer.gateway if peer.network == "gateway" else None)
        outcomes.append(Reached(cluster, endpoints, "; ".join(notes)))
    return outcomes, views


def _ns_exists(ctx: Context, ep: Endpoint, cache: dict[str, bool]) -> bool:
    ns = ep.service.namespace
    if ns not in cache:
        cache[ns] = ctx.kube.get_or_none(NAMESPACES, ns) is not None
    return cache[ns]


def _wanted(registry: Registry, name: str, answered: set[str]) -> dict[tuple[str, str], Endpoint]:
    """The mirror Services (namespace, name) the endpoints of peers that answered call for."""
    wanted: dict[tuple[str, str], Endpoint] = {}
    for ep in registry.endpoints:
        if ep.cluster in answered:
            wanted.setdefault(mirror_key(ep, name), ep)
    return wanted


def _is_mirror(svc: Obj) -> bool:
    """Still a mirror: owned by a ConnectNamespace (a local service's headless Service never is)."""
    refs = svc["metadata"].get("ownerReferences") or []
    return any(r.get("kind") == "ConnectNamespace" for r in refs)


@dataclass
class _Mirrors:
    """The mirror Services and EndpointSlices of one ConnectNamespace here, by (namespace, Service)."""

    services: dict[tuple[str, str], Obj]
    slices: dict[tuple[str, str], list[Obj]]

    @classmethod
    def read(cls, ctx: Context, name: str) -> _Mirrors:
        selector = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CONNECT_NAMESPACE_LABEL: label_value(name)}
        services = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s
            for s in ctx.kube.list(SERVICES, None, selector)
            if (s["metadata"].get("labels") or {}).get(PEER_CLUSTER_LABEL) is not None
        }
        slices: dict[tuple[str, str], list[Obj]] = {}
        for sl in ctx.kube.list(ENDPOINT_SLICES, None, selector):
            meta = sl["metadata"]
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
            slices.setdefault((meta["namespace"], service), []).append(sl)
        return cls(services, slices)

    def remove_unwanted(
        self, ctx: Context, wanted: dict[tuple[str, str], Endpoint], unanswered: set[str]
    ) -> None:
        """Delete what no answering peer calls for; keep the last known state of peers that did not
        answer. Only objects this operator made as mirrors are touched."""
        kept = {label_value(c) for c in unanswered}
        for key, svc in list(self.services.items()):
            if key in wanted or (svc["metadata"].get("labels") or {}).get(PEER_CLUSTER_LABEL) in kept:
                continue
            for sl in self.slices.pop(key, []):
                ctx.kube.delete(ENDPOINT_SLICES, sl["metadata"]["name"], key[0])
            if _is_mirror(svc):
                ctx.kube.delete(SERVICES, key[1], key[0])
            del self.services[key]

    def create_wanted(
        self, ctx: Context, cns: Obj, wanted: dict[tuple[str, str], Endpoint], views: dict[str, PeerView]
    ) -> None:
        name = cns["metadata"]["name"]
        uid = str(cns["metadata"].get("uid", ""))
        for key, ep in sorted(wanted.items()):
            assert ep.cluster is not None
            backends = views[ep.cluster].backends.get(key, [])
            try:
                _mirror_one(ctx, ep, name, uid, backends, self.services.get(key), self.slices.get(key, []))
            except ApiError as exc:  # one endpoint's mirror must not stop the others'; retried next round
                if exc.status != 404:  # 404: the Kubernetes namespace does not exist here (reported)
                    log.warning("ConnectNamespace %s: mirroring %s/%s failed: %s", name, key[0], key[1], exc)


def _mirror_one(
    ctx: Context,
    ep: Endpoint,
    name: str,
    uid: str,
    backends: Sequence[Any],
    current: Obj | None,
    current_slices: Sequence[Obj],
) -> None:
    body = render_mirror_service(ep, name, uid, backends)
    namespace = body["metadata"]["namespace"]
    if current is None:
        current, _ = ctx.kube.create_or_get(SERVICES, body, namespace)
        if not _is_mirror(current):  # a local Service of that name: never adopt or change it
            log.warning(
                "ConnectNamespace %s: %s/%s exists and is not a mirror; left alone",
                name,
                namespace,
                body["metadata"]["name"],
            )
            return
    elif (
        current["spec"].get("ports") != body["spec"]["ports"]
        or (current["metadata"].get("labels") or {}) != body["metadata"]["labels"]
    ):
        patch = {"metadata": {"labels": body["metadata"]["labels"]}, "spec": {"ports": body["spec"]["ports"]}}
        current = ctx.kube.patch(SERVICES, body["metadata"]["name"], patch, namespace)
    desired = {
        s["metadata"]["name"]: s for s in render_mirror_slices(ep, name, current["metadata"]["uid"], backends)
    }
    have = {s["metadata"]["name"]: s for s in current_slices}
    for slice_name in have:
        if slice_name not in desired:
            ctx.kube.delete(ENDPOINT_SLICES, slice_name, namespace)
    for slice_name, sl in desired.items():
        old = have.get(slice_name)
        if old is None:
            old, created = ctx.kube.create_or_get(ENDPOINT_SLICES, sl, namespace)
            if created:
                continue
        if old.get("endpoints") != sl["endpoints"] or old.get("ports") != sl["ports"]:
            sl["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            ctx.kube.replace(ENDPOINT_SLICES, sl, namespace)
