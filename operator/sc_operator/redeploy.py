"""When a service is redeployed without a change of its definition (pure functions, clock injected).

Two triggers re-pin the namespace's endpoints into a new ConnectDeployment of the same definition:

- ``spec.forceNewDeployment`` (ECS ``update-service --force-new-deployment``): a token that differs from
  the one the current deployment was started with. Tokens are compared for equality only, so setting
  the same value again does nothing, and removing the field does nothing either.
- ``spec.autoRedeploy`` (ours, off by default): endpoints of other services were added to the namespace
  since the current deployment pinned it. It never acts while the current rollout is in progress, nor
  after the circuit breaker failed it or rolled it back (the user decides what comes next), and at most
  once per ``minIntervalSeconds``: the time of the last automatic redeploy travels from each
  ConnectDeployment to the next (annotation), so it survives restarts and the pruning of old ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.api.service import AutoRedeploy, RolloutState

DEFAULT_MIN_INTERVAL_SECONDS = 300

#: Condition-style reasons, also the ConnectDeployment's ``serviceconnect.dev/redeploy-reason``.
FORCED = "ForceNewDeployment"
NEW_ENDPOINTS = "NewEndpoints"


@dataclass(frozen=True)
class Policy:
    """The effective autoRedeploy policy of one service, and where it came from."""

    on_new_endpoints: bool = False
    min_interval_seconds: int = DEFAULT_MIN_INTERVAL_SECONDS
    source: str = "default"
    """``service``, ``namespace`` or ``default``: named in messages so users know what to change."""


def resolve_policy(service: AutoRedeploy | None, namespace: AutoRedeploy | None) -> Policy:
    """The service's fields where set, else the ConnectNamespace's, else off / 300 s."""
    on, on_src = False, "default"
    interval = DEFAULT_MIN_INTERVAL_SECONDS
    for layer, src in ((namespace, "namespace"), (service, "service")):
        if layer is None:
            continue
        if layer.on_new_endpoints is not None:
            on, on_src = layer.on_new_endpoints, src
        if layer.min_interval_seconds is not None:
            interval = layer.min_interval_seconds
    return Policy(on_new_endpoints=on, min_interval_seconds=interval, source=on_src)


def force_requested(token: str | None, recorded: str | None) -> bool:
    """A new deployment is forced when a token is set and differs from the current deployment's."""
    return bool(token) and token != recorded


def endpoint_label(ep: Endpoint) -> str:
    return f"{ep.dns_name}:{ep.port}"


def _key(ep: Endpoint) -> tuple[str, str, int, bool]:
    # TLS is part of what a client pinned: a switch is news too (the client must re-pin to follow it).
    return (ep.discovery_name, ep.dns_name, ep.port, bool(ep.tls))


def unpinned_endpoints(
    pinned: Iterable[Endpoint], current: Iterable[Endpoint], service: ServiceRef
) -> tuple[Endpoint, ...]:
    """Endpoints of other services in the namespace now that the deployment did not pin.

    The service's own endpoints are left out (a change of them is a change of its definition, which
    makes a new deployment anyway); removed endpoints are not news (ECS clients keep them too, and the
    proxy finds no task behind them)."""
    seen = {_key(ep) for ep in pinned}
    me = (service.namespace, service.name)
    return tuple(
        ep
        for ep in current
        if (not ep.local or (ep.service.namespace, ep.service.name) != me) and _key(ep) not in seen
    )


@dataclass(frozen=True)
class Current:
    """What the decision needs of the service's newest (PRIMARY) ConnectDeployment."""

    name: str
    rollout_state: RolloutState | None
    """``None``: no status written yet, i.e. just created, in progress."""
    rollback: bool
    """It was created by a circuit-breaker rollback."""
    last_auto_redeploy: datetime | None = None
    """When the policy last started a deployment of this service (this one or an earlier one)."""


@dataclass(frozen=True)
class AutoDecision:
    """Whether to redeploy now; ``reason`` is a CamelCase word, ``message`` says why for people."""

    redeploy: bool
    reason: str
    message: str
    new_endpoints: tuple[str, ...] = ()
    not_before: datetime | None = None
    """When rate-limited: the earliest time the policy may act."""


def decide_auto_redeploy(
    policy: Policy,
    current: Current,
    pinned: Iterable[Endpoint],
    namespace_endpoints: Iterable[Endpoint],
    service: ServiceRef,
    now: datetime,
) -> AutoDecision:
    """The autoRedeploy decision for one service whose definition did not change."""
    if not policy.on_new_endpoints:
        return AutoDecision(False, "Disabled", "autoRedeploy.onNewEndpoints is off")
    added = unpinned_endpoints(pinned, namespace_endpoints, service)
    labels = tuple(sorted(endpoint_label(ep) for ep in added))
    if not added:
        return AutoDecision(False, "UpToDate", f"deployment {current.name} pins every endpoint")
    shown = ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")
    if current.rollback or current.rollout_state == "FAILED":
        why = "rolled back" if current.rollback else "failed"
        return AutoDecision(
            False,
            "CircuitBreaker",
            f"new endpoints ({shown}) not picked up automatically: the circuit breaker {why} deployment "
            f"{current.name}; change the spec or set forceNewDeployment",
            labels,
        )
    if current.rollout_state != "COMPLETED":
        return AutoDecision(
            False,
            "RolloutInProgress",
            f"new endpoints ({shown}) wait for deployment {current.name} to complete",
            labels,
        )
    last = current.last_auto_redeploy
    not_before = last + timedelta(seconds=policy.min_interval_seconds) if last is not None else None
    if not_before is not None and now < not_before:
        return AutoDecision(
            False,
            "RateLimited",
            f"new endpoints ({shown}) wait until {not_before:%Y-%m-%dT%H:%M:%SZ} (minIntervalSeconds "
            f"{policy.min_interval_seconds} after the last automatic redeploy)",
            labels,
            not_before,
        )
    return AutoDecision(
        True,
        NEW_ENDPOINTS,
        f"autoRedeploy ({policy.source} policy): new endpoints in the namespace: {shown}",
        labels,
    )
