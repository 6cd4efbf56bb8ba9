"""The ConnectNamespace status as the registry of endpoints (the Cloud Map namespace of ECS).

Two layers:

- pure functions (:func:`register`, :func:`deregister`, :func:`set_tasks`) that take a :class:`Registry`
  and return a new one, or ``None`` when nothing changes — so callers never write a no-op and the
  ``revision`` grows exactly once per real change of the endpoint set or of the member services;
- :func:`update_registry`, the I/O wrapper: read the ConnectNamespace, apply a pure change, replace the
  status subresource with the ``resourceVersion`` that was read, and on ``409 Conflict`` re-read and retry
  with jittered backoff. Optimistic concurrency on one object is what makes many services registering at
  once lose and double nothing.

Task counts are statistics (they feed the proxy's +128 MiB rule): they are updated without a revision
bump, because the revision tracks what clients pin, i.e. the endpoint list.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from sc_operator import API_VERSION
from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.kube import CONNECT_NAMESPACES, METADATA_LIST, ApiError, Kube, Obj
from sc_operator.validation.names import name_collisions


class RegistryConflict(Exception):
    """An endpoint another service already holds: the ECS rule that discovery names and
    (dnsName, port) pairs are unique within a namespace."""

    def __init__(self, rule: str, message: str, holder: ServiceRef) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.holder = holder


class NamespaceNotFound(Exception):
    """The ConnectNamespace does not exist (or went away while we updated it)."""


@dataclass(frozen=True)
class Member:
    """A ConnectService in the namespace (client-only services too: they count for sizing)."""

    service: ServiceRef
    tasks: int = 0


def _ep_key(ep: Endpoint) -> tuple[str, str, int]:
    return (ep.discovery_name, ep.dns_name, ep.port)


def _member_key(m: Member) -> tuple[str, str]:
    return (m.service.namespace, m.service.name)


def _ref_key(ref: ServiceRef) -> tuple[str, str]:
    # Tuples, not ServiceRef.__eq__ (pydantic's, slow): every change scans the whole registry.
    return (ref.namespace, ref.name)


@dataclass(frozen=True)
class Registry:
    """What a ConnectNamespace's status says about its services; kept sorted so equal means equal."""

    endpoints: tuple[Endpoint, ...] = ()
    members: tuple[Member, ...] = ()
    revision: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def service_count(self) -> int:
        return len(self.members)

    @property
    def task_count(self) -> int:
        return sum(m.tasks for m in self.members)

    def endpoints_of(self, service: ServiceRef) -> tuple[Endpoint, ...]:
        """The endpoints ``service`` of this cluster registered (mirrored ones never belong to it)."""
        key = _ref_key(service)
        return tuple(ep for ep in self.endpoints if ep.local and _ref_key(ep.service) == key)

    def holders(self) -> list[ServiceRef]:
        """Every member service, sorted: who keeps the namespace from being deleted."""
        return [m.service for m in self.members]

    # -- wire format -------------------------------------------------------------------------------------

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> Registry:
        """Read the registry from a ConnectNamespace's ``.status`` (missing parts are empty)."""
        status = dict(status or {})
        endpoints = tuple(
            sorted((Endpoint.model_validate(e) for e in status.pop("endpoints", None) or []), key=_ep_key)
        )
        members = tuple(
            sorted(
                (
                    Member(ServiceRef(namespace=m["namespace"], name=m["name"]), int(m.get("tasks") or 0))
                    for m in status.pop("services", None) or []
                ),
                key=_member_key,
            )
        )
        revision = int(status.pop("revision", 0) or 0)
        status.pop("serviceCount", None)
        status.pop("endpointCount", None)
        status.pop("taskCount", None)
        return cls(endpoints=endpoints, members=members, revision=revision, extra=status)

    def to_status(self) -> dict[str, Any]:
        """The ``.status`` to write back, keeping fields this module does not own (conditions, …)."""
        return {
            **self.extra,
            "endpoints": [
                ep.model_dump(mode="json", by_alias=True, exclude_none=True) for ep in self.endpoints
            ],
            "services": [
                {"namespace": m.service.namespace, "name": m.service.name, "tasks": m.tasks}
                for m in self.members
            ],
            "revision": self.revision,
            "endpointCount": len(self.endpoints),
            "serviceCount": self.service_count,
            "taskCount": self.task_count,
        }


