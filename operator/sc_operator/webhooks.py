"""Admission webhooks: refuse at ``kubectl apply`` what reconciliation would refuse, with the same words.

Pure functions turn an admission request's object into a :class:`Verdict` using the rules of
:mod:`sc_operator.validation` (one implementation; the reconcile handlers are the other caller, and stay,
because webhooks can be bypassed or down):

- :func:`review_connect_service` and :func:`review_connect_namespace`: the spec rules;
- :func:`review_registration`: the cross-object rules against the ConnectNamespaces' registries;
- :func:`review_pod`: a pod that asks for Service Connect (our label or annotation) must be a task of a
  service, i.e. controlled by a ReplicaSet controlled by a Deployment controlled by a ConnectService.

The kopf handlers at the bottom are the I/O edge: they read the owner chain from the API server and turn a
refusal into :class:`kopf.AdmissionError`. They are registered only when ``SERVICECONNECT_WEBHOOK_ENABLED``
is true (the chart sets it): kopf refuses to start with admission handlers but no webhook server, and
tests or development runs of the operator usually have no certificate. The chart owns the
ValidatingWebhookConfiguration; the handler ids below are its URL paths.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sc_operator import API_VERSION, GROUP, VERSION
from sc_operator.api import ServiceRef
from sc_operator.reconcile.service import Refusal, resolve_namespace
from sc_operator.registry import Registry
from sc_operator.validation import (
    STANDALONE_TASK_MESSAGE,
    Violation,
    parse_and_validate,
    validate_namespace,
    validate_registration,
    validate_service,
)

logger = logging.getLogger(__name__)

#: A pod asks for Service Connect with this label (every task the operator renders carries it) or with
#: an annotation of the same name.
SERVICE_KEY = f"{GROUP}/service"

#: Handler ids = URL paths of the chart's ValidatingWebhookConfiguration (charts/service-connect).
CONNECT_SERVICE_HOOK = "validate-connectservice"
CONNECT_NAMESPACE_HOOK = "validate-connectnamespace"
POD_HOOK = "validate-pod"
HOOK_IDS = (CONNECT_SERVICE_HOOK, CONNECT_NAMESPACE_HOOK, POD_HOOK)

ENV_PREFIX = "SERVICECONNECT_WEBHOOK_"

# HTTP codes in the refusal, as the API server's own checks use them.
INVALID = 422
FORBIDDEN = 403

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """Allow, or deny with the message the user sees after ``denied the request:``."""

    allowed: bool
    message: str = ""
    code: int = INVALID
    violations: tuple[Violation, ...] = ()


ALLOW = Verdict(True)


def _name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def _deny(kind: str, obj: Obj, violations: list[Violation]) -> Verdict:
    if not violations:
        return ALLOW
    detail = "; ".join(str(v) for v in violations)
    return Verdict(False, f"{kind} {_name(obj)} is invalid: {detail}", INVALID, tuple(violations))


# -- custom resources --------------------------------------------------------------------------------


def review_connect_service(obj: Obj) -> Verdict:
    """A ConnectService is admitted exactly when reconciliation would accept its spec."""
    return _deny("ConnectService", obj, validate_service(obj))


def review_registration(
    obj: Obj, namespace_labels: Mapping[str, str], connect_namespaces: Sequence[Obj]
) -> Verdict:
    """The cross-object rules (unique discoveryName and dnsName:port, one namespace per service) against
    the registries in the ConnectNamespaces' status, as reconciliation checks them before registering.

    What may resolve itself is left to reconciliation, which retries: a ConnectNamespace that does not
    exist yet (``kubectl apply -f dir/`` creates objects in any order) or no default namespace label.
    """
    spec, violations = parse_and_validate(obj.get("spec") or {})
    if spec is None or violations:
        return _deny("ConnectService", obj, violations)
    meta = obj.get("metadata") or {}
    try:
        connect_ns = resolve_namespace(dict(obj), spec, dict(namespace_labels))
    except Refusal:
        return ALLOW
    registries = {
        str(o["metadata"]["name"]): Registry.from_status(o.get("status")) for o in connect_namespaces
    }
    if connect_ns is None or connect_ns not in registries:
        return ALLOW
    owner = ServiceRef(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""))
    return _deny("ConnectService", obj, validate_registration(spec, owner, connect_ns, registries))


def review_connect_namespace(obj: Obj) -> Verdict:
    """A ConnectNamespace is admitted when its spec passes :func:`validate_namespace` (the schema, and
    the rules on its default TLS CA); its status is the operator's business."""
    return _deny("ConnectNamespace", obj, validate_namespace(obj))


# -- pods: standalone tasks ----------------------------------------------------------------------------


