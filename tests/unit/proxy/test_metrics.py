"""Metric names, labels and exposition format."""

from __future__ import annotations

from sc_proxy.metrics import EgressStats, IngressStats, Registry, unknown_destination_counter


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