# -- pure changes -----------------------------------------------------------------------------------------


def check_conflicts(reg: Registry, service: ServiceRef, endpoints: Iterable[Endpoint]) -> None:
    """Raise :class:`RegistryConflict` if another service holds a discoveryName or dnsName:port, or one
    of the names clients may use (:mod:`sc_operator.validation.names`). Endpoints mirrored from linked
    clusters are held by others, whatever their service's name."""
    key = _ref_key(service)
    others = [ep for ep in reg.endpoints if not ep.local or _ref_key(ep.service) != key]
    conflict = find_conflict(endpoints, others)
    if conflict is not None:
        raise conflict


def find_conflict(endpoints: Iterable[Endpoint], others: Sequence[Endpoint]) -> RegistryConflict | None:
    """The first rule ``endpoints`` break against the endpoints ``others`` hold (``None``: none).

    One place for the namespace's uniqueness rules, used for local registrations and for endpoints
    mirrored from linked clusters alike (:mod:`sc_operator.peers`)."""
    by_discovery = {ep.discovery_name: ep for ep in others}
    by_alias = {(ep.dns_name, ep.port): ep for ep in others}
    endpoints = list(endpoints)
    for ep in endpoints:
        held = by_discovery.get(ep.discovery_name)
        if held is not None:
            return RegistryConflict(
                "DuplicateDiscoveryName",
                f"discoveryName {ep.discovery_name!r} is already registered in the namespace by "
                f"ConnectService {held.owner()}: discovery names must be unique within a namespace",
                held.service,
            )
        held = by_alias.get((ep.dns_name, ep.port))
        if held is not None:
            return RegistryConflict(
                "DuplicateClientAlias",
                f"client alias {ep.dns_name}:{ep.port} is already registered in the namespace by "
                f"ConnectService {held.owner()}: each (dnsName, port) must be unique within a namespace",
                held.service,
            )
    collisions = name_collisions(endpoints, others)
    if collisions:
        first = collisions[0]
        return RegistryConflict("ClientNameCollision", first.message(), first.held.service)
    return None


def register(
    reg: Registry, service: ServiceRef, endpoints: Iterable[Endpoint], tasks: int | None = None
) -> Registry | None:
    """Make ``service`` a member owning exactly ``endpoints`` (replacing what it had).

    Idempotent: registering the same set again returns ``None``. Raises :class:`RegistryConflict` when
    another service holds one of the names. ``tasks`` (when given) updates the service's task count.
    """
    wanted = tuple(sorted({_ep_key(ep): ep for ep in endpoints}.values(), key=_ep_key))
    for ep in wanted:
        if ep.service != service or not ep.local:
            raise ValueError(f"endpoint {ep.discovery_name} belongs to {ep.service}, not {service}")
    check_conflicts(reg, service, wanted)
    key = _ref_key(service)
    current_member = next((m for m in reg.members if _member_key(m) == key), None)
    old_tasks = current_member.tasks if current_member else 0
    new_member = Member(service, tasks if tasks is not None else old_tasks)
    endpoints_changed = reg.endpoints_of(service) != wanted or current_member is None
    if not endpoints_changed and current_member == new_member:
        return None
    members = tuple(sorted([*(m for m in reg.members if _member_key(m) != key), new_member], key=_member_key))
    all_endpoints = tuple(
        sorted(
            [*(ep for ep in reg.endpoints if not ep.local or _ref_key(ep.service) != key), *wanted],
            key=_ep_key,
        )
    )
    return replace(
        reg,
        endpoints=all_endpoints,
        members=members,
        revision=reg.revision + 1 if endpoints_changed else reg.revision,
    )


def deregister(reg: Registry, service: ServiceRef) -> Registry | None:
    """Remove ``service`` and its endpoints; ``None`` if it was not registered."""
    if not any(m.service == service for m in reg.members) and not reg.endpoints_of(service):
        return None
    return replace(
        reg,
        endpoints=tuple(ep for ep in reg.endpoints if not ep.local or ep.service != service),
        members=tuple(m for m in reg.members if m.service != service),
        revision=reg.revision + 1,
    )


