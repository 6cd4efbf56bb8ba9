"""What every reconcile body shares: the API client, the settings, per-service locks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sc_operator.api.service import AutoRedeploy
from sc_operator.kube import CONNECT_NAMESPACES, NAMESPACES, Kube
from sc_operator.registry import RegistryWriter
from sc_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

#: The Kubernetes Namespace label naming the default ConnectNamespace of services that omit one
#: (ECS: the cluster's serviceConnectDefaults).
DEFAULT_NAMESPACE_LABEL = "serviceconnect.dev/default-namespace"


@dataclass(frozen=True)
class Tuning:
    """Operator behaviour that is not rendering (CLI options of ``sc-operator``)."""

    progress_deadline_seconds: int = 600
    """The Deployments' progressDeadlineSeconds: the circuit breaker's second trigger."""
    resync_seconds: float = 30.0
    """How often each ConnectService's status is recomputed even without a watch event."""
    max_events: int = 10
    """How many recent events a ConnectService's status keeps (Kubernetes Events keep the rest)."""
    keep_inactive: int = 5
    """INACTIVE ConnectDeployments kept per service as history (older ones are deleted)."""


@dataclass
class Context:
    """Shared by all handlers of one operator process."""

    kube: Kube
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    tuning: Tuning = field(default_factory=Tuning)
    registry: RegistryWriter = field(init=False)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _ns_labels: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict)
    #: Seconds a Kubernetes Namespace's labels are reused; label changes also invalidate (handlers.py).
    ns_label_ttl: float = 10.0
    #: Wall clock for the autoRedeploy rate limit (tests inject their own).
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: spec.autoRedeploy of each ConnectNamespace, kept current by its handlers (handlers.py).
    _ns_policies: dict[str, AutoRedeploy | None] = field(default_factory=dict)
    #: spec.tls of each ConnectNamespace (its default CA), kept the same way.
    _ns_tls: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry = RegistryWriter(self.kube)

    @contextmanager
    def service_lock(self, namespace: str, name: str) -> Iterator[None]:
        """Serialise work on one service: kopf runs its handler and the pod-event handlers that
        refresh its status in different workers, and both may roll it back or re-render it."""
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            yield

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The Kubernetes Namespace's labels, cached briefly: hundreds of services in one namespace
        arriving at once would otherwise read the same Namespace hundreds of times."""
        now = time.monotonic()
        with self._guard:
            hit = self._ns_labels.get(namespace)
        if hit is not None and now - hit[0] < self.ns_label_ttl:
            return dict(hit[1])
        labels = dict(self.kube.get(NAMESPACES, namespace)["metadata"].get("labels") or {})
        with self._guard:
            self._ns_labels[namespace] = (now, labels)
        return dict(labels)

    def invalidate_namespace(self, namespace: str) -> None:
        with self._guard:
            self._ns_labels.pop(namespace, None)

    def note_namespace_policy(self, name: str, spec: dict[str, Any] | None) -> None:
        """Remember a ConnectNamespace's default autoRedeploy (from a watch event's body)."""
        raw = (spec or {}).get("autoRedeploy")
        policy = None
        if isinstance(raw, dict):
            try:
                policy = AutoRedeploy.model_validate(raw)
            except ValidationError as exc:  # the CRD schema refuses this already; be loud if it slips by
                log.warning("ConnectNamespace %s: spec.autoRedeploy ignored: %s", name, exc)
        tls = (spec or {}).get("tls")
        with self._guard:
            self._ns_policies[name] = policy
            self._ns_tls[name] = dict(tls) if isinstance(tls, dict) else None

    def namespace_policy(self, name: str) -> AutoRedeploy | None:
        """A ConnectNamespace's default autoRedeploy: remembered from its events, else read once.

        Read from memory because services consult it on every resync, and reading the ConnectNamespace
        means reading its whole registry."""
        with self._guard:
            if name in self._ns_policies:
                return self._ns_policies[name]
        obj = self.kube.get_or_none(CONNECT_NAMESPACES, name)
        self.note_namespace_policy(name, (obj or {}).get("spec"))
        with self._guard:
            return self._ns_policies.get(name)

    def namespace_tls(self, name: str) -> dict[str, Any] | None:
        """A ConnectNamespace's spec.tls (its default CA), remembered like its policy."""
        with self._guard:
            if name in self._ns_tls:
                return self._ns_tls[name]
        obj = self.kube.get_or_none(CONNECT_NAMESPACES, name)
        self.note_namespace_policy(name, (obj or {}).get("spec"))
        with self._guard:
            return self._ns_tls.get(name)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
