"""When an unchanged service is redeployed: forceNewDeployment tokens and the autoRedeploy policy (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sc_operator.api import ConnectNamespaceSpec, ConnectServiceSpec
from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.api.service import AutoRedeploy, RolloutState
from sc_operator.redeploy import (
    DEFAULT_MIN_INTERVAL_SECONDS,
    NEW_ENDPOINTS,
    Current,
    Policy,
    decide_auto_redeploy,
    force_requested,
    resolve_policy,
    unpinned_endpoints,
)

WEB = ServiceRef(namespace="shop", name="web")
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ON = Policy(on_new_endpoints=True, min_interval_seconds=300, source="service")


def ep(name: str, owner: str = "orders", port: int = 80, k8s_ns: str = "shop") -> Endpoint:
    return Endpoint(
        discovery_name=name, dns_name=name, port=port, service=ServiceRef(namespace=k8s_ns, name=owner)
    )


def current(
    state: RolloutState | None = "COMPLETED", *, rollback: bool = False, last_auto: datetime | None = T0
) -> Current:
    return Current(name="web-abc", rollout_state=state, rollback=rollback, last_auto_redeploy=last_auto)


ORDERS, PAYMENTS, OWN = ep("orders"), ep("payments", "payments"), ep("web", "web")


# -- forceNewDeployment -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "recorded", "forced"),
    [
        ("t1", None, True),  # first token ever
        ("t2", "t1", True),  # a new token
        ("t1", "t1", False),  # the same token again does nothing
        (None, "t1", False),  # removing the token does nothing
        (None, None, False),
    ],
)
def test_force_is_a_token_that_differs_from_the_current_deployments(
    token: str | None, recorded: str | None, forced: bool
) -> None:
    assert force_requested(token, recorded) is forced


def test_force_token_is_a_spec_field_with_bounds() -> None:
    spec = {"taskDefinition": {"family": "a", "containerDefinitions": [{"name": "a", "image": "i"}]}}
    assert ConnectServiceSpec.model_validate({**spec, "forceNewDeployment": "x"}).force_new_deployment == "x"
    with pytest.raises(ValidationError, match="forceNewDeployment"):
        ConnectServiceSpec.model_validate({**spec, "forceNewDeployment": ""})
    with pytest.raises(ValidationError, match="minIntervalSeconds"):
        ConnectServiceSpec.model_validate({**spec, "autoRedeploy": {"minIntervalSeconds": -1}})
    with pytest.raises(ValidationError, match="onNewEndpoint"):
        ConnectNamespaceSpec.model_validate({"autoRedeploy": {"onNewEndpoint": True}})  # misspelt


# -- policy resolution ----------------------------------------------------------------------------------


def test_policy_is_off_unless_asked_for() -> None:
    assert resolve_policy(None, None) == Policy(False, DEFAULT_MIN_INTERVAL_SECONDS, "default")
    assert resolve_policy(AutoRedeploy(min_interval_seconds=60), None).on_new_endpoints is False


def test_service_overrides_namespace_default_field_by_field() -> None:
    ns_default = AutoRedeploy(on_new_endpoints=True, min_interval_seconds=600)
    assert resolve_policy(None, ns_default) == Policy(True, 600, "namespace")
    # The service keeps the namespace's switch and sets its own interval...
    assert resolve_policy(AutoRedeploy(min_interval_seconds=60), ns_default) == Policy(True, 60, "namespace")
    # ...or opts out of the namespace's default.
    assert resolve_policy(AutoRedeploy(on_new_endpoints=False), ns_default) == Policy(False, 600, "service")
    assert resolve_policy(AutoRedeploy(on_new_endpoints=True), None) == Policy(True, 300, "service")


# -- which endpoints are news ---------------------------------------------------------------------------


def test_unpinned_are_other_services_endpoints_added_since_the_pin() -> None:
    assert unpinned_endpoints([ORDERS], [ORDERS, PAYMENTS, OWN], WEB) == (PAYMENTS,)
    # Removed endpoints are not news; the service's own endpoints never are.
    assert unpinned_endpoints([ORDERS, PAYMENTS], [ORDERS], WEB) == ()
    assert unpinned_endpoints([], [OWN], WEB) == ()
    # A server that moved its alias to another port is a new endpoint for its clients.
    assert unpinned_endpoints([ORDERS], [ep("orders", port=8080)], WEB) == (ep("orders", port=8080),)
    # A service of the same name in another Kubernetes namespace is another service.
    other = ep("web2", "web", k8s_ns="other")
    assert unpinned_endpoints([], [other], WEB) == (other,)


# -- the decision ---------------------------------------------------------------------------------------


def test_off_never_redeploys() -> None:
    d = decide_auto_redeploy(Policy(), current(), [ORDERS], [ORDERS, PAYMENTS], WEB, T0 + timedelta(days=1))
    assert (d.redeploy, d.reason) == (False, "Disabled")


def test_nothing_new_nothing_to_do() -> None:
    d = decide_auto_redeploy(ON, current(), [ORDERS], [ORDERS, OWN], WEB, T0 + timedelta(days=1))
    assert (d.redeploy, d.reason) == (False, "UpToDate")


def test_new_endpoint_after_the_interval_redeploys_and_says_why() -> None:
    d = decide_auto_redeploy(ON, current(), [ORDERS], [ORDERS, PAYMENTS], WEB, T0 + timedelta(seconds=300))
    assert d.redeploy
    assert d.reason == NEW_ENDPOINTS
    assert d.new_endpoints == ("payments:80",)
    assert "payments:80" in d.message
    assert "service policy" in d.message


def test_first_automatic_redeploy_is_not_rate_limited() -> None:
    d = decide_auto_redeploy(ON, current(last_auto=None), [ORDERS], [ORDERS, PAYMENTS], WEB, T0)
    assert d.redeploy


def test_rate_limit_counts_from_the_last_automatic_redeploy() -> None:
    now = T0 + timedelta(seconds=299)
    d = decide_auto_redeploy(ON, current(), [ORDERS], [ORDERS, PAYMENTS], WEB, now)
    assert (d.redeploy, d.reason) == (False, "RateLimited")
    assert d.not_before == T0 + timedelta(seconds=300)
    assert "2026-01-01T12:05:00Z" in d.message
    assert "after the last automatic redeploy" in d.message
    # The clock moves on: the same observation now redeploys.
    later = decide_auto_redeploy(ON, current(), [ORDERS], [ORDERS, PAYMENTS], WEB, d.not_before)
    assert later.redeploy


def test_interval_zero_only_waits_for_the_rollout() -> None:
    zero = Policy(True, 0, "service")
    assert decide_auto_redeploy(zero, current(), [], [PAYMENTS], WEB, T0).redeploy
    assert not decide_auto_redeploy(zero, current("IN_PROGRESS"), [], [PAYMENTS], WEB, T0).redeploy


@pytest.mark.parametrize("state", ["IN_PROGRESS", None])
def test_never_while_a_rollout_is_in_progress(state: RolloutState | None) -> None:
    d = decide_auto_redeploy(ON, current(state), [], [PAYMENTS], WEB, T0 + timedelta(days=1))
    assert (d.redeploy, d.reason) == (False, "RolloutInProgress")
    assert d.new_endpoints == ("payments:80",)


def test_never_after_the_circuit_breaker_failed_the_rollout() -> None:
    d = decide_auto_redeploy(ON, current("FAILED"), [], [PAYMENTS], WEB, T0 + timedelta(days=1))
    assert (d.redeploy, d.reason) == (False, "CircuitBreaker")
    assert "failed" in d.message
    assert "forceNewDeployment" in d.message


@pytest.mark.parametrize("state", ["COMPLETED", "IN_PROGRESS", "FAILED"])
def test_never_after_a_rollback_whatever_its_state(state: RolloutState) -> None:
    """A redeploy would deploy the spec's definition, the one the breaker rolled back from."""
    d = decide_auto_redeploy(ON, current(state, rollback=True), [], [PAYMENTS], WEB, T0 + timedelta(days=1))
    assert (d.redeploy, d.reason) == (False, "CircuitBreaker")
    assert "rolled back" in d.message


def test_message_bounds_the_list_of_new_endpoints() -> None:
    many = [ep(f"s{i:03d}", f"s{i:03d}") for i in range(25)]
    d = decide_auto_redeploy(ON, current(), [], many, WEB, T0 + timedelta(days=1))
    assert d.redeploy
    assert len(d.new_endpoints) == 25
    assert "and 15 more" in d.message


def test_a_tls_switch_is_news_to_clients_that_pinned_the_endpoint() -> None:
    """A client keeps what it pinned (plaintext or TLS): with autoRedeploy it re-pins after a switch."""
    tls_orders = ORDERS.model_copy(update={"tls": True})
    assert unpinned_endpoints([ORDERS], [tls_orders], WEB) == (tls_orders,)
    assert unpinned_endpoints([tls_orders], [ORDERS], WEB) == (ORDERS,)
    assert unpinned_endpoints([tls_orders], [tls_orders], WEB) == ()