def set_tasks(reg: Registry, service: ServiceRef, tasks: int) -> Registry | None:
    """Record how many tasks ``service`` runs (no revision bump); ``None`` if unchanged or not a member."""
    members = []
    changed = False
    for m in reg.members:
        if m.service == service and m.tasks != tasks:
            members.append(Member(service, tasks))
            changed = True
        else:
            members.append(m)
    return replace(reg, members=tuple(members)) if changed else None


# -- I/O --------------------------------------------------------------------------------------------------


Change = Callable[[Registry], "Registry | None"]


def apply_changes(
    reg: Registry, changes: Sequence[Change]
) -> tuple[Registry | None, list[RegistryConflict | None]]:
    """Apply ``changes`` in order (pure): the resulting registry (``None`` if nothing changed) and, per
    change, the conflict that refused it (a refused change is skipped; the others still apply)."""
    current = reg
    outcomes: list[RegistryConflict | None] = []
    for change in changes:
        try:
            new = change(current)
        except RegistryConflict as exc:
            outcomes.append(exc)
            continue
        outcomes.append(None)
        if new is not None:
            current = new
    return (current if current is not reg else None), outcomes


@dataclass(frozen=True)
class Versioned:
    """A registry as stored at one ``resourceVersion`` of its ConnectNamespace."""

    resource_version: str
    registry: Registry


def _put_status(kube: Kube, namespace: str, resource_version: str, reg: Registry) -> str:
    """Replace the status at ``resource_version`` (409 if it moved); the new resourceVersion."""
    body = {
        "apiVersion": API_VERSION,
        "kind": "ConnectNamespace",
        "metadata": {"name": namespace, "resourceVersion": resource_version},
        "status": reg.to_status(),
    }
    written = kube.request("PUT", CONNECT_NAMESPACES.path(None, namespace, "status"), body)
    return str(written["metadata"]["resourceVersion"])


def _read(kube: Kube, namespace: str) -> Versioned:
    try:
        obj = kube.get(CONNECT_NAMESPACES, namespace)
    except ApiError as exc:
        if exc.status == 404:
            raise NamespaceNotFound(f"ConnectNamespace {namespace!r} does not exist") from exc
        raise
    return Versioned(str(obj["metadata"]["resourceVersion"]), Registry.from_status(obj.get("status")))


def update_registry_batch(
    kube: Kube,
    namespace: str,
    changes: Sequence[Change],
    *,
    attempts: int = 50,
    base_delay: float = 0.02,
    max_delay: float = 1.0,
    known: Versioned | None = None,
) -> tuple[Versioned, list[RegistryConflict | None]]:
    """Apply ``changes`` to ConnectNamespace ``namespace``'s status in one write, optimistically.

    Each attempt reads the object, applies the pure changes and replaces the status with the
    ``resourceVersion`` it read; a ``409`` means someone else wrote in between, so it re-reads and retries
    after a jittered, growing delay. Returns the registry as written (or as read, when nothing changed) with
    its resourceVersion, and each change's outcome (``None``, or the :class:`RegistryConflict` that
    refused it).

    ``known``: the state this process last wrote or read. The first attempt writes on top of it without
    reading (a 409 says it is stale); a verdict that writes nothing or refuses a change is only trusted
    from a fresh read, so a stale ``known`` can cost a request, never a wrong answer.
    """
    delay = base_delay
    for _ in range(attempts):
        current = known if known is not None else _read(kube, namespace)
        new, outcomes = apply_changes(current.registry, changes)
        if known is not None and (new is None or any(o is not None for o in outcomes)):
            known = None
            continue  # confirm against the stored object
        if new is None:
            return current, outcomes
        try:
            return Versioned(_put_status(kube, namespace, current.resource_version, new), new), outcomes
        except ApiError as exc:
            if exc.status == 404:
                raise NamespaceNotFound(f"ConnectNamespace {namespace!r} does not exist") from exc
            if exc.status != 409:
                raise
        if known is not None:
            known = None
            continue  # our copy was stale: read, no need to back off
        # Full jitter: many writers that collided should not collide again in lockstep.
        time.sleep(random.uniform(0, delay))
        delay = min(max_delay, delay * 2)
    raise RuntimeError(
        f"ConnectNamespace {namespace!r}: status update kept conflicting after {attempts} attempts"
    )


