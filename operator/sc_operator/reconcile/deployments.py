"""ConnectDeployments of a service: naming, ordering, creation, and materialising one into children.

A ConnectDeployment is one ECS deployment: a snapshot (task definition, Service Connect configuration, the
namespace's endpoints pinned at that moment, the namespace size the proxy was sized for). Names are
deterministic — ``<service>-<10 hex of sha256(definition hash, sequence)>`` — and each carries a sequence
number, so a restarted operator finds and adopts what it created instead of creating it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sc_operator import API_VERSION
from sc_operator.api import ConnectDeploymentSpec, ConnectServiceSpec
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    DEPLOYMENTS,
    SERVICES,
    ApiError,
    Kube,
    Obj,
)
from sc_operator.reconcile.conditions import now
from sc_operator.reconcile.context import Context
from sc_operator.registry import Registry
from sc_operator.render import RenderInputs, managed_labels, render_children
from sc_operator.render.workload import owner_reference
from sc_operator.settings import Interception

SEQUENCE_ANNOTATION = "serviceconnect.dev/sequence"
ROLLBACK_FROM_ANNOTATION = "serviceconnect.dev/rollback-from"
ROLLBACK_TO_ANNOTATION = "serviceconnect.dev/rollback-to"
#: The service's spec.forceNewDeployment when the rollout was created: a different token forces the next.
FORCE_TOKEN_ANNOTATION = "serviceconnect.dev/force-new-deployment"
#: Why a rollout of an unchanged definition was started (ForceNewDeployment, NewEndpoints) and the detail.
REDEPLOY_REASON_ANNOTATION = "serviceconnect.dev/redeploy-reason"
#: When the autoRedeploy policy last started a rollout of the service; each rollout carries it forward.
LAST_AUTO_REDEPLOY_ANNOTATION = "serviceconnect.dev/last-auto-redeploy"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
NS_SERVICES_ANNOTATION = "serviceconnect.dev/namespace-services"
NS_TASKS_ANNOTATION = "serviceconnect.dev/namespace-tasks"
#: On the Deployment: a digest of what was rendered, replicas excluded, to tell scaling from re-rendering.
RENDERED_ANNOTATION = "serviceconnect.dev/rendered"


def definition_hash(spec: ConnectServiceSpec) -> str:
    """sha256 of the canonical JSON of the task definition and the Service Connect configuration:
    what makes a new ECS deployment (desiredCount and the rest do not)."""
    scc = spec.service_connect_configuration
    doc = {
        "taskDefinition": spec.task_definition.to_wire(),
        "serviceConnectConfiguration": scc.to_wire() if scc is not None else None,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def deployment_name(service: str, service_uid: str, def_hash: str, sequence: int) -> str:
    """The ConnectDeployment's name, which its ConfigMap and pods carry too.

    The ConnectService's UID is part of it: a service deleted and created again under the same name
    starts again at sequence 1 but may pin other endpoints, and the kubelet keeps serving an immutable
    ConfigMap it has read under a name (it stops watching immutable objects), so a name must never come
    back with other content."""
    digest = hashlib.sha256(f"{service_uid}:{def_hash}:{sequence}".encode()).hexdigest()[:10]
    return f"{service[: 253 - 11]}-{digest}"


@dataclass(frozen=True)
class Rollout:
    """A ConnectDeployment as read from the API."""

    obj: Obj
    #: The spec as a model when the caller has it already (it just created the object): parsing a spec
    #: that pins hundreds of endpoints again costs as much as building it.
    known_spec: ConnectDeploymentSpec | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})

    @property
    def sequence(self) -> int:
        try:
            return int(self.annotations.get(SEQUENCE_ANNOTATION, "0"))
        except ValueError:
            return 0

    @property
    def spec(self) -> ConnectDeploymentSpec:
        if self.known_spec is not None:
            return self.known_spec
        return ConnectDeploymentSpec.model_validate(self.obj["spec"])

    @property
    def def_hash(self) -> str:
        return str(self.obj["spec"].get("taskDefinitionHash", ""))

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def created_at(self) -> str:
        """``status.createdAt``, else the object's creationTimestamp (the status comes later)."""
        return str(self.status.get("createdAt") or self.obj["metadata"].get("creationTimestamp") or "")

    @property
    def rollback_from(self) -> str | None:
        return self.annotations.get(ROLLBACK_FROM_ANNOTATION)

    @property
    def force_token(self) -> str | None:
        return self.annotations.get(FORCE_TOKEN_ANNOTATION)

    @property
    def last_auto_redeploy(self) -> datetime | None:
        """The annotation parsed; None when absent or unreadable (then no rate limit holds it back)."""
        raw = self.annotations.get(LAST_AUTO_REDEPLOY_ANNOTATION)
        try:
            return datetime.strptime(raw, TIME_FORMAT).replace(tzinfo=UTC) if raw else None
        except ValueError:
            return None

    def carried_annotations(self) -> dict[str, str]:
        """What the next rollout of the service inherits from this one."""
        a = self.annotations
        return {k: a[k] for k in (LAST_AUTO_REDEPLOY_ANNOTATION,) if k in a}

    @property
    def namespace_size(self) -> tuple[int, int]:
        a = self.annotations
        return int(a.get(NS_SERVICES_ANNOTATION, "0") or 0), int(a.get(NS_TASKS_ANNOTATION, "0") or 0)


