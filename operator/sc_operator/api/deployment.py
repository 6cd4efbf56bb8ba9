"""``ConnectDeployment``: one rollout of a ConnectService, created by the operator, read-only to users.

Its spec is the snapshot the rollout runs with: the task definition hash, the Service Connect
configuration and the namespace's endpoints pinned when the rollout started (ECS: existing tasks do not
see endpoints added later, until their service is redeployed).
"""

from __future__ import annotations

from datetime import datetime

from sc_operator.api.common import ApiModel, Condition, Count, Endpoint, StatusModel
from sc_operator.api.service import DeploymentStatus, RolloutState, ServiceConnectConfiguration
from sc_operator.api.taskdef import TaskDefinition


class ConnectDeploymentSpec(ApiModel):
    """What the rollout runs: fixed at creation."""

    service: str
    """The name of the owning ConnectService (same Kubernetes namespace)."""
    task_definition_hash: str
    """A digest of the task definition and Service Connect configuration; a change means a new rollout."""
    task_definition: TaskDefinition | None = None
    """The task definition of this rollout, kept so a circuit-breaker rollback can return to it."""
    desired_count: Count | None = None
    namespace: str | None = None
    """The ConnectNamespace whose endpoints are pinned; unset when Service Connect is off."""
    namespace_revision: Count | None = None
    """The ConnectNamespace revision the endpoints were read at."""
    service_connect_configuration: ServiceConnectConfiguration | None = None
    endpoints: list[Endpoint] | None = None
    """The namespace's endpoints as pinned for this rollout's tasks."""


class ConnectDeploymentStatus(StatusModel):
    """ECS deployment state, read from the Deployment and its ReplicaSets."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    status: DeploymentStatus | None = None
    rollout_state: RolloutState | None = None
    rollout_state_reason: str | None = None
    desired_count: Count | None = None
    running_count: Count | None = None
    pending_count: Count | None = None
    failed_tasks: Count | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