def update_registry(kube: Kube, namespace: str, change: Change) -> Registry:
    """Apply one change with optimistic concurrency; raises its :class:`RegistryConflict` if refused."""
    written, (outcome,) = update_registry_batch(kube, namespace, [change])
    if outcome is not None:
        raise outcome
    return written.registry


class RegistryWriter:
    """Combines concurrent changes to one ConnectNamespace into one write, and remembers registries.

    When many services register at once, every writer of the same object would otherwise collide (409)
    and retry, spending two requests per attempt. Here the first caller becomes the leader and writes
    everything queued in one read-modify-write, repeatedly, while later callers wait for their outcome.
    Optimistic concurrency still guards against other processes (kubectl, a second operator).

    Parsed registries are kept by (name, resourceVersion): the leader writes on top of what it wrote last
    without reading it back, and :meth:`registries` lists ConnectNamespaces as metadata only, parsing
    only versions it has not seen. A burst of n registrations would otherwise read and parse the O(n)
    registry twice per service.
    """

    def __init__(self, kube: Kube, remember: int = 64) -> None:
        self.kube = kube
        self._lock = threading.Lock()
        self._queues: dict[str, list[tuple[Change, Future[Registry]]]] = {}
        self._busy: set[str] = set()
        self._remember = remember
        self._seen: OrderedDict[tuple[str, str], Registry] = OrderedDict()
        self._latest: dict[str, Versioned] = {}

    def _note(self, namespace: str, version: Versioned) -> None:
        with self._lock:
            self._seen[(namespace, version.resource_version)] = version.registry
            self._seen.move_to_end((namespace, version.resource_version))
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
            self._latest[namespace] = version

    def registries(self) -> dict[str, tuple[Obj, Registry]]:
        """Every ConnectNamespace (its metadata) and its registry, from the API server's cache."""
        listing = self.kube.request(
            "GET", CONNECT_NAMESPACES.path(), query={"resourceVersion": "0"}, accept=METADATA_LIST
        )
        metas = [item["metadata"] for item in listing.get("items") or []]
        out: dict[str, tuple[Obj, Registry]] = {}
        with self._lock:
            for meta in metas:
                hit = self._seen.get((meta["name"], str(meta["resourceVersion"])))
                latest = self._latest.get(meta["name"])
                if (
                    hit is not None
                    and latest is not None
                    and latest.resource_version != meta["resourceVersion"]
                ):
                    # The cache (resourceVersion 0) lags behind a version this process saw later, which it
                    # wrote or read consistently on top of this one: that one is newer.
                    meta = {**meta, "resourceVersion": latest.resource_version}
                    hit = latest.registry
                if hit is not None:
                    out[meta["name"]] = ({"metadata": meta}, hit)
        if len(out) < len(metas):  # versions written by someone else (or before a restart)
            for obj in self.kube.list(CONNECT_NAMESPACES):
                meta = obj["metadata"]
                if meta["name"] not in out:
                    version = Versioned(str(meta["resourceVersion"]), Registry.from_status(obj.get("status")))
                    self._note(meta["name"], version)
                    out[meta["name"]] = ({"metadata": meta}, version.registry)
        return out

    def update(self, namespace: str, change: Change) -> Registry:
        """Like :func:`update_registry`, batched with concurrent callers."""
        future: Future[Registry] = Future()
        with self._lock:
            self._queues.setdefault(namespace, []).append((change, future))
            leader = namespace not in self._busy
            if leader:
                self._busy.add(namespace)
        if leader:
            self._lead(namespace)
        return future.result()

    def _lead(self, namespace: str) -> None:
        while True:
            with self._lock:
                batch = self._queues.pop(namespace, [])
                if not batch:
                    self._busy.discard(namespace)
                    return
                known = self._latest.get(namespace)
            try:
                written, outcomes = update_registry_batch(
                    self.kube, namespace, [c for c, _ in batch], known=known
                )
            except BaseException as exc:  # every waiter learns why (NamespaceNotFound, API errors)
                with self._lock:
                    self._latest.pop(namespace, None)
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            self._note(namespace, written)
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if outcome is None:
                    fut.set_result(written.registry)
                else:
                    fut.set_exception(outcome)
