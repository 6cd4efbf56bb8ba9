"""What every reconcile body shares: the API client, the settings, per-service locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sc_operator.kube import Kube
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

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