def asks_for_service_connect(pod: Obj) -> bool:
    """Whether the pod carries our label or annotation, i.e. expects to be a Service Connect task."""
    meta = pod.get("metadata") or {}
    return SERVICE_KEY in (meta.get("labels") or {}) or SERVICE_KEY in (meta.get("annotations") or {})


def controller_ref(obj: Obj) -> Obj | None:
    """The owner reference with ``controller: true``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _is(ref: Obj | None, api_version: str, kind: str) -> bool:
    return ref is not None and ref.get("apiVersion") == api_version and ref.get("kind") == kind


def _standalone(pod: Obj, why: str) -> Verdict:
    violation = Violation("standalone-task", "metadata.ownerReferences", f"{STANDALONE_TASK_MESSAGE} ({why})")
    message = f"Pod {_name(pod)}: {STANDALONE_TASK_MESSAGE}; {why}"
    return Verdict(False, message, FORBIDDEN, (violation,))


def _matches(ref: Obj, obj: Obj | None) -> bool:
    # The uid guards against a forged reference that merely names an existing object.
    meta = (obj or {}).get("metadata") or {}
    return obj is not None and meta.get("name") == ref.get("name") and meta.get("uid") == ref.get("uid")


def review_pod(pod: Obj, replicaset: Obj | None = None, deployment: Obj | None = None) -> Verdict:
    """Admit a pod unless it asks for Service Connect without being a task of a ConnectService.

    ``replicaset`` and ``deployment`` are the objects the pod's and the ReplicaSet's controller
    references name (None when they do not exist); :func:`owner_chain` fetches them.
    """
    if not asks_for_service_connect(pod):
        return ALLOW
    rs_ref = controller_ref(pod)
    if not _is(rs_ref, "apps/v1", "ReplicaSet"):
        return _standalone(
            pod, f"the pod has the {SERVICE_KEY} label or annotation but no ReplicaSet controls it"
        )
    assert rs_ref is not None
    if not _matches(rs_ref, replicaset):
        return _standalone(pod, f"its ReplicaSet {rs_ref.get('name')!r} does not exist")
    assert replicaset is not None
    deploy_ref = controller_ref(replicaset)
    if not _is(deploy_ref, "apps/v1", "Deployment"):
        return _standalone(pod, f"its ReplicaSet {rs_ref.get('name')!r} belongs to no Deployment")
    assert deploy_ref is not None
    if not _matches(deploy_ref, deployment):
        return _standalone(pod, f"its Deployment {deploy_ref.get('name')!r} does not exist")
    assert deployment is not None
    service_ref = controller_ref(deployment)
    if not _is(service_ref, API_VERSION, "ConnectService"):
        return _standalone(
            pod, f"its Deployment {deploy_ref.get('name')!r} was not created for a ConnectService"
        )
    return ALLOW


#: ``get(kind, name, namespace)`` returning the object or None when it does not exist.
Getter = Callable[[str, str, str], "Obj | None"]


def owner_chain(pod: Obj, namespace: str, get: Getter) -> tuple[Obj | None, Obj | None]:
    """The pod's ReplicaSet and that ReplicaSet's Deployment, fetched only as far as needed."""
    rs_ref = controller_ref(pod)
    if not asks_for_service_connect(pod) or not _is(rs_ref, "apps/v1", "ReplicaSet"):
        return None, None
    assert rs_ref is not None
    replicaset = get("replicasets", str(rs_ref.get("name")), namespace)
    deploy_ref = controller_ref(replicaset or {})
    if replicaset is None or not _is(deploy_ref, "apps/v1", "Deployment"):
        return replicaset, None
    assert deploy_ref is not None
    return replicaset, get("deployments", str(deploy_ref.get("name")), namespace)


# -- settings ------------------------------------------------------------------------------------------


class WebhookSettingsError(ValueError):
    """A SERVICECONNECT_WEBHOOK_* variable is invalid; the message names it and the rule."""


def _bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"", "0", "false", "no", "off"}:
        return False
    raise WebhookSettingsError(f"{key}: must be true or false, not {raw!r}")


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how the operator serves its webhooks, from ``SERVICECONNECT_WEBHOOK_*`` variables.

    ``ENABLED`` (false), ``ADDR`` (0.0.0.0), ``PORT`` (9443), ``CERT_DIR`` (holding ``tls.crt`` and
    ``tls.key``; unset: kopf generates a self-signed certificate, for development only),
    ``EXCLUDE_NAMESPACES`` (comma-separated; the operator's own ``POD_NAMESPACE`` is always added).
    """

    enabled: bool = False
    addr: str = "0.0.0.0"
    port: int = 9443
    cert_dir: Path | None = None
    exclude_namespaces: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        def var(name: str) -> str:
            return ENV_PREFIX + name

        port_raw = env.get(var("PORT"), "9443")
        try:
            port = int(port_raw)
        except ValueError:
            raise WebhookSettingsError(f"{var('PORT')}: must be a port number, not {port_raw!r}") from None
        if not 1 <= port <= 65535:
            raise WebhookSettingsError(f"{var('PORT')}: must be 1-65535, not {port}")
        cert_dir = env.get(var("CERT_DIR")) or None
        excluded = {n.strip() for n in env.get(var("EXCLUDE_NAMESPACES"), "").split(",") if n.strip()}
        if env.get("POD_NAMESPACE"):
            excluded.add(env["POD_NAMESPACE"])
        return cls(
            enabled=_bool(var("ENABLED"), env.get(var("ENABLED"), "false")),
            addr=env.get(var("ADDR"), "0.0.0.0") or "0.0.0.0",
            port=port,
            cert_dir=Path(cert_dir) if cert_dir else None,
            exclude_namespaces=frozenset(excluded),
        )

    def excludes(self, obj: Obj) -> bool:
        """Objects in the operator's own or an excluded namespace are never refused."""
        return str((obj.get("metadata") or {}).get("namespace") or "") in self.exclude_namespaces


