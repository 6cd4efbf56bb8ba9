"""Linked clusters: merging a peer's endpoints into this cluster's registry (pure, clock injected).

One ConnectNamespace spans linked clusters the way a Cloud Map namespace spans ECS clusters. Each
cluster's operator stays the only writer of its own registry: it reads each peer's ConnectNamespace of
the same name (:mod:`sc_operator.peer_client`) and mirrors the peer's **own** endpoints (those without
``cluster``) into its status, each marked with ``cluster``. Endpoints a peer itself mirrored are never
mirrored again, so links do not loop; every pair of clusters that should see each other is linked
directly.

The rules, each applied here once:

- uniqueness spans the clusters: a peer endpoint whose discoveryName, (dnsName, port) or client names are
  already held here (by a local service or by another peer) is not mirrored, and the conflict is reported
  naming both owners (:func:`sc_operator.registry.find_conflict`, the same rule local registrations
  obey). A local service registering a name a peer holds is refused by the ordinary registration check,
  because mirrored endpoints are in the registry it checks against;
- a peer that cannot be read keeps its last known endpoints, marked stale with the time since when, and
  nothing else changes: the local registry is never emptied by a failure;
- a peer removed from ``spec.peers`` (unlinked) takes its endpoints with it;
- a peer linked with ``network: gateway`` has its endpoints stamped with its gateway address (``via``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sc_operator.api.common import Endpoint, GatewayAddress
from sc_operator.api.namespace import PeerGateway
from sc_operator.reconcile.conditions import set_condition
from sc_operator.registry import Registry, find_conflict
from sc_operator.validation.namespace import refused_peers

#: The ConnectNamespace condition that sums up the links.
CONDITION = "PeersSynced"
#: A reachable peer's lastSyncTime is refreshed at most this often when nothing else changed, so an idle
#: link does not rewrite the registry on every poll.
HEARTBEAT = timedelta(seconds=60)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _fmt(t: datetime) -> str:
    return t.strftime(TIME_FORMAT)


def _parse(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Reached:
    """A peer read successfully: its own endpoints (already marked with its cluster name)."""

    cluster: str
    endpoints: tuple[Endpoint, ...]
    note: str = ""
    """Said in the peer's status message (e.g. "no ConnectNamespace of this name there")."""


@dataclass(frozen=True)
class Unreached:
    """A peer that could not be read (API server down, credentials refused, Secret missing)."""

    cluster: str
    error: str


@dataclass(frozen=True)
class Refused:
    """A peer entry this operator will not act on (the rule is in ``message``); its endpoints go."""

    cluster: str
    reason: str
    message: str


Outcome = Reached | Unreached | Refused


def peer_endpoints(cluster: str, peer_status: Mapping[str, Any] | None) -> tuple[Endpoint, ...]:
    """The peer's own endpoints from its ConnectNamespace status, marked as ``cluster``'s.

    Endpoints the peer mirrored from elsewhere carry ``cluster`` there and are skipped: each cluster
    publishes only what it registered itself."""
    out = []
    for raw in (peer_status or {}).get("endpoints") or []:
        ep = Endpoint.model_validate(raw)
        if ep.local:
            out.append(ep.model_copy(update={"cluster": cluster}))
    return tuple(out)


def through_gateway(endpoints: Sequence[Endpoint], gateway: PeerGateway | None) -> tuple[Endpoint, ...]:
    """A peer's endpoints as this cluster's clients reach them: with ``network: gateway``, each carries
    the peer's gateway address (``via``), which the clients' proxies dial instead of the tasks; flat
    peers' endpoints carry none (their tasks are dialled directly)."""
    via = None if gateway is None else GatewayAddress(address=gateway.address, port=gateway.port)
    return tuple(ep.model_copy(update={"via": via}) for ep in endpoints)


@dataclass(frozen=True)
class Merge:
    """The registry's endpoints after mirroring one peer, and what was refused."""

    endpoints: tuple[Endpoint, ...]
    mirrored: tuple[Endpoint, ...]
    conflicts: tuple[str, ...] = ()


