"""Metric names, labels and exposition format."""

from __future__ import annotations

import pytest

from sc_proxy.metrics import (
    EgressStats,
    IngressStats,
    Registry,
    identify_proxy,
    protection_counter,
    publish_config_version,
    unknown_destination_counter,
)


def samples(reg: Registry) -> dict[str, str]:
    out = {}
    for line in reg.render().decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = v
    return out


def test_names_follow_service_connect_and_labels_are_bound_once() -> None:
    reg = Registry(process_metrics=False)
    ing = IngressStats("front", reg)
    eg = EgressStats("back", reg)
    ing.request_count.inc()
    ing.processed_bytes.inc(100)
    ing.active_connections.inc()
    eg.request_count.inc(2)
    eg.count_status(204)
    eg.count_status(503)
    eg.count_status(404)
    eg.count_status(302)
    eg.retries.inc()
    s = samples(reg)
    assert s['RequestCount{DiscoveryName="front"}'] == "1"
    assert s['ProcessedBytes{DiscoveryName="front"}'] == "100"
    assert s['ActiveConnectionCount{DiscoveryName="front"}'] == "1"
    assert s['RequestCountPerTarget{TargetDiscoveryName="back"}'] == "2"
    for cls in ("2XX", "3XX", "4XX", "5XX"):
        assert s[f'HTTPCode_Target_{cls}_Count{{TargetDiscoveryName="back"}}'] == "1"
    assert s['TargetRetryCount{TargetDiscoveryName="back"}'] == "1"
    # Same name again: the same child, not a second series.
    assert EgressStats("back", reg).request_count is eg.request_count


def test_histogram_is_cumulative_in_milliseconds() -> None:
    reg = Registry(process_metrics=False)
    eg = EgressStats("back", reg)
    for ms in (0.5, 1, 3, 20000, 99999):
        eg.response_time_ms.observe(ms)
    s = samples(reg)
    lbl = 'TargetDiscoveryName="back"'
    assert s[f'TargetResponseTime_bucket{{{lbl},le="1"}}'] == "2"
    assert s[f'TargetResponseTime_bucket{{{lbl},le="5"}}'] == "3"
    assert s[f'TargetResponseTime_bucket{{{lbl},le="15000"}}'] == "3"
    assert s[f'TargetResponseTime_bucket{{{lbl},le="30000"}}'] == "4"
    assert s[f'TargetResponseTime_bucket{{{lbl},le="+Inf"}}'] == "5"
    assert s[f"TargetResponseTime_count{{{lbl}}}"] == "5"
    assert float(s[f"TargetResponseTime_sum{{{lbl}}}"]) == 0.5 + 1 + 3 + 20000 + 99999


def test_exposition_has_help_and_type_and_process_metrics() -> None:
    reg = Registry()
    IngressStats("front", reg)
    unknown_destination_counter(reg).inc()
    text = reg.render().decode()
    assert "# TYPE RequestCount counter" in text
    assert "# TYPE ActiveConnectionCount gauge" in text
    assert "# TYPE ResponseTime histogram" in text
    assert "\nEgressUnknownDestinationCount 1\n" in text
    assert "process_resident_memory_bytes" in text


def _parse(line: str) -> tuple[str, dict[str, str]]:
    """``name{a="x",b="y"} 1`` → (name, labels); values here hold no ``,`` or ``"``."""
    series = line.rpartition(" ")[0]
    name, _, rest = series.partition("{")
    labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",")) if rest else {}
    return name, {k: v.strip('"') for k, v in labels.items()}


def test_every_service_connect_family_carries_service_and_cluster_and_nothing_unbounded() -> None:
    reg = Registry()  # with the process metrics, which stay unlabelled (standard names)
    identify_proxy("front", "prod-eu", reg)
    for name in ("api", "db"):
        stats = EgressStats(name, reg)
        stats.request_count.inc()
        stats.response_time_ms.observe(12)
    IngressStats("front", reg).count_status(200)
    unknown_destination_counter(reg).inc()
    protection_counter("header_count", reg).inc()
    publish_config_version("front-1", reg)
    own = {"DiscoveryName", "TargetDiscoveryName", "Protection", "version"}
    families = set()
    for line in reg.render().decode().splitlines():
        if line.startswith("#"):
            continue
        name, labels = _parse(line)
        if name.startswith("process_"):
            assert labels == {}, line
            continue
        families.add(name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count"))
        assert labels.pop("ServiceName") == "front", line
        assert labels.pop("ClusterName") == "prod-eu", line
        labels.pop("le", None)
        # At most one label of its own, from a closed set: series grow with endpoints, never with traffic.
        assert len(labels) <= 1, line
        assert set(labels) <= own, line
    assert {"RequestCountPerTarget", "TargetResponseTime", "HTTPCode_2XX_Count"} <= families
    assert {"EgressUnknownDestinationCount", "ProtectionTriggeredCount", "ProxyConfigInfo"} <= families
    # The seed's dimension sets, in ECS's order (ServiceName, ClusterName, then the endpoint).
    s = samples(reg)
    const = 'ServiceName="front",ClusterName="prod-eu"'
    assert s[f'RequestCountPerTarget{{{const},TargetDiscoveryName="db"}}'] == "1"
    assert s['EgressUnknownDestinationCount{ServiceName="front",ClusterName="prod-eu"}'] == "1"
    lbl = 'ServiceName="front",ClusterName="prod-eu",TargetDiscoveryName="api"'
    assert s[f'TargetResponseTime_bucket{{{lbl},le="25"}}'] == "1"
    assert s[f"TargetResponseTime_count{{{lbl}}}"] == "1"


def test_constant_labels_are_escaped_and_empty_ones_left_out() -> None:
    reg = Registry(process_metrics=False)
    identify_proxy('we"ird\\name', "", reg)
    unknown_destination_counter(reg).inc()
    assert 'EgressUnknownDestinationCount{ServiceName="we\\"ird\\\\name"} 1' in reg.render().decode()
    identify_proxy("", "", reg)
    assert "\nEgressUnknownDestinationCount 1\n" in "\n" + reg.render().decode()


def test_a_constant_label_cannot_shadow_a_metric_label() -> None:
    reg = Registry(process_metrics=False)
    EgressStats("api", reg)
    with pytest.raises(ValueError, match="TargetDiscoveryName is already a metric's own label"):
        reg.set_constant_labels({"TargetDiscoveryName": "x"})
    reg = Registry(process_metrics=False)
    reg.set_constant_labels({"DiscoveryName": "x"})
    with pytest.raises(ValueError, match="label DiscoveryName is a constant label"):
        IngressStats("front", reg)
