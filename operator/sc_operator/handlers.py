"""The kopf handlers of the operator (loaded by ``sc-operator`` as ``kopf run -m sc_operator.handlers``).

Thin: each handler finds the object it is about and calls a body in :mod:`sc_operator.reconcile`, which
does the work synchronously in kopf's worker threads. Transient API failures (409 conflicts, 429, 5xx,
lost connections) become :class:`kopf.TemporaryError` so kopf retries with backoff instead of reporting
a failure.

- ConnectService create/update/resume → validate, register, roll out, materialise;
  delete (kopf's finalizer) → deregister; the children go by owner references.
- A timer per ConnectService → refresh its status; retry a refusal another object may have cured;
  apply the autoRedeploy policy (a redeploy when endpoints were added to the namespace); renew its TLS
  certificate when due.
- Pod and Deployment events of managed workloads → refresh the owning service's status (coalesced).
- ConnectNamespace create/resume → initial status; spec → its default autoRedeploy policy, remembered;
  delete → blocked while services use it.
- Kubernetes Namespace label changes, ConnectNamespace creation → retry services waiting for them.
- ConnectNamespace with ``spec.peers`` → a timer reads the linked clusters, mirrors their endpoints into
  the registry and their tasks into headless Services here (:mod:`sc_operator.reconcile.peers`).

Tuning (environment): ``SERVICECONNECT_PROGRESS_DEADLINE_SECONDS`` (600), ``SERVICECONNECT_RESYNC_SECONDS``
(30), ``SERVICECONNECT_WORKERS`` (48), ``SERVICECONNECT_PEER_SYNC_SECONDS`` (10, how often linked clusters
are read); rendering settings are the ``SC_*`` variables of :mod:`sc_operator.settings`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import kopf

from sc_operator import GROUP
from sc_operator.diffbase import LeanDiffBaseStorage
from sc_operator.kube import (
    CONNECT_SERVICES,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    SERVICE_LABEL,
    ApiError,
    Kube,
    is_transient,
)
from sc_operator.peer_client import PeerClients
from sc_operator.reconcile.context import Context, Tuning
from sc_operator.reconcile.namespace import NamespaceInUse, check_deletable, initialise
from sc_operator.reconcile.peers import needs_sync, sync_peers
from sc_operator.reconcile.redeploy import check_auto_redeploy, policy_applies
from sc_operator.reconcile.service import delete_service, needs_retry, reconcile_service
from sc_operator.reconcile.status import refresh_status
from sc_operator.reconcile.tls import maintain as maintain_tls
from sc_operator.render.names import label_value
from sc_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

CONNECT_SERVICE = f"connectservices.{GROUP}"
CONNECT_NAMESPACE = f"connectnamespaces.{GROUP}"
MANAGED = {MANAGED_BY: MANAGED_BY_VALUE}


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise SystemExit(f"{name}: must be positive, got {raw}")
    return value


TUNING = Tuning(
    progress_deadline_seconds=int(_env_number("SERVICECONNECT_PROGRESS_DEADLINE_SECONDS", 600)),
    resync_seconds=_env_number("SERVICECONNECT_RESYNC_SECONDS", 30.0),
)
WORKERS = int(_env_number("SERVICECONNECT_WORKERS", 48))
PEER_SYNC_SECONDS = _env_number("SERVICECONNECT_PEER_SYNC_SECONDS", 10.0)

_ctx: Context | None = None
_ctx_lock = threading.Lock()
_peer_clients: PeerClients | None = None


def ctx() -> Context:
    """The process's shared context, created on first use (after kopf has started)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            kube = Kube.from_environment(pool_size=WORKERS + 4)
            _ctx = Context(kube=kube, settings=OperatorSettings.load(os.environ), tuning=TUNING)
        return _ctx


def peer_clients() -> PeerClients:
    """API clients of the linked clusters, shared by the ConnectNamespaces' timers."""
    global _peer_clients
    c = ctx()
    with _ctx_lock:
        if _peer_clients is None:
            _peer_clients = PeerClients(c.kube)
        return _peer_clients