def list_rollouts(kube: Kube, namespace: str, service: str) -> list[Rollout]:
    """The service's ConnectDeployments, oldest first (by sequence, then creation)."""
    objs = kube.list(CONNECT_DEPLOYMENTS, namespace, managed_labels(service))
    rollouts = [Rollout(o) for o in objs if o.get("spec", {}).get("service") == service]
    return sorted(
        rollouts, key=lambda r: (r.sequence, r.obj["metadata"].get("creationTimestamp", ""), r.name)
    )


def create_rollout(
    ctx: Context,
    service: Obj,
    spec: ConnectDeploymentSpec,
    sequence: int,
    registry: Registry | None,
    extra_annotations: dict[str, str] | None = None,
) -> Rollout:
    """Create (or adopt, when it exists already) the ConnectDeployment for ``spec`` at ``sequence``."""
    meta = service["metadata"]
    name = deployment_name(meta["name"], meta["uid"], spec.task_definition_hash, sequence)
    size = (registry.service_count, registry.task_count) if registry is not None else (0, 0)
    body: Obj = {
        "apiVersion": API_VERSION,
        "kind": "ConnectDeployment",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": managed_labels(meta["name"]),
            "annotations": {
                SEQUENCE_ANNOTATION: str(sequence),
                NS_SERVICES_ANNOTATION: str(size[0]),
                NS_TASKS_ANNOTATION: str(size[1]),
                **(extra_annotations or {}),
            },
            "ownerReferences": [owner_reference("ConnectService", meta["name"], meta["uid"])],
        },
        "spec": spec.to_wire(),
    }
    # No status yet: the first status refresh (the first pod event, or the resync timer) writes it. Each
    # write of a ConnectDeployment costs the API server as much as its creation (it pins the namespace's
    # endpoints), and that refresh rewrites the counts anyway. Until then readers take a ConnectDeployment
    # without status as the PRIMARY, IN_PROGRESS (sc_operator.rollout.evaluate).
    obj, created = ctx.kube.create_or_get(CONNECT_DEPLOYMENTS, body, meta["namespace"])
    return Rollout(obj, known_spec=spec if created else None)


def initial_status(rollout: Rollout, desired_count: int, reason: str | None = None) -> dict[str, Any]:
    """The status of a rollout nothing has been observed for yet (a rollback writes it at once)."""
    return {
        "status": "PRIMARY",
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": reason or f"ECS deployment {rollout.name} in progress.",
        "desiredCount": desired_count,
        "runningCount": 0,
        "pendingCount": 0,
        "failedTasks": 0,
        "createdAt": rollout.created_at,
        "updatedAt": now(),
    }


def new_deployment_spec(
    service_name: str,
    spec: ConnectServiceSpec,
    connect_namespace: str | None,
    registry: Registry | None,
) -> ConnectDeploymentSpec:
    """The snapshot for a new rollout: the definition, and the namespace's endpoints pinned now."""
    return ConnectDeploymentSpec(
        service=service_name,
        task_definition_hash=definition_hash(spec),
        task_definition=spec.task_definition,
        desired_count=spec.desired_count,
        namespace=connect_namespace,
        namespace_revision=registry.revision if registry is not None else None,
        service_connect_configuration=spec.service_connect_configuration,
        endpoints=list(registry.endpoints) if registry is not None else None,
    )


