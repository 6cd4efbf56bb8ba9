"""The registry's pure changes: idempotent, no duplicates, revision +1 per real change."""

from __future__ import annotations

import pytest

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.registry import Registry, RegistryConflict, deregister, register, set_tasks

A = ServiceRef(namespace="shop", name="a")
B = ServiceRef(namespace="shop", name="b")


def ep(svc: ServiceRef, discovery: str, dns: str | None = None, port: int = 80) -> Endpoint:
    return Endpoint(discovery_name=discovery, dns_name=dns or discovery, port=port, service=svc)


def test_register_adds_endpoints_and_bumps_revision_once() -> None:
    reg = register(Registry(), A, [ep(A, "web"), ep(A, "api", port=8080)], tasks=2)
    assert reg is not None
    assert reg.revision == 1
    assert [e.discovery_name for e in reg.endpoints] == ["api", "web"]
    assert (reg.service_count, reg.task_count) == (1, 2)


def test_register_same_set_again_is_a_noop() -> None:
    reg = register(Registry(), A, [ep(A, "web")])
    assert reg is not None
    assert register(reg, A, [ep(A, "web")]) is None
    assert register(reg, A, [ep(A, "web"), ep(A, "web")]) is None


def test_reregister_replaces_the_services_endpoints() -> None:
    reg = register(Registry(), A, [ep(A, "web")])
    assert reg is not None
    reg2 = register(reg, A, [ep(A, "web2")])
    assert reg2 is not None
    assert [e.discovery_name for e in reg2.endpoints] == ["web2"]
    assert reg2.revision == 2


def test_client_only_service_is_a_member_without_endpoints() -> None:
    reg = register(Registry(), A, [])
    assert reg is not None
    assert reg.endpoints == ()
    assert reg.holders() == [A]
    assert reg.revision == 1


def test_duplicate_discovery_name_is_refused_naming_the_holder() -> None:
    reg = register(Registry(), A, [ep(A, "web")])
    assert reg is not None
    with pytest.raises(RegistryConflict, match="shop/a") as info:
        register(reg, B, [ep(B, "web", dns="other")])
    assert info.value.rule == "DuplicateDiscoveryName"


def test_duplicate_dns_name_and_port_is_refused_but_other_port_is_fine() -> None:
    reg = register(Registry(), A, [ep(A, "web", dns="web.local", port=80)])
    assert reg is not None
    with pytest.raises(RegistryConflict) as info:
        register(reg, B, [ep(B, "web-b", dns="web.local", port=80)])
    assert info.value.rule == "DuplicateClientAlias"
    assert register(reg, B, [ep(B, "web-b", dns="web.local", port=81)]) is not None


def test_a_discovery_name_that_is_another_services_dns_name_is_refused_naming_both() -> None:
    reg = register(Registry(), A, [ep(A, "web", dns="cache", port=80)])
    assert reg is not None
    with pytest.raises(RegistryConflict) as info:
        register(reg, B, [ep(B, "cache", dns="cache.local", port=6379)])
    assert info.value.rule == "ClientNameCollision"
    assert info.value.holder == A
    assert "discoveryName 'cache' of ConnectService shop/b" in info.value.message
    assert "dnsName of endpoint 'web' of ConnectService shop/a" in info.value.message


def test_shared_port_names_are_registered() -> None:
    shared = Endpoint(discovery_name="orders", port_name="http", dns_name="orders", port=80, service=A)
    reg = register(Registry(), A, [shared])
    assert reg is not None
    other = Endpoint(discovery_name="http", port_name="http", dns_name="http", port=80, service=B)
    assert register(reg, B, [other]) is not None


def test_deregister_removes_and_bumps_and_is_idempotent() -> None:
    reg = register(Registry(), A, [ep(A, "web")])
    assert reg is not None
    reg = register(reg, B, [ep(B, "api")])
    assert reg is not None
    gone = deregister(reg, A)
    assert gone is not None
    assert [e.discovery_name for e in gone.endpoints] == ["api"]
    assert gone.revision == reg.revision + 1
    assert deregister(gone, A) is None


def test_task_counts_do_not_bump_revision() -> None:
    reg = register(Registry(), A, [ep(A, "web")], tasks=1)
    assert reg is not None
    more = set_tasks(reg, A, 5)
    assert more is not None
    assert (more.task_count, more.revision) == (5, reg.revision)
    assert set_tasks(more, A, 5) is None
    assert set_tasks(more, B, 5) is None


def test_status_round_trip_keeps_foreign_fields() -> None:
    reg = register(Registry(), A, [ep(A, "web")], tasks=3)
    assert reg is not None
    status = {**reg.to_status(), "conditions": [{"type": "Ready", "status": "True"}]}
    back = Registry.from_status(status)
    assert back == reg
    assert back.to_status()["conditions"] == [{"type": "Ready", "status": "True"}]
    assert back.to_status()["serviceCount"] == 1