def _guard(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except ApiError as exc:
        if is_transient(exc):
            raise kopf.TemporaryError(f"{what}: {exc} (will retry)", delay=2) from exc
        raise


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's bookkeeping under our own domain and out of ``.status``; size the workers.

    The CRDs' structural schemas prune unknown status fields, so kopf's default ``status.kopf`` progress
    would be dropped by the API server; annotations survive. kopf would also post an Event for every
    handler run; ours post the Events that mean something, so kopf's are limited to warnings.
    """
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = LeanDiffBaseStorage(
        prefix=GROUP,
        key="last-handled-configuration",
        # Kinds with only on.event handlers below: kopf never reads their diff.
        watch_only={("apps/v1", "Deployment"), ("v1", "Pod")},
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = WORKERS
    # kopf runs one asyncio worker per object with recent events, and keeps it idle_timeout seconds after
    # its last event. A worker_limit below the number of objects arriving at once stalls every object
    # beyond it until earlier workers expire (at 500 services with a limit of 192 and 30 s: nothing
    # happened for 10 s, twice). The handler threads (max_workers) bound the actual work.
    settings.batching.worker_limit = None
    settings.batching.idle_timeout = 5.0
    # Long idle watches get silently dropped by some load balancers (kopf#698, #204): reconnect regularly.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = (1, 1, 2, 3, 5, 8)
    ctx()


# -- ConnectService --------------------------------------------------------------------------------------


@kopf.on.resume(CONNECT_SERVICE)
@kopf.on.create(CONNECT_SERVICE)
@kopf.on.update(CONNECT_SERVICE, field="spec")
def service_changed(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> None:
    """Validate, register, roll out and materialise (idempotent: resume re-runs it after a restart)."""
    assert namespace is not None  # a namespaced kind
    _guard(f"reconciling {namespace}/{name}", lambda: reconcile_service(ctx(), namespace, name))
    # No status refresh here: the pod events that follow trigger it (and the timer). Without tasks there
    # are no pod events, and a rollout of zero tasks is complete at once.
    if spec.get("desiredCount", 1) == 0:
        _guard(f"refreshing {namespace}/{name}", lambda: _coalesced_refresh(namespace, name))


@kopf.on.delete(CONNECT_SERVICE)
def service_deleted(body: kopf.Body, **_: Any) -> None:
    """Deregister the endpoints; owner references take care of the ConnectDeployments and workloads."""
    obj = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}
    _guard(
        f"deregistering {body.metadata.namespace}/{body.metadata.name}", lambda: delete_service(ctx(), obj)
    )


@kopf.timer(CONNECT_SERVICE, interval=TUNING.resync_seconds, initial_delay=TUNING.resync_seconds)
def service_resync(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> None:
    """Drift repair and refusals that another object may have cured since (a missing namespace
    created, a name holder deleted)."""
    assert namespace is not None
    status = dict(body.status)
    if needs_retry({"status": status}):
        _guard(f"retrying {namespace}/{name}", lambda: reconcile_service(ctx(), namespace, name))
    _guard(f"refreshing {namespace}/{name}", lambda: _coalesced_refresh(namespace, name))
    spec, cns = dict(body.spec), status.get("namespace")
    _guard(f"autoRedeploy of {namespace}/{name}", lambda: _auto_redeploy(namespace, name, spec, cns))
    # Services with a certificate: they serve TLS, or call TLS endpoints (their certificate for mutual TLS).
    if _serves_tls(spec) or status.get("tlsCertificate"):
        _guard(f"TLS certificate of {namespace}/{name}", lambda: maintain_tls(ctx(), namespace, name))


def _serves_tls(spec: dict[str, Any]) -> bool:
    """Cheap test on the raw spec (the timer runs for every service): any services[].tls."""
    scc = spec.get("serviceConnectConfiguration") or {}
    return any(isinstance(s, dict) and s.get("tls") is not None for s in scc.get("services") or [])


def _auto_redeploy(namespace: str, name: str, spec: dict[str, Any], cns: str | None) -> None:
    """The autoRedeploy policy; nothing at all (no request) for services without it."""
    c = ctx()
    if policy_applies(c, spec, cns):
        check_auto_redeploy(c, namespace, name, _bind(reconcile_service, c, namespace, name))


# -- workload events → status --------------------------------------------------------------------------

_pending: dict[tuple[str, str], int] = {}
_pending_lock = threading.Lock()


def _coalesced_refresh(namespace: str, name: str) -> None:
    """Refresh once for a burst: requests queued behind a running refresh collapse into the last one."""
    key = (namespace, name)
    with _pending_lock:
        token = _pending.get(key, 0) + 1
        _pending[key] = token
    c = ctx()
    with c.service_lock(namespace, name), _pending_lock:
        if _pending.get(key) != token:
            return
    refresh_status(c, namespace, name)


def _service_of(namespace: str, label: str) -> str | None:
    """The ConnectService whose label value is ``label`` (names over 63 characters are shortened)."""
    if label == label_value(label) and len(label) < 63:
        return label  # the label is the name itself (the refresh returns quietly if it is gone)
    for svc in ctx().kube.list(CONNECT_SERVICES, namespace):
        if label_value(svc["metadata"]["name"]) == label:
            return str(svc["metadata"]["name"])
    return None


def _workload_event(namespace: str | None, labels: kopf.Labels) -> None:
    label = labels.get(SERVICE_LABEL)
    if not namespace or not label:
        return
    service = _service_of(namespace, label)
    if service is not None:
        _guard(f"refreshing {namespace}/{service}", lambda: _coalesced_refresh(namespace, service))


@kopf.on.event("pods", labels=MANAGED)
def pod_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _workload_event(namespace, labels)


def _deadline_exceeded(status: kopf.Status, **_: Any) -> bool:
    return any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )


@kopf.on.event("deployments.apps", labels=MANAGED, when=_deadline_exceeded)
def deployment_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """Only the progress deadline is news here: pods carry everything else the status needs."""
    _workload_event(namespace, labels)


# -- ConnectNamespace and Kubernetes Namespace -------------------------------------------------------------


@kopf.on.resume(CONNECT_NAMESPACE)
@kopf.on.create(CONNECT_NAMESPACE)
def namespace_created(name: str, body: kopf.Body, **_: Any) -> None:
    ctx().note_namespace_policy(name, dict(body.spec))
    obj = {"metadata": dict(body.metadata), "status": dict(body.status)}
    _guard(f"initialising {name}", lambda: initialise(ctx(), obj))
    _retry_waiting(None)


@kopf.on.update(CONNECT_NAMESPACE, field="spec")
def namespace_spec_changed(name: str, spec: kopf.Spec, **_: Any) -> None:
    """Remember the default autoRedeploy policy; services apply it at their next resync. A link added
    or removed is acted on now rather than at the next poll."""
    ctx().note_namespace_policy(name, dict(spec))
    _guard(f"linking {name}", lambda: _sync_peers(name))


def _links(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return needs_sync(dict(spec), dict(status))


@kopf.timer(CONNECT_NAMESPACE, interval=PEER_SYNC_SECONDS, backoff=PEER_SYNC_SECONDS, when=_links)
def namespace_peers(name: str, **_: Any) -> None:
    """Read the linked clusters (each failure is recorded per peer, never raised: local work goes on)."""
    _guard(f"linking {name}", lambda: _sync_peers(name))


def _sync_peers(name: str) -> None:
    sync_peers(ctx(), peer_clients(), name)


@kopf.on.delete(CONNECT_NAMESPACE)
def namespace_deleted(name: str, **_: Any) -> None:
    """Hold the deletion (kopf keeps the finalizer) while services are registered."""
    try:
        _guard(f"checking {name}", lambda: check_deletable(ctx(), name))
    except NamespaceInUse as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from exc


@kopf.on.update("namespaces", field="metadata.labels")
def k8s_namespace_labels(name: str, **_: Any) -> None:
    """A default ConnectNamespace may have been named: retry the services refused for lack of one."""
    ctx().invalidate_namespace(name)
    _retry_waiting(name)


def _retry_waiting(namespace: str | None) -> None:
    c = ctx()
    for svc in c.kube.list(CONNECT_SERVICES, namespace):
        if needs_retry(svc):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            _guard(f"retrying {ns}/{name}", _bind(reconcile_service, c, ns, name))


def _bind(fn: Callable[[Context, str, str], None], c: Context, ns: str, name: str) -> Callable[[], None]:
    return lambda: fn(c, ns, name)


# The admission webhooks register themselves here when SERVICECONNECT_WEBHOOK_ENABLED is true.
from sc_operator import webhooks  # noqa: E402, F401
