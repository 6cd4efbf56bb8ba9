"""ECS deployment states and the circuit breaker, computed from pods (plain dicts as the API returns)."""

from __future__ import annotations

from typing import Any

import pytest

from sc_operator.rollout import (
    Breaker,
    Observation,
    Previous,
    deadline_exceeded,
    evaluate,
    failed_task_threshold,
    pod_view,
)


def pod(cd: str, *, ready: bool = True, phase: str = "Running", restarts: int = 0, **meta: Any) -> Any:
    view = pod_view(
        {
            "metadata": {"labels": {"serviceconnect.dev/deployment": cd}, **meta},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [{"name": "app", "restartCount": restarts, "state": {"running": {}}}],
            },
        }
    )
    assert view is not None
    return view


@pytest.mark.parametrize(("desired", "threshold"), [(1, 3), (6, 3), (7, 4), (10, 5), (399, 200), (1000, 200)])
def test_failed_task_threshold_is_half_clamped_3_to_200(desired: int, threshold: int) -> None:
    assert failed_task_threshold(desired) == threshold


def test_new_rollout_in_progress_until_old_tasks_are_gone() -> None:
    obs = Observation(
        desired_count=2,
        deployments=[Previous("a", "COMPLETED"), Previous("b")],
        pods=[pod("a"), pod("b"), pod("b")],
    )
    d = evaluate(obs)
    old, new = d.states
    assert (old.status, old.running_count, old.desired_count) == ("ACTIVE", 1, 0)
    assert (new.status, new.rollout_state, new.running_count) == ("PRIMARY", "IN_PROGRESS", 2)
    assert d.completed_now is None


def test_rollouts_without_a_recorded_status_are_in_progress() -> None:
    """The operator writes a ConnectDeployment's first status at its first refresh; one superseded before
    that was still in progress, as the new PRIMARY is."""
    d = evaluate(Observation(desired_count=1, deployments=[Previous("a"), Previous("b")], pods=[pod("a")]))
    old, new = d.states
    assert (old.status, old.rollout_state, old.rollout_state_reason) == (
        "ACTIVE",
        "IN_PROGRESS",
        "ECS deployment a in progress.",
    )
    assert (new.status, new.rollout_state, new.rollout_state_reason) == (
        "PRIMARY",
        "IN_PROGRESS",
        "ECS deployment b in progress.",
    )


def test_completed_when_desired_ready_and_old_drained() -> None:
    obs = Observation(
        desired_count=2, deployments=[Previous("a", "COMPLETED"), Previous("b")], pods=[pod("b")] * 2
    )
    d = evaluate(obs)
    assert [s.status for s in d.states] == ["INACTIVE", "PRIMARY"]
    assert d.states[-1].rollout_state == "COMPLETED"
    assert d.completed_now == "b"


def test_terminating_pods_still_hold_the_old_deployment_active_until_gone() -> None:
    term = pod("a", deletionTimestamp="2026-01-01T00:00:00Z")
    obs = Observation(
        desired_count=1, deployments=[Previous("a", "COMPLETED"), Previous("b")], pods=[term, pod("b")]
    )
    assert [s.status for s in evaluate(obs).states] == ["INACTIVE", "PRIMARY"]


def test_pending_pods_are_counted_as_pending() -> None:
    obs = Observation(desired_count=3, deployments=[Previous("a")], pods=[pod("a"), pod("a", ready=False)])
    s = evaluate(obs).states[0]
    assert (s.running_count, s.pending_count, s.rollout_state) == (1, 1, "IN_PROGRESS")


def test_failures_without_breaker_keep_the_rollout_in_progress() -> None:
    obs = Observation(desired_count=1, deployments=[Previous("a")], pods=[pod("a", ready=False, restarts=10)])
    s = evaluate(obs).states[0]
    assert (s.rollout_state, s.failed_tasks) == ("IN_PROGRESS", 10)


def test_breaker_fails_at_threshold_and_rolls_back_to_last_completed() -> None:
    prev = [Previous("a", "COMPLETED"), Previous("b", "COMPLETED"), Previous("c")]
    below = Observation(
        desired_count=4,
        deployments=prev,
        pods=[pod("c", ready=False, restarts=2)],
        breaker=Breaker(True, True),
    )
    assert evaluate(below).states[-1].rollout_state == "IN_PROGRESS"
    at = Observation(
        desired_count=4,
        deployments=prev,
        pods=[pod("c", ready=False, restarts=2), pod("c", phase="Failed", ready=False)],
        breaker=Breaker(True, True),
    )
    d = evaluate(at)
    assert d.states[-1].rollout_state == "FAILED"
    assert d.failed_now == "c"
    assert d.rollback_to == "b"
    assert "3 failed tasks" in (d.states[-1].rollout_state_reason or "")


def test_breaker_without_rollback_fails_but_does_not_roll_back() -> None:
    obs = Observation(
        desired_count=1,
        deployments=[Previous("a", "COMPLETED"), Previous("b")],
        pods=[pod("b", ready=False, restarts=3)],
        breaker=Breaker(True, False),
    )
    d = evaluate(obs)
    assert (d.states[-1].rollout_state, d.rollback_to) == ("FAILED", None)


def test_failed_tasks_never_decrease_when_pods_are_replaced() -> None:
    obs = Observation(
        desired_count=1,
        deployments=[Previous("a", "COMPLETED"), Previous("b", failed_tasks=3)],
        pods=[],
        breaker=Breaker(True, True),
    )
    d = evaluate(obs)
    assert d.states[-1].failed_tasks == 3
    assert d.rollback_to == "a"


def test_a_failing_rollback_does_not_roll_back_again() -> None:
    obs = Observation(
        desired_count=1,
        deployments=[Previous("a", "COMPLETED"), Previous("b", "FAILED"), Previous("c", rollback=True)],
        pods=[pod("c", ready=False, restarts=5)],
        breaker=Breaker(True, True),
    )
    d = evaluate(obs)
    assert (d.states[-1].rollout_state, d.rollback_to) == ("FAILED", None)


def test_final_states_stay_final() -> None:
    obs = Observation(
        desired_count=1,
        deployments=[Previous("a", "COMPLETED", "done")],
        pods=[pod("a", ready=False, restarts=50)],
        breaker=Breaker(True, True),
    )
    d = evaluate(obs)
    assert (d.states[-1].rollout_state, d.failed_now) == ("COMPLETED", None)


def test_progress_deadline_counts_only_for_the_primarys_template() -> None:
    dep = {
        "spec": {"template": {"metadata": {"labels": {"serviceconnect.dev/deployment": "b"}}}},
        "status": {
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        },
    }
    assert deadline_exceeded(dep, "b")
    assert not deadline_exceeded(dep, "c")
    obs = Observation(
        desired_count=1, deployments=[Previous("b")], deadline_exceeded=True, breaker=Breaker(True, False)
    )
    assert evaluate(obs).states[-1].rollout_state == "FAILED"


def test_pod_without_deployment_label_is_ignored() -> None:
    assert pod_view({"metadata": {"labels": {}}, "status": {}}) is None
