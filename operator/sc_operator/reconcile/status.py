"""Refresh a service's rollout status from what Kubernetes shows, and act on the circuit breaker.

Reads the service's ConnectDeployments, its Deployment and its pods (one list call: every pod carries
the service and ConnectDeployment labels), computes the ECS states with :mod:`sc_operator.rollout`, writes
what changed, and performs a rollback when the breaker asks for one: a new ConnectDeployment copying the
last COMPLETED one's snapshot, rendered into the Deployment. The user's spec is never rewritten.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sc_operator.api import ConnectServiceSpec
from sc_operator.api.common import ServiceRef
from sc_operator.kube import CONNECT_DEPLOYMENTS, CONNECT_SERVICES, DEPLOYMENTS, NAMESPACES, PODS, Obj
from sc_operator.reconcile.conditions import add_event, get_condition, now
from sc_operator.reconcile.context import Context
from sc_operator.reconcile.deployments import (
    FORCE_TOKEN_ANNOTATION,
    NS_SERVICES_ANNOTATION,
    NS_TASKS_ANNOTATION,
    ROLLBACK_FROM_ANNOTATION,
    ROLLBACK_TO_ANNOTATION,
    Rollout,
    create_rollout,
    initial_status,
    list_rollouts,
    materialise,
    prune_inactive,
    render_inputs,
)
from sc_operator.registry import NamespaceNotFound, set_tasks
from sc_operator.render import interception_mode, managed_labels
from sc_operator.render.names import label_value
from sc_operator.rollout import (
    Breaker,
    Decision,
    Observation,
    Previous,
    deadline_exceeded,
    evaluate,
    pod_view,
)

log = logging.getLogger(__name__)


def _previous(r: Rollout) -> Previous:
    st = r.status
    return Previous(
        name=r.name,
        rollout_state=st.get("rolloutState"),
        rollout_state_reason=st.get("rolloutStateReason"),
        failed_tasks=int(st.get("failedTasks") or 0),
        rollback=bool(r.rollback_from),
    )


def refresh_status(ctx: Context, namespace: str, name: str) -> None:
    """Recompute and write the ECS deployment state of one service (idempotent)."""
    with ctx.service_lock(namespace, name):
        service = ctx.kube.get_or_none(CONNECT_SERVICES, name, namespace)
        if service is None or service["metadata"].get("deletionTimestamp"):
            return
        accepted = get_condition((service.get("status") or {}).get("conditions"), "Accepted")
        rollouts = list_rollouts(ctx.kube, namespace, name)
        if not rollouts or accepted is None:
            return
        _refresh(ctx, service, rollouts)


def _refresh(ctx: Context, service: Obj, rollouts: list[Rollout]) -> None:
    meta = service["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = ConnectServiceSpec.model_validate(service["spec"])
    # Pods carry label values (names longer than 63 characters are shortened); map them back.
    by_label = {label_value(r.name): r.name for r in rollouts}
    views = []
    for pod in ctx.kube.list(PODS, namespace, managed_labels(name)):
        view = pod_view(pod)
        if view is not None and view.deployment in by_label:
            views.append(view.__class__(**{**view.__dict__, "deployment": by_label[view.deployment]}))
    deployment = ctx.kube.get_or_none(DEPLOYMENTS, name, namespace)
    primary = rollouts[-1]
    cb = spec.deployment_configuration.deployment_circuit_breaker if spec.deployment_configuration else None
    decision = evaluate(
        Observation(
            desired_count=spec.desired_count,
            deployments=[_previous(r) for r in rollouts],
            pods=views,
            deadline_exceeded=deadline_exceeded(deployment, label_value(primary.name)),
            breaker=Breaker(enable=cb.enable, rollback=cb.rollback) if cb else Breaker(),
        )
    )
    stamp = now()
    for rollout, state in zip(rollouts, decision.states, strict=True):
        fields = state.status_fields()
        if not rollout.status.get("createdAt"):  # the first refresh writes the first status
            fields["createdAt"] = rollout.created_at
        if any(rollout.status.get(k) != v for k, v in fields.items()):
            ctx.kube.patch_status(
                CONNECT_DEPLOYMENTS, rollout.name, {**fields, "updatedAt": stamp}, namespace
            )

    status = service.get("status") or {}
    events = status.get("events")
    if decision.failed_now:
        reason = decision.states[-1].rollout_state_reason or "circuit breaker"
        events = add_event(
            events,
            f"(service {name}) (deployment {decision.failed_now}) failed: {reason}",
            ctx.tuning.max_events,
        )
        ctx.kube.post_event(service, "Warning", "DeploymentFailed", reason)
    if decision.completed_now:
        events = add_event(events, f"(service {name}) has reached a steady state.", ctx.tuning.max_events)
        ctx.kube.post_event(
            service, "Normal", "SteadyState", f"ECS deployment {decision.completed_now} completed"
        )

    if decision.rollback_to:
        rollouts = _rollback(ctx, service, spec, rollouts, decision)
        events = add_event(
            events,
            f"(service {name}) rolling back to (deployment {decision.rollback_to}).",
            ctx.tuning.max_events,
        )
        ctx.kube.post_event(
            service, "Warning", "RollingBack", f"rolling back from {primary.name} to {decision.rollback_to}"
        )

    running = sum(s.running_count for s in decision.states)
    pending = sum(s.pending_count for s in decision.states)
    summary = _summary(rollouts, decision)
    patch: dict[str, Any] = {
        "desiredCount": spec.desired_count,
        "runningCount": running,
        "pendingCount": pending,
        "deployments": summary,
        "events": events,
    }
    if any(status.get(k) != v for k, v in patch.items()):
        ctx.kube.patch_status(CONNECT_SERVICES, name, patch, namespace)

    connect_ns = status.get("namespace")
    if connect_ns:
        ref = ServiceRef(namespace=namespace, name=name)
        with contextlib.suppress(NamespaceNotFound):
            ctx.registry.update(connect_ns, lambda r: set_tasks(r, ref, running + pending))
    prune_inactive(ctx, namespace, rollouts)


def _summary(rollouts: list[Rollout], decision: Decision) -> list[dict[str, Any]]:
    """Newest first, as DescribeServices lists deployments."""
    states = {s.name: s for s in decision.states}
    out = []
    for r in reversed(rollouts):
        s = states.get(r.name)
        entry: dict[str, Any] = {"name": r.name, "taskDefinitionHash": r.def_hash[:12]}
        if s is not None:
            entry.update({k: v for k, v in s.status_fields().items() if v is not None})
        else:  # the rollback just created: not evaluated yet
            entry.update({"status": "PRIMARY", "rolloutState": "IN_PROGRESS"})
        if r.created_at:
            entry["createdAt"] = r.created_at
        out.append(entry)
    return out


def _rollback(
    ctx: Context, service: Obj, spec: ConnectServiceSpec, rollouts: list[Rollout], decision: Decision
) -> list[Rollout]:
    """A new ConnectDeployment with the snapshot of ``decision.rollback_to``, rendered into the workload."""
    meta = service["metadata"]
    target = next(r for r in rollouts if r.name == decision.rollback_to)
    failed = rollouts[-1]
    snapshot = target.spec.model_copy(update={"desired_count": spec.desired_count})
    created = create_rollout(
        ctx,
        service,
        snapshot,
        failed.sequence + 1,
        None,
        # Keep the proxy sizing the target was rendered with: the same pod template as before the failure.
        {
            ROLLBACK_FROM_ANNOTATION: failed.name,
            ROLLBACK_TO_ANNOTATION: target.name,
            **_size_annotations(target),
            # The token the failed rollout honoured: the rollback must not look like a token not yet seen.
            **({FORCE_TOKEN_ANNOTATION: failed.force_token} if failed.force_token else {}),
            **failed.carried_annotations(),
        },
    )
    reason = f"rolled back from {failed.name} to the definition of {target.name}"
    ctx.kube.patch_status(
        CONNECT_DEPLOYMENTS,
        created.name,
        initial_status(created, spec.desired_count or 0, reason),
        meta["namespace"],
    )
    ns_labels = dict(ctx.kube.get(NAMESPACES, meta["namespace"])["metadata"].get("labels") or {})
    inputs = render_inputs(
        ctx,
        service,
        spec,
        created.name,
        created.uid,
        created.spec,
        interception_mode(ns_labels, ctx.settings),
        target.namespace_size,
    )
    materialise(ctx, inputs)
    log.warning(
        "ConnectService %s/%s rolled back from %s to %s",
        meta["namespace"],
        meta["name"],
        failed.name,
        target.name,
    )
    return [*rollouts, created]


def _size_annotations(target: Rollout) -> dict[str, str]:
    a = target.annotations
    return {k: a[k] for k in (NS_SERVICES_ANNOTATION, NS_TASKS_ANNOTATION) if k in a}