def merge_peer(endpoints: Sequence[Endpoint], cluster: str, wanted: Sequence[Endpoint]) -> Merge:
    """Replace ``cluster``'s mirrored endpoints in ``endpoints`` by ``wanted``, leaving out (and
    reporting) each one whose names another owner already holds here."""
    others = [ep for ep in endpoints if ep.cluster != cluster]
    accepted: list[Endpoint] = []
    conflicts: list[str] = []
    for ep in sorted(wanted, key=lambda e: (e.discovery_name, e.dns_name, e.port)):
        conflict = find_conflict([ep], others)
        if conflict is not None:
            conflicts.append(
                f"[{conflict.rule}] endpoint {ep.discovery_name!r} of ConnectService {ep.owner()} is not "
                f"mirrored: {conflict.message}"
            )
            continue
        accepted.append(ep)
        others.append(ep)
    return Merge(endpoints=tuple(others), mirrored=tuple(accepted), conflicts=tuple(conflicts))


@dataclass(frozen=True)
class PeerState:
    """One entry of ``status.peers``."""

    cluster: str
    reachable: bool
    stale: bool = False
    last_sync_time: datetime | None = None
    unreachable_since: datetime | None = None
    message: str = ""
    endpoint_count: int = 0
    conflicts: tuple[str, ...] = field(default=())

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> PeerState:
        return cls(
            cluster=str(raw.get("cluster", "")),
            reachable=bool(raw.get("reachable")),
            stale=bool(raw.get("stale")),
            last_sync_time=_parse(raw.get("lastSyncTime")),
            unreachable_since=_parse(raw.get("unreachableSince")),
            message=str(raw.get("message") or ""),
            endpoint_count=int(raw.get("endpointCount") or 0),
            conflicts=tuple(str(c) for c in raw.get("conflicts") or []),
        )

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cluster": self.cluster,
            "reachable": self.reachable,
            "stale": self.stale,
            "message": self.message,
            "endpointCount": self.endpoint_count,
        }
        if self.last_sync_time is not None:
            out["lastSyncTime"] = _fmt(self.last_sync_time)
        if self.unreachable_since is not None:
            out["unreachableSince"] = _fmt(self.unreachable_since)
        if self.conflicts:
            out["conflicts"] = list(self.conflicts)
        return out

    def same_news(self, other: PeerState) -> bool:
        """Equal but for the timestamps: nothing a reader needs to hear again."""
        return replace(self, last_sync_time=None, unreachable_since=None) == replace(
            other, last_sync_time=None, unreachable_since=None
        )


def next_state(
    previous: PeerState | None, outcome: Outcome, mirrored: int, conflicts: Sequence[str], now: datetime
) -> PeerState:
    """The peer's status entry after ``outcome`` at ``now``."""
    cluster = outcome.cluster
    if isinstance(outcome, Reached):
        state = PeerState(
            cluster=cluster,
            reachable=True,
            last_sync_time=now,
            message=(f"{mirrored} endpoint(s) mirrored" + (f"; {outcome.note}" if outcome.note else "")),
            endpoint_count=mirrored,
            conflicts=tuple(conflicts),
        )
        if (
            previous is not None
            and previous.same_news(state)
            and previous.last_sync_time is not None
            and now - previous.last_sync_time < HEARTBEAT
        ):
            return previous  # nothing new: no write
        return state
    if isinstance(outcome, Refused):
        return PeerState(cluster=cluster, reachable=False, message=outcome.message)
    last_sync = previous.last_sync_time if previous is not None else None
    since = (previous.unreachable_since if previous is not None else None) or now
    kept = previous.endpoint_count if previous is not None else 0
    seen = f"as last read at {_fmt(last_sync)}" if last_sync is not None else "(never read)"
    message = (
        f"unreachable since {_fmt(since)}: {outcome.error}; its {kept} endpoint(s) are kept {seen} "
        "and marked stale"
    )
    return PeerState(
        cluster=cluster,
        reachable=False,
        stale=True,
        last_sync_time=last_sync,
        unreachable_since=since,
        message=message,
        endpoint_count=kept,
        conflicts=previous.conflicts if previous is not None else (),
    )