# -- kopf: the I/O edge ----------------------------------------------------------------------------------


def register(webhook_settings: WebhookSettings, registry: Any = None) -> None:
    """Register the startup configuration and the three validating handlers with kopf."""
    import kopf

    from sc_operator import kube

    registry = registry if registry is not None else kopf.get_default_registry()
    resources = {"replicasets": kube.REPLICASETS, "deployments": kube.DEPLOYMENTS}

    @functools.cache
    def client() -> kube.Kube:
        return kube.Kube.from_environment()

    def get(kind: str, name: str, namespace: str) -> Obj | None:
        return client().get_or_none(resources[kind], name, namespace)

    def enforce(verdict: Verdict) -> None:
        if not verdict.allowed:
            raise kopf.AdmissionError(verdict.message, code=verdict.code)

    @kopf.on.startup(registry=registry)
    def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
        cert_dir = webhook_settings.cert_dir
        settings.admission.server = kopf.WebhookServer(
            addr=webhook_settings.addr,
            port=webhook_settings.port,
            certfile=str(cert_dir / "tls.crt") if cert_dir else None,
            pkeyfile=str(cert_dir / "tls.key") if cert_dir else None,
        )
        # The chart owns the ValidatingWebhookConfiguration (selectors, timeouts, failure policies).
        settings.admission.managed = None
        if cert_dir is None:
            logger.warning("no %sCERT_DIR: serving webhooks with a self-signed certificate", ENV_PREFIX)

    @kopf.on.validate(GROUP, VERSION, "connectservices", id=CONNECT_SERVICE_HOOK, registry=registry)
    def validate_connect_service(body: kopf.Body, **_: Any) -> None:
        if webhook_settings.excludes(body):
            return
        enforce(review_connect_service(body))
        namespace = str(body.get("metadata", {}).get("namespace") or "")
        k8s_ns = client().get_or_none(kube.NAMESPACES, namespace) or {}
        labels = (k8s_ns.get("metadata") or {}).get("labels") or {}
        enforce(review_registration(body, labels, client().list(kube.CONNECT_NAMESPACES)))

    @kopf.on.validate(GROUP, VERSION, "connectnamespaces", id=CONNECT_NAMESPACE_HOOK, registry=registry)
    def validate_connect_namespace(body: kopf.Body, **_: Any) -> None:
        enforce(review_connect_namespace(body))

    @kopf.on.validate("", "v1", "pods", id=POD_HOOK, operations=["CREATE"], registry=registry)
    def validate_pod(body: kopf.Body, **_: Any) -> None:
        if webhook_settings.excludes(body) or not asks_for_service_connect(body):
            return
        namespace = str(body.get("metadata", {}).get("namespace") or "")
        replicaset, deployment = owner_chain(body, namespace, get)
        enforce(review_pod(body, replicaset, deployment))


def register_from_environment(env: Mapping[str, str], registry: Any = None) -> WebhookSettings:
    """Register the webhooks when the environment enables them; return the settings either way."""
    webhook_settings = WebhookSettings.from_env(env)
    if webhook_settings.enabled:
        register(webhook_settings, registry)
    return webhook_settings


# Importing this module (``sc_operator.handlers`` does) registers the webhooks when the environment
# enables them, so ``kopf run -m sc_operator.handlers`` needs nothing else.
SETTINGS = register_from_environment(os.environ)
