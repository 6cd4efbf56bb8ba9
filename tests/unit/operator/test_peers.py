"""Linked clusters, the pure part: merging a peer's endpoints, conflicts naming both owners, staleness
with an injected clock, unlinking, and the mirrored discovery objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.peer_client import backends_of
from sc_operator.peer_mirror import Backend, ready_backends, render_mirror_service, render_mirror_slices
from sc_operator.peers import (
    HEARTBEAT,
    Reached,
    Refused,
    Unreached,
    check_peers,
    peer_endpoints,
    summary,
    sync,
)
from sc_operator.registry import Registry, RegistryConflict, deregister, register
from sc_operator.render.names import headless_service_name
from sc_operator.validation.registry import StaticRegistry

WEB = ServiceRef(namespace="shop", name="web")
API = ServiceRef(namespace="shop", name="api")
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def ep(svc: ServiceRef, discovery: str, cluster: str | None = None, port: int = 80) -> Endpoint:
    return Endpoint(discovery_name=discovery, dns_name=discovery, port=port, service=svc, cluster=cluster)


def remote(svc: ServiceRef, discovery: str, cluster: str = "a") -> Endpoint:
    return ep(svc, discovery, cluster)


def peers_status(reg: Registry) -> dict[str, dict[str, object]]:
    return {p["cluster"]: p for p in reg.extra["peers"]}


def condition(reg: Registry) -> dict[str, object]:
    return next(c for c in reg.extra["conditions"] if c["type"] == "PeersSynced")


def test_peer_endpoints_are_the_peers_own_marked_with_its_name() -> None:
    status = {
        "endpoints": [
            ep(WEB, "web").model_dump(mode="json", by_alias=True, exclude_none=True),
            # mirrored by the peer from a third cluster: not republished (no loops)
            ep(API, "api", cluster="c").model_dump(mode="json", by_alias=True, exclude_none=True),
        ]
    }
    got = peer_endpoints("a", status)
    assert [(e.discovery_name, e.cluster) for e in got] == [("web", "a")]


def test_reached_peer_is_mirrored_and_the_revision_grows() -> None:
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    assert [(e.discovery_name, e.cluster) for e in reg.endpoints] == [("web", "a")]
    assert reg.revision == 1
    assert peers_status(reg)["a"]["reachable"] is True
    assert peers_status(reg)["a"]["lastSyncTime"] == "2026-01-01T12:00:00Z"
    assert condition(reg)["status"] == "True"
    # The same answer a moment later writes nothing; after the heartbeat only the time moves.
    assert sync(reg, [Reached("a", (remote(WEB, "web"),))], T0 + timedelta(seconds=5)) is None
    later = sync(reg, [Reached("a", (remote(WEB, "web"),))], T0 + HEARTBEAT)
    assert later is not None
    assert later.revision == 1


def test_unreachable_peer_keeps_its_endpoints_stale_with_the_time() -> None:
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    down = sync(reg, [Unreached("a", "connection refused")], T0 + timedelta(minutes=2))
    assert down is not None
    assert down.endpoints == reg.endpoints
    assert down.revision == reg.revision
    state = peers_status(down)["a"]
    assert state["stale"] is True
    assert state["reachable"] is False
    assert state["unreachableSince"] == "2026-01-01T12:02:00Z"
    assert state["lastSyncTime"] == "2026-01-01T12:00:00Z"
    cond = condition(down)
    assert (cond["status"], cond["reason"]) == ("False", "PeerUnreachable")
    assert "connection refused" in str(cond["message"])
    assert "12:00:00Z" in str(cond["message"])
    # Still down later: the "since" does not move, nothing is written.
    assert sync(down, [Unreached("a", "connection refused")], T0 + timedelta(minutes=5)) is None
    # Back: converges to what the peer has now.
    back = sync(down, [Reached("a", (remote(WEB, "web2"),))], T0 + timedelta(minutes=6))
    assert back is not None
    assert [e.discovery_name for e in back.endpoints] == ["web2"]
    assert peers_status(back)["a"]["stale"] is False
    assert condition(back)["status"] == "True"


def test_a_failure_never_touches_local_endpoints() -> None:
    local = register(Registry(), API, [ep(API, "api")])
    assert local is not None
    down = sync(local, [Unreached("a", "timeout")], T0)
    assert down is not None
    assert down.endpoints == local.endpoints
    assert down.members == local.members


def test_peer_deregistering_removes_the_mirror() -> None:
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web"), remote(API, "api")))], T0)
    assert reg is not None
    fewer = sync(reg, [Reached("a", (remote(API, "api"),))], T0 + timedelta(seconds=1))
    assert fewer is not None
    assert [e.discovery_name for e in fewer.endpoints] == ["api"]
    assert fewer.revision == reg.revision + 1


def test_unlinking_removes_the_peers_endpoints_and_status() -> None:
    local = register(Registry(), API, [ep(API, "api")])
    assert local is not None
    reg = sync(local, [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    gone = sync(reg, [], T0 + timedelta(seconds=1))
    assert gone is not None
    assert [e.discovery_name for e in gone.endpoints] == ["api"]
    assert "peers" not in gone.extra
    assert condition(gone)["reason"] == "NoPeers"


def test_duplicate_across_clusters_is_not_mirrored_and_names_both_owners() -> None:
    local = register(Registry(), API, [ep(API, "web")])
    assert local is not None
    reg = sync(local, [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    assert [(e.discovery_name, e.cluster) for e in reg.endpoints] == [("web", None)]
    (conflict,) = peers_status(reg)["a"]["conflicts"]  # type: ignore[misc]
    assert "DuplicateDiscoveryName" in conflict
    assert "shop/web in cluster a" in conflict
    assert "ConnectService shop/api:" in conflict
    assert condition(reg)["reason"] == "NameConflict"


def test_two_peers_claiming_one_name_the_first_listed_keeps_it() -> None:
    reg = sync(
        Registry(), [Reached("a", (remote(WEB, "web", "a"),)), Reached("b", (remote(API, "web", "b"),))], T0
    )
    assert reg is not None
    assert [(e.discovery_name, e.cluster) for e in reg.endpoints] == [("web", "a")]
    assert "shop/api in cluster b" in peers_status(reg)["b"]["conflicts"][0]  # type: ignore[index]


def test_local_registration_of_a_name_a_peer_holds_is_refused_naming_the_peer() -> None:
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    with pytest.raises(RegistryConflict, match="shop/web in cluster a") as info:
        register(reg, API, [ep(API, "web")])
    assert info.value.rule == "DuplicateDiscoveryName"


def test_same_service_name_in_two_clusters_are_different_owners() -> None:
    """default/web here and default/web in cluster a: registering or deregistering the local one never
    touches the mirrored one."""
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web-a"),))], T0)
    assert reg is not None
    mine = register(reg, WEB, [ep(WEB, "web-b")])
    assert mine is not None
    assert sorted((e.discovery_name, e.cluster) for e in mine.endpoints) == [("web-a", "a"), ("web-b", None)]
    assert mine.endpoints_of(WEB) == (ep(WEB, "web-b"),)
    left = deregister(mine, WEB)
    assert left is not None
    assert [(e.discovery_name, e.cluster) for e in left.endpoints] == [("web-a", "a")]


def test_validation_names_the_cluster_of_the_holder() -> None:
    from sc_operator.validation import parse_and_validate
    from sc_operator.validation.registry import validate_registration
    from support.operator import service_body

    spec, _ = parse_and_validate(service_body("web", "shop", "ns", discovery="web")["spec"])
    assert spec is not None
    registry = StaticRegistry(endpoints=(remote(WEB, "web"),))
    violation = validate_registration(spec, WEB, "ns", {"ns": registry})[0]
    assert violation.rule == "discovery-name-duplicate"
    assert "shop/web in cluster a" in str(violation)


def test_refused_peers_lose_their_endpoints() -> None:
    reg = sync(Registry(), [Reached("a", (remote(WEB, "web"),))], T0)
    assert reg is not None
    refused = sync(
        reg, [Refused("a", "PeerRefused", "spec.peers[0].gateway: required with network: gateway")], T0
    )
    assert refused is not None
    assert refused.endpoints == ()
    assert condition(refused)["reason"] == "PeerRefused"
    assert "gateway" in str(condition(refused)["message"])


def test_check_peers_rules() -> None:
    secret = {"namespace": "sc", "name": "s"}
    found = check_peers(
        "b",
        [
            {"cluster": "b", "kubeconfigSecret": secret},
            {"cluster": "a", "kubeconfigSecret": secret, "network": "gateway"},
            {"cluster": "c", "kubeconfigSecret": secret},
            {"cluster": "c", "kubeconfigSecret": secret},
        ],
    )
    assert "SC_CLUSTER_NAME" in found["b"]
    assert "spec.peers[1].gateway" in found["a"]
    assert "required with network: gateway" in found["a"]
    assert "listed twice" in found["c"]
    assert summary([])[1] == "NoPeers"


def test_mirror_objects_stand_for_the_peers_tasks() -> None:
    endpoint = Endpoint(
        discovery_name="web", dns_name="web", port=80, app_protocol="http", service=WEB, cluster="a"
    )
    backends = [Backend("10.1.0.5", 8080), Backend("10.1.0.6", 8080), Backend("fd00::7", 8080)]
    svc = render_mirror_service(endpoint, "ns", "uid-1", backends)
    assert svc["metadata"]["name"] == headless_service_name("web", "ns")
    assert svc["metadata"]["namespace"] == "shop"
    assert "selector" not in svc["spec"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["name"] == "sc-http"
    slices = render_mirror_slices(endpoint, "ns", "svc-uid", backends)
    assert [(s["addressType"], [a["addresses"][0] for a in s["endpoints"]]) for s in slices] == [
        ("IPv4", ["10.1.0.5", "10.1.0.6"]),
        ("IPv6", ["fd00::7"]),
    ]
    assert all(
        s["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"] for s in slices
    )
    assert all(
        s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] != "endpointslice-controller.k8s.io"
        for s in slices
    )


def test_only_ready_peer_tasks_on_the_named_port_are_mirrored() -> None:
    endpoint = Endpoint(
        discovery_name="web", dns_name="web", port=80, app_protocol="http", service=WEB, cluster="a"
    )
    name = headless_service_name("web", "ns")
    peer_slices = [
        {
            "metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "sc-http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": True}},
                {"addresses": ["10.1.0.6"], "conditions": {"ready": False}},
                {"addresses": ["10.1.0.7"]},
            ],
        },
        {  # another Service's slice
            "metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": "other"}},
            "ports": [{"name": "sc-http", "port": 9}],
            "endpoints": [{"addresses": ["10.9.9.9"]}],
        },
    ]
    got = backends_of([endpoint], "ns", peer_slices)
    assert got == {("shop", name): [Backend("10.1.0.5", 8080), Backend("10.1.0.7", 8080)]}
    assert ready_backends([], "http") == []


def test_the_same_peer_rules_at_admission_and_in_scctl_validate() -> None:
    from sc_operator.validation import validate_namespace
    from sc_operator.webhooks import review_connect_namespace

    secret = {"namespace": "sc", "name": "s"}
    obj = {
        "metadata": {"name": "mesh"},
        "spec": {
            "peers": [
                {"cluster": "a", "kubeconfigSecret": secret, "network": "gateway"},
                {"cluster": "c", "kubeconfigSecret": secret},
                {"cluster": "c", "kubeconfigSecret": secret},
                {"cluster": "d", "kubeconfigSecret": secret, "gateway": {"address": "192.0.2.7"}},
                {
                    "cluster": "e",
                    "kubeconfigSecret": secret,
                    "network": "gateway",
                    "gateway": {"address": "gw"},
                },
            ]
        },
    }
    violations = validate_namespace(obj)
    assert [(v.rule, v.field) for v in violations] == [
        ("peer-gateway", "spec.peers[0].gateway"),
        ("peer-duplicate", "spec.peers[2].cluster"),
        ("peer-gateway", "spec.peers[3].gateway"),
        ("peer-gateway", "spec.peers[4].gateway"),
    ]
    verdict = review_connect_namespace(obj)
    assert not verdict.allowed
    assert "[peer-gateway]" in verdict.message
    flat = {"metadata": {"name": "mesh"}, "spec": {"peers": [{"cluster": "a", "kubeconfigSecret": secret}]}}
    assert validate_namespace(flat) == []
    assert review_connect_namespace(flat).allowed
    gw = {
        "cluster": "a",
        "kubeconfigSecret": secret,
        "network": "gateway",
        "gateway": {"address": "192.0.2.7"},
    }
    linked = {"metadata": {"name": "mesh"}, "spec": {"peers": [gw]}}
    assert validate_namespace(linked) == []
    assert review_connect_namespace(linked).allowed


def test_a_gateway_peers_endpoints_carry_its_address_into_the_clients_proxy_config() -> None:
    from sc_operator.api.namespace import PeerGateway
    from sc_operator.peers import through_gateway

    [stamped] = through_gateway((remote(WEB, "web"),), PeerGateway(address="192.0.2.7", port=15443))
    assert stamped.via is not None
    assert (stamped.via.address, stamped.via.port) == ("192.0.2.7", 15443)
    reg = sync(Registry(), [Reached("a", (stamped,))], T0)
    assert reg is not None
    assert reg.to_status()["endpoints"][0]["via"] == {"address": "192.0.2.7", "port": 15443}
    [flat] = through_gateway((stamped,), None)  # relinked flat: dialled directly again
    assert flat.via is None


def test_events_say_each_change_once() -> None:
    from sc_operator.peers import transitions

    up = sync(Registry(), [Reached("a", (remote(WEB, "web"),))], T0)
    assert up is not None
    first = transitions([], up.extra["peers"])
    assert [(t, r) for t, r, _ in first] == [("Normal", "PeerSynced")]
    assert transitions(up.extra["peers"], up.extra["peers"]) == []
    down = sync(up, [Unreached("a", "connection refused")], T0 + timedelta(minutes=1))
    assert down is not None
    (event,) = transitions(up.extra["peers"], down.extra["peers"])
    assert event[:2] == ("Warning", "PeerUnreachable")
    assert "connection refused" in event[2]
    assert transitions(down.extra["peers"], down.extra["peers"]) == []
    back = sync(down, [Reached("a", (remote(WEB, "web"),))], T0 + timedelta(minutes=2))
    assert back is not None
    assert [r for _, r, _ in transitions(down.extra["peers"], back.extra["peers"])] == ["PeerSynced"]
    local = register(back, API, [ep(API, "api")])
    assert local is not None
    clash = sync(local, [Reached("a", (remote(WEB, "web"), remote(WEB, "api")))], T0 + timedelta(minutes=3))
    assert clash is not None
    assert [r for _, r, _ in transitions(back.extra["peers"], clash.extra["peers"])] == ["NameConflict"]


def test_the_client_proxy_config_dials_a_gateway_peers_tasks_through_its_gateway() -> None:
    import json

    from sc_operator.render import render_children
    from support.render import client_inputs, endpoint

    behind = {
        **endpoint("nginx", "nginx", 80, "http", "nginx", port_name="nginx"),
        "cluster": "a",
        "via": {"address": "192.0.2.7", "port": 15443},
    }
    flat = {**endpoint("redis", "redis", 6379, None, "cache"), "cluster": "c"}
    children = render_children(client_inputs(endpoints=[behind, flat]))
    doc = json.loads(children.config_map["data"]["proxy.json"])
    endpoints = {e["name"]: e for e in doc["endpoints"]}
    assert endpoints["nginx"]["via"] == {"address": "192.0.2.7", "port": 15443}
    # Discovery stays the mirror Service: the tasks' own addresses, which the header names.
    assert "dns" in endpoints["nginx"]["discovery"]
    assert "via" not in endpoints["redis"]


def test_the_gateway_exposes_only_local_endpoints_of_linked_namespaces() -> None:
    from sc_operator.render.gateway import gateway_config_document
    from sc_operator.settings import OperatorSettings
    from sc_proxy.config import parse_config

    settings = OperatorSettings(cluster_name="a", dns_resolver="10.0.0.10")
    local = Endpoint(discovery_name="web", dns_name="web", port=80, app_protocol="http", service=WEB)
    doc = gateway_config_document([("mesh", [local, remote(WEB, "other", "c")])], settings)
    [entry] = doc["gateway"]["allow"]
    name = headless_service_name("web", "mesh")
    assert entry == {
        "dns": {
            "name": f"{name}.shop.svc.cluster.local",
            "srvName": f"_sc-http._tcp.{name}.shop.svc.cluster.local",
            "resolver": "10.0.0.10",
        }
    }
    assert parse_config(doc).gateway is not None  # the proxy accepts what the operator renders
    # Nothing local to expose: the gateway routes nowhere.
    assert (
        gateway_config_document([("mesh", [remote(WEB, "other", "c")])], settings)["gateway"]["allow"] == []
    )


def test_the_gateway_objects_are_valid_and_roll_when_what_it_admits_changes() -> None:
    from sc_operator.reconcile.gateway import linked_endpoints
    from sc_operator.render.gateway import CONFIG_VERSION_ANNOTATION, gateway_config_document, gateway_objects
    from sc_operator.settings import OperatorSettings
    from support.render import k8s_validate

    settings = OperatorSettings(gateway_enabled=True, gateway_service_type="NodePort", gateway_replicas=3)
    web = Endpoint(discovery_name="web", dns_name="web", port=80, app_protocol="http", service=WEB)
    api = Endpoint(discovery_name="api", dns_name="api", port=80, service=API)
    cns = [
        {"metadata": {"name": "mesh"}, "spec": {"peers": [{"cluster": "b"}]},
         "status": {"endpoints": [web.model_dump(mode="json", by_alias=True, exclude_none=True)]}},
        {"metadata": {"name": "private"},  # no peers: never exposed
         "status": {"endpoints": [api.model_dump(mode="json", by_alias=True, exclude_none=True)]}},
    ]  # fmt: skip
    linked = linked_endpoints(cns)
    assert [name for name, _ in linked] == ["mesh"]
    doc = gateway_config_document(linked, settings)
    config_map, deployment, service = gateway_objects(doc, "serviceconnect-system", settings)
    for obj in (config_map, deployment, service):
        k8s_validate(obj)
        assert obj["metadata"]["namespace"] == "serviceconnect-system"
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["port"] == 15443
    assert deployment["spec"]["replicas"] == 3
    template = deployment["spec"]["template"]
    assert template["spec"]["automountServiceAccountToken"] is False
    version = template["metadata"]["annotations"][CONFIG_VERSION_ANNOTATION]
    assert json.loads(config_map["data"]["proxy.json"])["version"] == version
    # Another service registered in the linked namespace: a new version, so the gateways roll.
    more = gateway_config_document([("mesh", [web, api])], settings)
    assert more["version"] != version
    assert gateway_config_document(linked, settings)["version"] == version  # stable otherwise
    # Nothing linked: a gateway that routes nowhere (the proxy accepts it).
    from sc_proxy.config import parse_config

    empty = gateway_config_document([], settings)
    assert empty["gateway"]["allow"] == []
    assert parse_config(empty).gateway is not None
