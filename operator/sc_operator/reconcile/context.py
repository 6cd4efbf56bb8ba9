"""What every reconcile body shares: the API client, the settings, per-service locks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sc_operator.kube import NAMESPACES, Kube
from sc_operator.registry import RegistryWriter
from sc_operator.settings import OperatorSettings

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

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
