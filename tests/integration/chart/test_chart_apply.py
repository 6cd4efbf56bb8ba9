"""Every manifest the chart renders is accepted by a real kube-apiserver (server-side dry run).

The API server runs its own validation, defaulting and admission on each object without storing
it. cert-manager's kinds are left out: envtest has no cert-manager (its CRDs are not installed here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.helmchart import VALUES_SETS, Helm
from support.kubectl import Kubectl

NOT_ON_ENVTEST = {"Certificate", "Issuer"}


@pytest.mark.parametrize("values", VALUES_SETS.values(), ids=VALUES_SETS.keys())
def test_rendered_chart_passes_server_side_dry_run(
    helm: Helm,
    kubectl: Kubectl,
    release_namespace: str,
    crds_installed: list[str],
    kopf_peering_crd: str,
    values: Path | None,
) -> None:
    docs = [
        d
        for d in helm.template(values, namespace=release_namespace, include_crds=True)
        if d["kind"] not in NOT_ON_ENVTEST
    ]
    stream = "".join(f"---\n{yaml.safe_dump(d)}" for d in docs)
    out = kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager=helm",
        "-f",
        "-",
        input=stream,
    )
    applied = [line for line in out.splitlines() if line.strip()]
    assert len(applied) == len(docs), out
    assert all(line.endswith("(server dry run)") for line in applied), out


def test_dry_run_catches_what_the_server_refuses(
    kubectl: Kubectl, helm: Helm, release_namespace: str
) -> None:
    # The check above can fail: a Deployment with an invalid env var name is refused by the server. An
    # "=" is refused by every version (1.34 relaxed the rule to any printable ASCII character but "=").
    docs: list[dict[str, Any]] = helm.template(namespace=release_namespace)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "BAD=NAME", "value": "x"})
    proc = kubectl.run(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump(deployment), check=False
    )
    assert proc.returncode != 0
    assert "env[" in proc.stderr
