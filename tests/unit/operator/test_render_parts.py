"""The renderer's small pure parts: names, port choices, VIPs, CPU conversion."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.render import assign_vips, cpu_millicores, headless_service_name
from sc_operator.render.containers import container_name
from sc_operator.render.names import is_dns1035_label, is_label_value, is_port_name, label_value
from sc_operator.render.ports import ServedPort, plan_ports
from sc_operator.render.vips import AliasClashError

discovery_names = st.from_regex(r"\A[a-z0-9_][a-z0-9_-]{0,63}\Z")


@given(discovery_names, st.sampled_from(["", "service-connect", "prod"]))
def test_headless_names_are_always_dns_1035(name: str, ns: str) -> None:
    result = headless_service_name(name, ns)
    assert is_dns1035_label(result), result
    assert result == headless_service_name(name, ns)


@pytest.mark.parametrize(
    ("a", "b"),
    [("a_b", "a-b"), ("x" * 64, "x" * 63), ("nginx", "nginx_"), ("_api", "api")],
)
def test_headless_names_do_not_collide(a: str, b: str) -> None:
    assert headless_service_name(a, "ns") != headless_service_name(b, "ns")
    assert headless_service_name(a) != headless_service_name(b)


def test_headless_names_differ_per_connect_namespace() -> None:
    assert headless_service_name("nginx", "staging") != headless_service_name("nginx", "prod")
    assert headless_service_name("nginx", "prod").startswith("sc-nginx-")
    assert headless_service_name("nginx") == "sc-nginx"


@given(st.text(alphabet="abcXYZ_-.019/", min_size=1, max_size=300))
def test_label_values_are_valid(value: str) -> None:
    assert is_label_value(label_value(value))


@given(st.from_regex(r"\A[a-zA-Z0-9_-]{1,255}\Z"))
def test_container_names_are_dns_labels(name: str) -> None:
    result = container_name(name)
    assert len(result) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", result), result
    assert result not in ("sc-proxy", "sc-intercept")


def test_port_name_rules() -> None:
    assert is_port_name("sc-http")
    assert is_port_name("nginx")
    assert not is_port_name("metrics_port")
    assert not is_port_name("a--b")
    assert not is_port_name("8080")
    assert not is_port_name("x" * 16)


# -- ports -----------------------------------------------------------------------------------------


def test_preferred_ports_when_free() -> None:
    plan = plan_ports([80], [ServedPort("nginx", 80)], admin_preferred=9901, egress_preferred=15001,
                      ingress_base=15100)  # fmt: skip
    assert (plan.admin, plan.egress, plan.ingress) == (9901, 15001, {"nginx": 15100})
    assert plan.admin_local == 9902


def test_ports_skip_task_ports() -> None:
    served = [ServedPort("a", 9901), ServedPort("b", 15001), ServedPort("c", 15100)]
    plan = plan_ports([9901, 15001, 15100, 15101], served, admin_preferred=9901, egress_preferred=15001,
                      ingress_base=15100)  # fmt: skip
    assert (plan.admin, plan.admin_local, plan.egress) == (9902, 9903, 15002)
    assert plan.ingress == {"a": 15102, "b": 15103, "c": 15104}


def test_override_wins_and_is_avoided_by_the_others() -> None:
    served = [ServedPort("a", 80, ingress_port_override=15100), ServedPort("b", 81)]
    plan = plan_ports([80, 81], served, admin_preferred=9901, egress_preferred=15001, ingress_base=15100)
    assert plan.ingress == {"a": 15100, "b": 15101}


@given(
    st.sets(st.integers(1, 65535), max_size=30),
    st.sets(st.integers(9890, 9910) | st.integers(14990, 15010) | st.integers(15090, 15130), max_size=40),
    st.integers(0, 5),
)
def test_chosen_ports_never_collide(
    random_ports: set[int], near_defaults: set[int], served_count: int
) -> None:
    task_ports = random_ports | near_defaults
    served = [ServedPort(f"e{i}", 1) for i in range(served_count)]
    plan = plan_ports(task_ports, served, admin_preferred=9901, egress_preferred=15001, ingress_base=15100)
    chosen = [plan.admin, plan.admin_local, plan.egress, *plan.ingress.values()]
    assert len(set(chosen)) == len(chosen)
    assert not set(chosen) & task_ports


# -- VIPs ------------------------------------------------------------------------------------------


def _ep(discovery: str, dns: str, port: int, port_name: str | None = None, owner: str = "o") -> Endpoint:
    return Endpoint(
        discovery_name=discovery,
        dns_name=dns,
        port=port,
        port_name=port_name,
        service=ServiceRef(namespace="ns", name=owner),
    )


def test_every_name_of_an_endpoint_resolves_to_its_address_on_the_alias_port() -> None:
    # The seed: the proxy receives connections "to the task definition's port name, the service discovery
    # name, or the client alias name and the alias port".
    plan = assign_vips([_ep("web-disc", "web.shop.local", 8080, "web-port"), _ep("redis", "redis", 6379)])
    assert plan.host_aliases() == [
        {"ip": "127.255.0.1", "hostnames": ["redis"]},
        {"ip": "127.255.0.2", "hostnames": ["web-disc", "web-port", "web.shop.local"]},
    ]
    assert plan.ports == {("127.255.0.1", 6379): "redis", ("127.255.0.2", 8080): "web-disc"}
    assert plan.addresses == {"redis": "127.255.0.1", "web-disc": "127.255.0.2"}


def test_endpoints_sharing_a_dns_name_share_its_address_on_their_own_ports() -> None:
    plan = assign_vips([_ep("pg", "db", 5432), _ep("cache", "db", 6379), _ep("api", "api", 80)])
    assert plan.host_aliases() == [
        {"ip": "127.255.0.1", "hostnames": ["api"]},
        {"ip": "127.255.0.2", "hostnames": ["cache", "db", "pg"]},
    ]
    assert plan.ports == {
        ("127.255.0.1", 80): "api",
        ("127.255.0.2", 5432): "pg",
        ("127.255.0.2", 6379): "cache",
    }


def test_a_port_name_two_endpoints_use_resolves_to_neither() -> None:
    plan = assign_vips([_ep("orders", "orders", 80, "http"), _ep("users", "users", 80, "http")])
    names = {n for entry in plan.host_aliases() for n in entry["hostnames"]}
    assert names == {"orders", "users"}
    assert plan.ambiguous == ("http",)


def test_a_port_name_equal_to_another_endpoints_name_stays_that_endpoints() -> None:
    # Refused at registration; a pinned list from before the rule keeps the strong name's meaning.
    plan = assign_vips([_ep("orders", "orders", 80, "users"), _ep("users", "users", 81)])
    assert plan.addresses["users"] != plan.addresses["orders"]
    assert plan.hostnames[plan.addresses["users"]] == ("users",)
    assert plan.hostnames[plan.addresses["orders"]] == ("orders",)


def test_two_endpoints_forced_onto_one_address_and_port_are_named() -> None:
    with pytest.raises(AliasClashError, match=r"'a' and 'b'.*port 80"):
        assign_vips([_ep("a", "x", 80), _ep("b", "b", 80, owner="p"), _ep("x", "b", 81)])


def test_host_aliases_in_numeric_address_order() -> None:
    plan = assign_vips(_ep(f"svc-{i:03d}", f"svc-{i:03d}", 80) for i in range(300))
    ips = [entry["ip"] for entry in plan.host_aliases()]
    assert ips[8:11] == ["127.255.0.9", "127.255.0.10", "127.255.0.11"]
    assert ips[254:257] == ["127.255.0.255", "127.255.1.0", "127.255.1.1"]
    assert ips == sorted(ips, key=lambda ip: int(ipaddress.IPv4Address(ip)))


_names = st.from_regex(r"\A[a-z][a-z0-9-]{0,8}\Z")


@given(st.lists(st.tuples(_names, _names, st.integers(1, 65535), st.one_of(st.none(), _names)), max_size=60))
def test_vips_in_range_every_strong_name_once_and_order_independent(
    rows: list[tuple[str, str, int, str | None]],
) -> None:
    # Keep the rows the registry would accept: unique discoveryName, unique (dnsName, port), and no
    # discoveryName that is another endpoint's dnsName.
    eps: list[Endpoint] = []
    for disc, dns, port, port_name in rows:
        if any(e.discovery_name == disc or (e.dns_name, e.port) == (dns, port) for e in eps):
            continue
        if any(e.dns_name == disc or e.discovery_name == dns for e in eps):
            continue
        eps.append(_ep(disc, dns, port, port_name))
    plan = assign_vips(eps)
    assert plan == assign_vips(list(reversed(eps)))
    net = ipaddress.IPv4Network("127.255.0.0/16")
    where: dict[str, str] = {}
    for ip, names in plan.hostnames.items():
        addr = ipaddress.IPv4Address(ip)
        assert addr in net
        assert addr not in (net.network_address, net.broadcast_address)
        for name in names:
            assert where.setdefault(name, ip) == ip  # a name has one address
    for ep in eps:
        ip = plan.addresses[ep.discovery_name]
        assert where[ep.discovery_name] == where[ep.dns_name] == ip
        assert plan.ports[(ip, ep.port)] == ep.discovery_name
    assert set(plan.hostnames) == set(plan.addresses.values())


def test_more_than_256_names_cross_into_the_next_octet() -> None:
    vips = assign_vips(_ep(f"svc{i:04d}", f"svc{i:04d}", 80) for i in range(300)).addresses
    assert vips["svc0254"] == "127.255.0.255"
    assert vips["svc0255"] == "127.255.1.0"
    assert vips["svc0299"] == "127.255.1.44"


# -- CPU -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "millicores"), [(0, 0), (1, 1), (2, 2), (100, 98), (256, 250), (512, 500), (1024, 1000),
                              (1025, 1001), (10240, 10000)],
)  # fmt: skip
def test_cpu_units_to_millicores(units: int, millicores: int) -> None:
    assert cpu_millicores(units) == millicores


@given(st.integers(0, 1_000_000))
def test_millicores_never_less_than_asked(units: int) -> None:
    m = cpu_millicores(units)
    assert m * 1024 >= units * 1000 > (m - 1) * 1024
