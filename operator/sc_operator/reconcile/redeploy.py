"""Redeploys of an unchanged definition: forceNewDeployment and the autoRedeploy policy (I/O side).

The decisions are :mod:`sc_operator.redeploy`'s (pure). This module reads what they need, records the
policy's verdict in the ``AutoRedeploy`` condition, and leaves the redeploy itself to
:func:`sc_operator.reconcile.service.reconcile_service`, which takes the same decision again under the
service's lock before it creates anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from sc_operator.api import ConnectServiceSpec
from sc_operator.api.common import ServiceRef
from sc_operator.api.service import AutoRedeploy
from sc_operator.kube import CONNECT_SERVICES, Obj
from sc_operator.reconcile.conditions import get_condition, set_condition
from sc_operator.reconcile.context import Context
from sc_operator.reconcile.deployments import Rollout, list_rollouts
from sc_operator.redeploy import AutoDecision, Current, Policy, decide_auto_redeploy, resolve_policy
from sc_operator.registry import Registry

log = logging.getLogger(__name__)

CONDITION = "AutoRedeploy"


def policy_of(ctx: Context, spec: ConnectServiceSpec, connect_ns: str | None) -> Policy:
    """The effective policy; the ConnectNamespace is consulted only when the service leaves it open."""
    own = spec.auto_redeploy
    if own is not None and own.on_new_endpoints is not None and own.min_interval_seconds is not None:
        return resolve_policy(own, None)
    return resolve_policy(own, ctx.namespace_policy(connect_ns) if connect_ns else None)


def policy_applies(ctx: Context, raw_spec: Mapping[str, Any], connect_ns: str | None) -> bool:
    """Cheap test on a watch event's body (no request, no parse of the whole spec): is the policy on?"""
    if not connect_ns:
        return False
    raw = raw_spec.get("autoRedeploy")
    try:
        own = AutoRedeploy.model_validate(raw) if isinstance(raw, dict) else None
    except ValueError:
        return False  # refused by the schema; the reconcile reports the spec
    if own is not None and own.on_new_endpoints is not None:
        return own.on_new_endpoints
    return resolve_policy(own, ctx.namespace_policy(connect_ns)).on_new_endpoints


def current_of(rollout: Rollout) -> Current:
    return Current(
        name=rollout.name,
        rollout_state=rollout.status.get("rolloutState"),
        rollback=bool(rollout.rollback_from),
        last_auto_redeploy=rollout.last_auto_redeploy,
    )


def auto_decision(
    ctx: Context,
    ref: ServiceRef,
    spec: ConnectServiceSpec,
    connect_ns: str | None,
    primary: Rollout,
    registry: Registry | None,
) -> AutoDecision | None:
    """The policy's verdict, or None when the policy is off or the service joins no namespace."""
    if connect_ns is None or registry is None:
        return None
    policy = policy_of(ctx, spec, connect_ns)
    if not policy.on_new_endpoints:
        return None
    return decide_auto_redeploy(
        policy, current_of(primary), list(primary.spec.endpoints or []), registry.endpoints, ref, ctx.clock()
    )


def condition_patch(service: Obj, decision: AutoDecision) -> list[dict[str, object]] | None:
    """The service's conditions with ``AutoRedeploy`` set to the verdict; None when nothing changes.

    True: the current deployment pins every endpoint, or a redeploy to pin them has been started."""
    status = service.get("status") or {}
    before = get_condition(status.get("conditions"), CONDITION)
    value = "True" if decision.redeploy or decision.reason == "UpToDate" else "False"
    if before is not None and (before.get("status"), before.get("reason"), before.get("message")) == (
        value,
        decision.reason,
        decision.message,
    ):
        return None
    return set_condition(status.get("conditions"), CONDITION, value, decision.reason, decision.message)


def check_auto_redeploy(ctx: Context, namespace: str, name: str, reconcile: Callable[[], None]) -> bool:
    """For the resync timer: redeploy (through ``reconcile``) when the policy says so, else record why
    not (the caller has checked that the policy is on: :func:`policy_applies`). True when it redeployed."""
    with ctx.service_lock(namespace, name):
        service = ctx.kube.get_or_none(CONNECT_SERVICES, name, namespace)
        if service is None or service["metadata"].get("deletionTimestamp"):
            return False
        status = service.get("status") or {}
        accepted = get_condition(status.get("conditions"), "Accepted")
        connect_ns = status.get("namespace")
        if accepted is None or accepted.get("status") != "True" or not connect_ns:
            return False
        try:
            spec = ConnectServiceSpec.model_validate(service.get("spec") or {})
        except ValueError:
            return False
        if not policy_of(ctx, spec, connect_ns).on_new_endpoints:
            return False
        rollouts = list_rollouts(ctx.kube, namespace, name)
        entry = ctx.registry.registries().get(str(connect_ns))
        if not rollouts or entry is None:
            return False
        ref = ServiceRef(namespace=namespace, name=name)
        decision = auto_decision(ctx, ref, spec, str(connect_ns), rollouts[-1], entry[1])
        if decision is None:
            return False
        if not decision.redeploy:
            conditions = condition_patch(service, decision)
            if conditions is not None:
                ctx.kube.patch_status(CONNECT_SERVICES, name, {"conditions": conditions}, namespace)
            return False
    log.info("ConnectService %s/%s: %s", namespace, name, decision.message)
    reconcile()
    return True
