"""Reconcile one ConnectService: validate, register, roll out, materialise.

Order matters for "a refused object touches nothing": every check (the spec rules, the ConnectNamespace,
the cross-object rules, the render-time rules against a provisional snapshot) runs before the first
write. Only then is the service registered, a ConnectDeployment created if the definition changed, and
the children rendered from the PRIMARY ConnectDeployment.

The ConnectNamespace a service omits comes from its Kubernetes Namespace's label
``serviceconnect.dev/default-namespace`` (ECS: the cluster's ``serviceConnectDefaults``), read once and
then kept in the service's status: like ECS, a later change of the default does not move a service. A
ConnectNamespace that does not exist is **not** created (ECS would create an HTTP namespace): a namespaced
object creating cluster-scoped ones would let any namespace's users squat registry names, so the service
is refused (``NamespaceNotFound``) and retried until an administrator creates it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from sc_operator.api import ConnectServiceSpec
from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.kube import CONNECT_DEPLOYMENTS, CONNECT_SERVICES, Obj
from sc_operator.reconcile.conditions import add_event, get_condition, set_condition
from sc_operator.reconcile.context import DEFAULT_NAMESPACE_LABEL, Context
from sc_operator.reconcile.deployments import (
    FORCE_TOKEN_ANNOTATION,
    LAST_AUTO_REDEPLOY_ANNOTATION,
    REDEPLOY_REASON_ANNOTATION,
    ROLLBACK_FROM_ANNOTATION,
    TIME_FORMAT,
    Rollout,
    create_rollout,
    definition_hash,
    list_rollouts,
    materialise,
    new_deployment_spec,
    render_inputs,
)
from sc_operator.reconcile.redeploy import auto_decision, condition_patch, policy_of
from sc_operator.reconcile.tls import (
    CaSource,
    TlsRefusal,
    ensure_bundle_copy,
    ensure_leaf,
    pinned_tls,
    resolve_ca,
    tls_switched,
    verifies_callers,
)
from sc_operator.redeploy import FORCED, NEW_ENDPOINTS, AutoDecision, force_requested
from sc_operator.registry import (
    NamespaceNotFound,
    Registry,
    RegistryConflict,
    deregister,
    register,
)
from sc_operator.render import RenderError, interception_mode, render_violations
from sc_operator.validation import effective_endpoints, parse_and_validate, validate_registration

log = logging.getLogger(__name__)

#: Refusal reasons that another object's change can cure: the timer retries these.
RETRIABLE_REASONS = frozenset(
    {
        "NamespaceNotFound",
        "NamespaceNotSet",
        "NamespaceTerminating",
        "DiscoveryNameDuplicate",
        "ClientAliasDuplicate",
        "OneNamespace",
        # TLS: the CA Secret may be created, cert-manager installed, later.
        "CaSecretNotFound",
        "CaNamespaceNotFound",
        "CertManagerNotInstalled",
    }
)


def reason_of(rule: str) -> str:
    """``discovery-name-duplicate`` → ``DiscoveryNameDuplicate`` (condition reasons are CamelCase)."""
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*", rule):
        return rule
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_\s]+", rule) if part)


@dataclass(frozen=True)
class Refusal(Exception):
    """Why a service is not accepted: a condition reason and a message naming the rule and field."""

    reason: str
    message: str


def _fresh(ctx: Context, namespace: str, name: str) -> Obj | None:
    return ctx.kube.get_or_none(CONNECT_SERVICES, name, namespace)


def write_status(ctx: Context, service: Obj, status: dict[str, Any]) -> None:
    meta = service["metadata"]
    ctx.kube.patch_status(CONNECT_SERVICES, meta["name"], status, meta["namespace"])


def refuse(ctx: Context, service: Obj, refusal: Refusal) -> None:
    """Accepted=False with the rule named, an Event when the verdict is new; nothing else is touched."""
    status = service.get("status") or {}
    before = get_condition(status.get("conditions"), "Accepted")
    changed = before is None or (before.get("status"), before.get("reason"), before.get("message")) != (
        "False",
        refusal.reason,
        refusal.message,
    )
    generation = service["metadata"].get("generation")
    patch: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": set_condition(
            status.get("conditions"), "Accepted", "False", refusal.reason, refusal.message, generation
        ),
    }
    if changed:
        patch["events"] = add_event(
            status.get("events"),
            f"(service {service['metadata']['name']}) was refused: {refusal.message}",
            ctx.tuning.max_events,
        )
        ctx.kube.post_event(service, "Warning", refusal.reason, refusal.message)
    write_status(ctx, service, patch)


def resolve_namespace(service: Obj, spec: ConnectServiceSpec, ns_labels: dict[str, str]) -> str | None:
    """The ConnectNamespace: the spec's, else the one recorded at first acceptance, else the label's."""
    scc = spec.service_connect_configuration
    if scc is None or not scc.enabled:
        return None
    if scc.namespace:
        return scc.namespace
    recorded = (service.get("status") or {}).get("namespace")
    if recorded:
        return str(recorded)
    default = ns_labels.get(DEFAULT_NAMESPACE_LABEL)
    if not default:
        raise Refusal(
            "NamespaceNotSet",
            "spec.serviceConnectConfiguration.namespace: not set, and the Kubernetes namespace "
            f"{service['metadata']['namespace']!r} has no {DEFAULT_NAMESPACE_LABEL} label naming a default "
            "ConnectNamespace",
        )
    return default


def reconcile_service(ctx: Context, namespace: str, name: str) -> None:
    """Bring one ConnectService to its desired state (idempotent; safe to call at any time)."""
    with ctx.service_lock(namespace, name):
        service = _fresh(ctx, namespace, name)
        if service is None or service["metadata"].get("deletionTimestamp"):
            return
        try:
            _reconcile(ctx, service)
        except Refusal as refusal:
            log.info("ConnectService %s/%s refused: %s", namespace, name, refusal.message)
            refuse(ctx, service, refusal)


def _reconcile(ctx: Context, service: Obj) -> None:
    meta = service["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    ref = ServiceRef(namespace=namespace, name=name)
    spec, violations = parse_and_validate(service.get("spec") or {})
    if violations or spec is None:
        raise Refusal(reason_of(violations[0].rule), "; ".join(str(v) for v in violations))

    ns_labels = ctx.namespace_labels(namespace)
    connect_ns = resolve_namespace(service, spec, ns_labels)
    previous_ns = (service.get("status") or {}).get("namespace")

    registry: Registry | None = None
    if connect_ns is not None:
        registries = ctx.registry.registries()
        if connect_ns not in registries:
            raise Refusal(
                "NamespaceNotFound",
                f"spec.serviceConnectConfiguration.namespace: ConnectNamespace {connect_ns!r} does not exist "
                "(create it first; the operator does not create namespaces for services)",
            )
        cns_obj, registry = registries[connect_ns]
        if cns_obj["metadata"].get("deletionTimestamp"):
            raise Refusal(
                "NamespaceTerminating",
                f"spec.serviceConnectConfiguration.namespace: ConnectNamespace {connect_ns!r} "
                "is being deleted",
            )
        cross = validate_registration(spec, ref, connect_ns, {k: v[1] for k, v in registries.items()})
        if cross:
            raise Refusal(reason_of(cross[0].rule), "; ".join(str(v) for v in cross))

    endpoints = effective_endpoints(spec, ref)
    rollouts = list_rollouts(ctx.kube, namespace, name)
    primary = rollouts[-1] if rollouts else None
    wanted_hash = definition_hash(spec)
    # After a circuit-breaker rollback, the failed definition is not tried again until the spec changes.
    suppressed = primary is not None and any(
        r.name == primary.rollback_from and r.def_hash == wanted_hash for r in rollouts
    )
    changed = primary is None or (primary.def_hash != wanted_hash and not suppressed)
    # The same definition again: forced by a new token (ECS forceNewDeployment), or by the autoRedeploy
    # policy because endpoints were added to the namespace since the current deployment pinned it.
    auto: AutoDecision | None = None
    redeploy_reason: tuple[str, str] | None = None
    if primary is not None and not changed:
        auto = auto_decision(ctx, ref, spec, connect_ns, primary, registry)
        if force_requested(spec.force_new_deployment, primary.force_token):
            redeploy_reason = (FORCED, f"forceNewDeployment set to {spec.force_new_deployment!r}")
        elif auto is not None and auto.redeploy:
            redeploy_reason = (auto.reason, auto.message)
    need_new = changed or redeploy_reason is not None

    ca_source: CaSource | None = None
    if connect_ns is not None:
        # What the rollout in force pins: a new one pins the registry as it is now.
        now_pinned = list(registry.endpoints) if registry is not None else []
        calls_tls = pinned_tls(now_pinned if need_new else primary_endpoints(primary))
        try:  # reads only: a CA that cannot be used refuses the service before anything is written
            ca_source = resolve_ca(ctx, namespace, spec, connect_ns, calls_tls)
        except TlsRefusal as exc:
            raise Refusal(exc.reason, exc.message) from exc
    interception = interception_mode(ns_labels, ctx.settings)

    if need_new:
        try:
            projected = (register(registry, ref, endpoints) or registry) if registry is not None else None
        except RegistryConflict as exc:
            raise Refusal(reason_of(exc.rule), exc.message) from exc
        provisional = new_deployment_spec(name, spec, connect_ns, projected)
        size = (projected.service_count, projected.task_count) if projected else (0, 0)
        inputs = render_inputs(ctx, service, spec, f"{name}-provisional", "", provisional, interception, size)
        found = render_violations(inputs)
        if found:
            raise Refusal(
                reason_of(found[0].rule), "; ".join(f"{v.field}: [{v.rule}] {v.message}" for v in found)
            )

    # Endpoints whose TLS flag this change switches: clients pinned them as they were (warned below).
    switched = tls_switched(registry.endpoints_of(ref) if registry is not None else (), endpoints)

    # Every check passed: from here on, write.
    if previous_ns and previous_ns != connect_ns:
        with contextlib.suppress(NamespaceNotFound):
            ctx.registry.update(previous_ns, lambda r: deregister(r, ref))
    if connect_ns is not None:
        try:
            registry = ctx.registry.update(connect_ns, lambda r: register(r, ref, endpoints))
        except RegistryConflict as exc:  # lost a race with another service since the check above
            raise Refusal(reason_of(exc.rule), exc.message) from exc
        except NamespaceNotFound as exc:
            raise Refusal("NamespaceNotFound", str(exc)) from exc

    created = None
    if need_new:
        sequence = (primary.sequence + 1) if primary is not None else 1
        snapshot = new_deployment_spec(name, spec, connect_ns, registry)
        annotations = primary.carried_annotations() if primary is not None else {}
        if spec.force_new_deployment:  # a later token is compared with this one
            annotations[FORCE_TOKEN_ANNOTATION] = spec.force_new_deployment
        if redeploy_reason is not None:
            annotations[REDEPLOY_REASON_ANNOTATION] = f"{redeploy_reason[0]}: {redeploy_reason[1]}"[:1024]
            if redeploy_reason[0] == NEW_ENDPOINTS:
                annotations[LAST_AUTO_REDEPLOY_ANNOTATION] = ctx.clock().strftime(TIME_FORMAT)
        created = create_rollout(ctx, service, snapshot, sequence, registry, annotations)
        current = created
        if primary is not None and primary.status.get("status") == "PRIMARY":
            # Superseded now; the status refresh settles ACTIVE/INACTIVE from its pods.
            ctx.kube.patch_status(CONNECT_DEPLOYMENTS, primary.name, {"status": "ACTIVE"}, namespace)
    else:
        assert primary is not None
        current = primary
    # Certificates and CA bundles before the pods that mount them (a pod waits for a missing volume).
    tls_certificate: dict[str, Any] | None = None
    try:
        if ca_source is None and connect_ns is not None and pinned_tls(current.spec.endpoints):
            # A TLS endpoint was registered between the checks and the snapshot: it needs a certificate.
            ca_source = resolve_ca(ctx, namespace, spec, connect_ns, calls_tls=True)
        if ca_source is not None and connect_ns is not None:
            tls_certificate = ensure_leaf(ctx, service, ca_source, connect_ns, endpoints)
        # Clients verify servers, and mutual-TLS servers verify callers, against the namespace's bundle.
        if current.spec.namespace and (pinned_tls(current.spec.endpoints) or verifies_callers(spec)):
            ensure_bundle_copy(ctx, current.spec.namespace, namespace)
    except TlsRefusal as exc:
        raise Refusal(exc.reason, exc.message) from exc
    inputs = render_inputs(
        ctx, service, spec, current.name, current.uid, current.spec, interception, current.namespace_size
    )
    try:
        materialise(ctx, inputs, first=primary is None)
    except RenderError as exc:  # e.g. the namespace switched to listeners mode and the task collides
        raise Refusal("RenderRefused", str(exc)) from exc

    # The service was read under the lock, and only this process writes its status: still current.
    fresh = service
    status = fresh.get("status") or {}
    generation = meta.get("generation")
    events = status.get("events")
    before = get_condition(status.get("conditions"), "Accepted")
    newly_accepted = before is None or before.get("status") != "True"
    where = f" in ConnectNamespace {connect_ns}" if connect_ns else ""
    if newly_accepted:
        events = add_event(events, f"(service {name}) was accepted{where}", ctx.tuning.max_events)
    if created is not None:
        origin = created.annotations.get(ROLLBACK_FROM_ANNOTATION)
        message = f"(service {name}) has started {spec.desired_count} tasks: (deployment {created.name})."
        if origin:
            message = f"(service {name}) rolling back: (deployment {created.name}) replaces {origin}."
        if redeploy_reason is not None:
            pins = len(created.spec.endpoints or [])
            message = (
                f"(service {name}) redeploying ({redeploy_reason[1]}): (deployment {created.name}) "
                f"pins {pins} endpoints."
            )
        events = add_event(events, message, ctx.tuning.max_events)
        # One Event for both decisions when they come together (hundreds of services at once).
        reason = "Accepted" if newly_accepted else "DeploymentCreated"
        prefix = f"accepted{where}; " if newly_accepted else ""
        detail = f"ECS deployment {created.name} started"
        if redeploy_reason is not None:
            reason, detail = redeploy_reason[0], f"{detail}: {redeploy_reason[1]}"
        ctx.kube.post_event(fresh, "Normal", reason, f"{prefix}{detail}")
    elif newly_accepted:
        ctx.kube.post_event(fresh, "Normal", "Accepted", f"accepted{where}")
    if switched:
        turned, names = "on" if switched[0][1] else "off", ", ".join(n for n, _ in switched)
        ctx.kube.post_event(
            fresh,
            "Warning",
            "TlsSwitched",
            f"TLS turned {turned} for {names}: clients "
            "keep what they pinned (plaintext or TLS) until redeployed (scctl redeploy, or "
            "autoRedeploy.onNewEndpoints); until then their requests to this service's new tasks fail",
        )
    conditions = set_condition(
        status.get("conditions"),
        "Accepted",
        "True",
        "Accepted",
        "the spec passed every Service Connect rule",
        generation,
    )
    if connect_ns is not None and policy_of(ctx, spec, connect_ns).on_new_endpoints:
        # The policy is on: say what it decided, or that a new deployment pinned the namespace anyway.
        verdict = auto
        if redeploy_reason is not None:
            started = f"{redeploy_reason[1]}: deployment {current.name}"
            verdict = AutoDecision(True, redeploy_reason[0], started)
        elif created is not None or verdict is None:
            verdict = AutoDecision(False, "UpToDate", f"deployment {current.name} pins every endpoint")
        conditions = condition_patch({"status": {"conditions": conditions}}, verdict) or conditions
    write_status(
        ctx,
        fresh,
        {
            "observedGeneration": generation,
            "conditions": conditions,
            "namespace": connect_ns,
            "desiredCount": spec.desired_count,
            "serviceConnectResources": [
                {"discoveryName": d} for d in sorted({e.discovery_name for e in endpoints})
            ],
            "events": events,
            # null removes it (merge patch): the service no longer uses TLS.
            "tlsCertificate": tls_certificate,
        },
    )


def primary_endpoints(primary: Rollout | None) -> list[Endpoint]:
    return list(primary.spec.endpoints or []) if primary is not None else []


def needs_retry(service: Obj) -> bool:
    """Refused for a reason another object can cure (the namespace appears, the name holder leaves)."""
    cond = get_condition((service.get("status") or {}).get("conditions"), "Accepted")
    return cond is not None and cond.get("status") == "False" and cond.get("reason") in RETRIABLE_REASONS


def delete_service(ctx: Context, service: Obj) -> None:
    """Deregister the service's endpoints; its children go by owner references (garbage collection)."""
    meta = service["metadata"]
    ref = ServiceRef(namespace=meta["namespace"], name=meta["name"])
    names = set()
    recorded = (service.get("status") or {}).get("namespace")
    if recorded:
        names.add(str(recorded))
    scc = (service.get("spec") or {}).get("serviceConnectConfiguration") or {}
    if scc.get("namespace"):
        names.add(str(scc["namespace"]))
    with ctx.service_lock(meta["namespace"], meta["name"]):
        for cns in sorted(names):
            with contextlib.suppress(NamespaceNotFound):
                ctx.registry.update(cns, lambda r: deregister(r, ref))
    ctx.forget(meta["namespace"], meta["name"])
