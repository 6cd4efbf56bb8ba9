"""ECS deployment state of a service's ConnectDeployments, from what Kubernetes shows (pure functions).

ECS semantics (reference §9, DescribeServices):

- the newest deployment is ``PRIMARY``; an older one is ``ACTIVE`` while it still has tasks and
  ``INACTIVE`` once drained;
- the PRIMARY's ``rolloutState`` is ``IN_PROGRESS`` until it runs ``desiredCount`` ready tasks and no task
  of an older deployment is left, then ``COMPLETED``; ``COMPLETED`` and ``FAILED`` are final;
- the circuit breaker (``deploymentCircuitBreaker.enable``) fails the rollout when the failed-task
  threshold is reached — half the desired count rounded up, at least 3, at most 200 — or when the
  Deployment reports ``Progressing=False`` with reason ``ProgressDeadlineExceeded``; with ``rollback`` the
  service returns to the newest COMPLETED deployment.

What counts as a failed task. ECS replaces a task whose essential container stops; Kubernetes restarts
the container in place instead. So each container exit with a non-zero code counts as one failed task:
a pod contributes the sum of its containers' ``restartCount`` plus one for a container currently
terminated non-zero, and at least one if the pod's phase is ``Failed``. A deployment's ``failedTasks``
never decreases (pods that fail and are replaced must still count towards the threshold).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sc_operator.api.service import DeploymentStatus, RolloutState

DEPLOYMENT_LABEL = "serviceconnect.dev/deployment"


def failed_task_threshold(desired: int) -> int:
    """ECS's circuit-breaker threshold: ceil(desired / 2), clamped to 3..200."""
    return min(200, max(3, math.ceil(desired / 2)))


@dataclass(frozen=True)
class PodView:
    """What the rollout needs of one pod."""

    deployment: str
    ready: bool
    failures: int
    active: bool
    """Not terminating and not finished: the pod occupies a task slot."""


def _container_failures(statuses: Iterable[Mapping[str, Any]]) -> int:
    total = 0
    for cs in statuses:
        total += int(cs.get("restartCount") or 0)
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and int(terminated.get("exitCode") or 0) != 0:
            total += 1
    return total