def sync(reg: Registry, outcomes: Sequence[Outcome], now: datetime) -> Registry | None:
    """The registry after one round of reading the peers (``None``: nothing to write).

    ``outcomes`` holds one entry per peer in ``spec.peers``, in order; mirrored endpoints of clusters not
    among them (unlinked) are removed. The revision grows when the endpoint list changes (clients pin it),
    not when only the peers' status does."""
    linked = {o.cluster for o in outcomes}
    endpoints: tuple[Endpoint, ...] = tuple(ep for ep in reg.endpoints if ep.local or ep.cluster in linked)
    previous = {s.cluster: s for s in (PeerState.from_status(raw) for raw in reg.extra.get("peers") or [])}
    states: list[PeerState] = []
    for outcome in outcomes:
        if isinstance(outcome, Reached):
            merge = merge_peer(endpoints, outcome.cluster, outcome.endpoints)
            endpoints = merge.endpoints
            states.append(
                next_state(previous.get(outcome.cluster), outcome, len(merge.mirrored), merge.conflicts, now)
            )
        elif isinstance(outcome, Refused):
            endpoints = tuple(ep for ep in endpoints if ep.cluster != outcome.cluster)
            states.append(next_state(previous.get(outcome.cluster), outcome, 0, (), now))
        else:  # keep what we had: a failure never removes endpoints
            states.append(next_state(previous.get(outcome.cluster), outcome, 0, (), now))
    key = lambda e: (e.discovery_name, e.dns_name, e.port)  # noqa: E731
    endpoints = tuple(sorted(endpoints, key=key))
    extra = dict(reg.extra)
    if states:
        extra["peers"] = [s.to_status() for s in states]
    else:
        extra.pop("peers", None)
    status, reason, message = summary(states)
    if states or extra.get("conditions"):
        conditions = extra.get("conditions") or []
        if states or any(c.get("type") == CONDITION for c in conditions):
            extra["conditions"] = set_condition(conditions, CONDITION, status, reason, message)
    changed_endpoints = endpoints != reg.endpoints
    if not changed_endpoints and extra == reg.extra:
        return None
    return replace(
        reg,
        endpoints=endpoints,
        revision=reg.revision + 1 if changed_endpoints else reg.revision,
        extra=extra,
    )


def summary(states: Sequence[PeerState]) -> tuple[str, str, str]:
    """The PeersSynced condition: (status, reason, message)."""
    if not states:
        return "True", "NoPeers", "no linked clusters"
    refused = [s for s in states if not s.reachable and not s.stale]
    stale = [s for s in states if s.stale]
    conflicting = [s for s in states if s.conflicts]
    if refused:
        return "False", "PeerRefused", "; ".join(f"cluster {s.cluster}: {s.message}" for s in refused)
    if stale:
        return "False", "PeerUnreachable", "; ".join(f"cluster {s.cluster} {s.message}" for s in stale)
    if conflicting:
        return "False", "NameConflict", "; ".join(c for s in conflicting for c in s.conflicts)
    mirrored = sum(s.endpoint_count for s in states)
    return "True", "Synced", f"{len(states)} linked cluster(s) read; {mirrored} endpoint(s) mirrored"


def check_peers(own_cluster: str, peers: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per refused cluster name, why (rule and field named): the rules of
    :func:`sc_operator.validation.namespace.refused_peers`, which the admission webhook and ``scctl
    validate`` apply too (without the own-name rule)."""
    refused: dict[str, str] = {}
    for name, violation in refused_peers(peers, own_cluster):
        refused.setdefault(name, str(violation))
    return refused


def transitions(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    """Events for what changed in ``status.peers``: (type, reason, message), one per news.

    A peer turning unreachable or refused is a Warning, its return a Normal event, a new conflict a
    Warning; a peer that stays as it was says nothing (the poll repeats every few seconds)."""
    old = {s.cluster: s for s in (PeerState.from_status(raw) for raw in before)}
    events: list[tuple[str, str, str]] = []
    for state in (PeerState.from_status(raw) for raw in after):
        prev = old.get(state.cluster)
        if state.stale and (prev is None or not prev.stale):
            events.append(("Warning", "PeerUnreachable", f"cluster {state.cluster} {state.message}"))
        elif not state.reachable and not state.stale and (prev is None or prev.message != state.message):
            events.append(("Warning", "PeerRefused", f"cluster {state.cluster}: {state.message}"))
        elif state.reachable and (prev is None or not prev.reachable):
            events.append(("Normal", "PeerSynced", f"cluster {state.cluster}: {state.message}"))
        for conflict in state.conflicts:
            if prev is None or conflict not in prev.conflicts:
                events.append(("Warning", "NameConflict", conflict))
    return events
