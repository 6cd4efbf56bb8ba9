"""The chart's metrics pieces: clusterName and the scrape annotations reach the operator, the optional
PodMonitor (refused without its CRD) selects the pods the operator renders, the dashboard ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sc_operator.render.names import MANAGED_BY_LABEL, MANAGED_BY_VALUE, METRICS_PORT_NAME
from sc_operator.settings import OperatorSettings
from support.envtest import Unavailable, find_tools
from support.gate import unavailable
from support.helmchart import CHART, VALUES_SETS, Helm, HelmError, by_kind, one, operator_container, plain_env

PODMONITOR_API = "monitoring.coreos.com/v1/PodMonitor"
DASHBOARD = CHART / "files" / "dashboards" / "service-connect.json"


@pytest.fixture(scope="module")
def helm() -> Helm:
    try:
        return Helm(find_tools() / "helm")
    except Unavailable as exc:
        unavailable(f"no helm: {exc}")


def test_cluster_name_and_annotations_reach_the_operator(helm: Helm) -> None:
    default = OperatorSettings.load(plain_env(operator_container(helm.template())))
    assert default.cluster_name == "kubernetes"
    assert default.prometheus_annotations is True
    custom = OperatorSettings.load(plain_env(operator_container(helm.template(VALUES_SETS["custom-values"]))))
    assert custom.cluster_name == "prod.eu-west-1.k8s.example"
    assert custom.prometheus_annotations is False


def test_a_bad_cluster_name_is_refused_naming_the_value(helm: Helm) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema") as err:
        helm.template(sets={"clusterName": "prod eu"})
    assert "/clusterName" in str(err.value)


def test_no_pod_monitor_and_no_dashboard_by_default(helm: Helm) -> None:
    docs = helm.template(api_versions=(PODMONITOR_API,))
    assert not by_kind(docs, "PodMonitor")
    assert not by_kind(docs, "ConfigMap")


def test_pod_monitor_without_its_crd_is_refused_with_the_reason(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"metrics.podMonitor.enabled needs the PodMonitor CRD"):
        helm.template(sets={"metrics.podMonitor.enabled": True})


def test_pod_monitor_selects_the_operators_pods_on_the_metrics_port(helm: Helm) -> None:
    docs = helm.template(
        sets={
            "metrics.podMonitor": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "interval": "15s",
                "metricRelabelings": [{"action": "labeldrop", "regex": "container"}],
            }
        },
        api_versions=(PODMONITOR_API,),
    )
    pm = one(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["namespace"] == "sc-system"
    assert pm["metadata"]["labels"]["release"] == "prometheus"
    spec = pm["spec"]
    # The label every pod the operator renders carries (sc_operator.render.names.managed_labels).
    assert spec["selector"] == {"matchLabels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}}
    assert spec["namespaceSelector"] == {"any": True}  # services live in their own namespaces
    assert spec["podMetricsEndpoints"] == [
        {
            "port": METRICS_PORT_NAME,
            "path": "/metrics",
            "interval": "15s",
            "metricRelabelings": [{"action": "labeldrop", "regex": "container"}],
        }
    ]


def test_dashboard_config_map_carries_the_chart_file_for_grafanas_sidecar(helm: Helm) -> None:
    docs = helm.template(VALUES_SETS["custom-values"])
    cm: dict[str, Any] = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Service Connect"}
    assert cm["metadata"]["namespace"] == "sc-system"
    assert json.loads(cm["data"]["service-connect.json"]) == json.loads(DASHBOARD.read_text())
    elsewhere = helm.template(sets={"metrics.dashboard": {"enabled": True, "namespace": "monitoring"}})
    assert one(elsewhere, "ConfigMap")["metadata"]["namespace"] == "monitoring"


def test_notes_say_how_metrics_are_exposed(helm: Helm) -> None:
    out = helm.run(
        "install", "sc", str(CHART), "--dry-run=client", "--namespace", "sc-system", "--hide-notes=false",
        "--set", "clusterName=prod", "--set", "metrics.dashboard.enabled=true",
    )  # fmt: skip
    line = 'Metrics:    ClusterName "prod"; prometheus.io annotations on pods, Grafana dashboard ConfigMap'
    assert line in out