def pod_view(pod: Mapping[str, Any]) -> PodView | None:
    """Read a pod (a plain dict as the API returns it); ``None`` if it belongs to no ConnectDeployment."""
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(DEPLOYMENT_LABEL)
    if not name:
        return None
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    terminating = bool(meta.get("deletionTimestamp"))
    failures = _container_failures(
        [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    )
    if phase == "Failed":
        failures = max(failures, 1)
    active = not terminating and phase not in ("Failed", "Succeeded")
    return PodView(
        deployment=name,
        ready=active and conditions.get("Ready") == "True",
        failures=failures,
        active=active,
    )


@dataclass(frozen=True)
class DeploymentState:
    """The ECS view of one ConnectDeployment (what goes into its status)."""

    name: str
    status: DeploymentStatus
    rollout_state: RolloutState | None
    rollout_state_reason: str | None
    desired_count: int
    running_count: int
    pending_count: int
    failed_tasks: int

    def status_fields(self) -> dict[str, Any]:
        """The wire form for ``.status`` (camelCase)."""
        return {
            "status": self.status,
            "rolloutState": self.rollout_state,
            "rolloutStateReason": self.rollout_state_reason,
            "desiredCount": self.desired_count,
            "runningCount": self.running_count,
            "pendingCount": self.pending_count,
            "failedTasks": self.failed_tasks,
        }


@dataclass(frozen=True)
class Previous:
    """A ConnectDeployment as last recorded: its name, prior state and whether it is a rollback."""

    name: str
    rollout_state: RolloutState | None = None
    rollout_state_reason: str | None = None
    failed_tasks: int = 0
    rollback: bool = False


@dataclass(frozen=True)
class Breaker:
    """deploymentCircuitBreaker."""

    enable: bool = False
    rollback: bool = False


@dataclass(frozen=True)
class Observation:
    """Everything observed about one service's rollouts."""

    desired_count: int
    deployments: Sequence[Previous]
    """Oldest first; the last one is the PRIMARY."""
    pods: Sequence[PodView] = ()
    deadline_exceeded: bool = False
    """The Deployment reports ProgressDeadlineExceeded for the PRIMARY's pod template."""
    breaker: Breaker = field(default_factory=Breaker)


@dataclass(frozen=True)
class Decision:
    """The computed states, and a rollback to perform (the name of the deployment to return to)."""

    states: tuple[DeploymentState, ...]
    rollback_to: str | None = None
    failed_now: str | None = None
    """The PRIMARY that turned FAILED in this evaluation (to report once)."""
    completed_now: str | None = None

    @property
    def primary(self) -> DeploymentState | None:
        return self.states[-1] if self.states else None


def evaluate(obs: Observation) -> Decision:
    """Compute every deployment's ECS state and the circuit breaker's decision."""
    if not obs.deployments:
        return Decision(states=())
    running: dict[str, int] = {}
    pending: dict[str, int] = {}
    failures: dict[str, int] = {}
    for pod in obs.pods:
        failures[pod.deployment] = failures.get(pod.deployment, 0) + pod.failures
        if pod.active:
            bucket = running if pod.ready else pending
            bucket[pod.deployment] = bucket.get(pod.deployment, 0) + 1

    *older, primary = obs.deployments
    states: list[DeploymentState] = []
    for prev in older:
        tasks = running.get(prev.name, 0) + pending.get(prev.name, 0)
        states.append(
            DeploymentState(
                name=prev.name,
                status="ACTIVE" if tasks else "INACTIVE",
                # Superseded before its first status was written: it was still in progress.
                rollout_state=prev.rollout_state or "IN_PROGRESS",
                rollout_state_reason=prev.rollout_state_reason or f"ECS deployment {prev.name} in progress.",
                desired_count=0,
                running_count=running.get(prev.name, 0),
                pending_count=pending.get(prev.name, 0),
                failed_tasks=max(prev.failed_tasks, failures.get(prev.name, 0)),
            )
        )

    old_tasks_left = sum(s.running_count + s.pending_count for s in states)
    run = running.get(primary.name, 0)
    failed = max(primary.failed_tasks, failures.get(primary.name, 0))
    state: RolloutState = primary.rollout_state or "IN_PROGRESS"
    reason = primary.rollout_state_reason
    failed_now = completed_now = rollback_to = None
    if state == "IN_PROGRESS":
        threshold = failed_task_threshold(obs.desired_count)
        if obs.breaker.enable and failed >= threshold:
            state, failed_now = "FAILED", primary.name
            reason = (
                f"ECS deployment circuit breaker: task failed to start ({failed} failed tasks reached the "
                f"threshold of {threshold})."
            )
        elif obs.breaker.enable and obs.deadline_exceeded:
            state, failed_now = "FAILED", primary.name
            reason = "ECS deployment circuit breaker: the rollout exceeded its progress deadline."
        elif run >= obs.desired_count and old_tasks_left == 0:
            state, completed_now = "COMPLETED", primary.name
            reason = f"ECS deployment {primary.name} completed."
        else:
            reason = reason or f"ECS deployment {primary.name} in progress."
    if failed_now is not None and obs.breaker.rollback:
        target = next((p for p in reversed(older) if p.rollout_state == "COMPLETED"), None)
        if primary.rollback:
            reason = f"{reason} Not rolling back again: this deployment is itself a rollback."
        elif target is None:
            reason = f"{reason} No COMPLETED deployment to roll back to."
        else:
            rollback_to = target.name
            reason = f"{reason} Rolling back to {target.name}."
    states.append(
        DeploymentState(
            name=primary.name,
            status="PRIMARY",
            rollout_state=state,
            rollout_state_reason=reason,
            desired_count=obs.desired_count,
            running_count=run,
            pending_count=pending.get(primary.name, 0),
            failed_tasks=failed,
        )
    )
    return Decision(
        states=tuple(states), rollback_to=rollback_to, failed_now=failed_now, completed_now=completed_now
    )


def deadline_exceeded(deployment: Mapping[str, Any] | None, primary: str) -> bool:
    """Whether an apps/v1 Deployment reports ProgressDeadlineExceeded for ``primary``'s pod template."""
    if not deployment:
        return False
    template_labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels"
    ) or {}
    if template_labels.get(DEPLOYMENT_LABEL) != primary:
        return False
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "Progressing"
            and cond.get("status") == "False"
            and cond.get("reason") == "ProgressDeadlineExceeded"
        ):
            return True
    return False