def render_inputs(
    ctx: Context,
    service: Obj,
    spec: ConnectServiceSpec,
    rollout_name: str,
    rollout_uid: str,
    rollout_spec: ConnectDeploymentSpec,
    interception: Interception,
    namespace_size: tuple[int, int],
) -> RenderInputs:
    meta = service["metadata"]
    return RenderInputs(
        service_name=meta["name"],
        k8s_namespace=meta["namespace"],
        service_uid=meta["uid"],
        service=spec,
        deployment_name=rollout_name,
        deployment_uid=rollout_uid,
        deployment=rollout_spec,
        settings=ctx.settings,
        server_version=ctx.kube.server_version(),
        interception=interception,
        namespace_services=namespace_size[0],
        namespace_tasks=namespace_size[1],
    )


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def materialise(ctx: Context, inputs: RenderInputs, first: bool = False) -> bool:
    """Create or update the rollout's ConfigMap, the service's Deployment and headless Services.

    Returns True when the Deployment's pod template changed (a Kubernetes rollout starts). A change of
    desiredCount alone only patches ``replicas``. ``first``: the service has no children yet (try creating
    before reading, and skip looking for stale headless Services) — saves requests when hundreds of
    services arrive at once; wrong guesses only cost a 409 and a read.
    """
    children = render_children(inputs)
    ns = inputs.k8s_namespace
    kube = ctx.kube
    if children.config_map is not None:
        # Immutable: if it exists it already holds this rollout's pinned configuration.
        kube.create_or_get(CONFIGMAPS, children.config_map, ns)

    deployment = children.deployment
    deployment["spec"]["progressDeadlineSeconds"] = ctx.tuning.progress_deadline_seconds
    rendered = _digest({**deployment["spec"], "replicas": None, "meta": deployment["metadata"]})
    deployment["metadata"].setdefault("annotations", {})[RENDERED_ANNOTATION] = rendered
    current: Obj | None
    if first:
        current, created = kube.create_or_get(DEPLOYMENTS, deployment, ns)
        if created:
            current = None
    else:
        current = kube.get_or_none(DEPLOYMENTS, deployment["metadata"]["name"], ns)
    template_changed = False
    if current is None:
        if not first:
            kube.create(DEPLOYMENTS, deployment, ns)
        template_changed = True
    elif (current["metadata"].get("annotations") or {}).get(RENDERED_ANNOTATION) == rendered:
        if current["spec"].get("replicas") != deployment["spec"]["replicas"]:
            kube.patch(
                DEPLOYMENTS,
                current["metadata"]["name"],
                {"spec": {"replicas": deployment["spec"]["replicas"]}},
                ns,
            )
    else:
        deployment["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kube.replace(DEPLOYMENTS, deployment, ns)
        template_changed = True

    wanted = {s["metadata"]["name"]: s for s in children.services}
    for svc in wanted.values():
        existing, created = kube.create_or_get(SERVICES, svc, ns)
        if not created and (
            existing["spec"].get("ports") != svc["spec"]["ports"]
            or existing["spec"].get("selector") != svc["spec"]["selector"]
        ):
            kube.patch(SERVICES, svc["metadata"]["name"], {"spec": {"ports": svc["spec"]["ports"]}}, ns)
    stale = [] if first else kube.list(SERVICES, ns, managed_labels(inputs.service_name))
    for svc in stale:
        name = svc["metadata"]["name"]
        if name not in wanted and _owned_by(svc, inputs.service_uid):
            kube.delete(SERVICES, name, ns)
    return template_changed


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def prune_inactive(ctx: Context, namespace: str, rollouts: list[Rollout]) -> None:
    """Delete INACTIVE ConnectDeployments beyond the newest ``keep_inactive`` (their ConfigMaps follow by
    owner reference). The history ECS shows is bounded too."""
    inactive = [r for r in rollouts[:-1] if r.status.get("status") == "INACTIVE"]
    for r in inactive[: max(0, len(inactive) - ctx.tuning.keep_inactive)]:
        with contextlib.suppress(ApiError):
            ctx.kube.delete(CONNECT_DEPLOYMENTS, r.name, namespace)
