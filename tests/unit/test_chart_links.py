"""The chart's RBAC for linking clusters: off by default (no Secret access beyond TLS issuance's get, create
and update by name); with rbac.links, Secrets are readable in the release namespace only, and
EndpointSlices manageable for the mirrored peer tasks."""

from __future__ import annotations

from typing import Any

import pytest

from support.envtest import Unavailable, find_tools
from support.gate import unavailable
from support.helmchart import Helm, by_kind


@pytest.fixture(scope="module")
def helm() -> Helm:
    try:
        return Helm(find_tools() / "helm")
    except Unavailable as exc:
        unavailable(f"no helm: {exc}")


#: What TLS issuance needs of Secrets cluster-wide (tests/unit/test_chart.py holds it to that).
ISSUANCE = {"get", "create", "update"}


def secret_verbs(role: dict[str, Any]) -> set[str]:
    return {v for r in role["rules"] if "secrets" in r["resources"] for v in r["verbs"]}


def test_no_link_rbac_by_default(helm: Helm) -> None:
    docs = helm.template()
    assert not by_kind(docs, "Role")
    for role in by_kind(docs, "ClusterRole"):
        assert secret_verbs(role) <= ISSUANCE
        assert all("endpointslices" not in r["resources"] for r in role["rules"])


def test_links_read_secrets_only_in_the_release_namespace(helm: Helm) -> None:
    docs = helm.template(sets={"rbac.links": True})
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "sc-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for cluster_role in by_kind(docs, "ClusterRole"):
        assert secret_verbs(cluster_role) <= ISSUANCE
    links = next(r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-links"))
    assert links["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "get", "create", "update", "delete"],
        }
    ]
