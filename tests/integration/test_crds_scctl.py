"""`scctl crds | kubectl apply -f -` works against a real kube-apiserver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.crds import wait_established
from support.kubectl import Kubectl

CRDS = [
    "connectdeployments.serviceconnect.dev",
    "connectnamespaces.serviceconnect.dev",
    "connectservices.serviceconnect.dev",
]


def test_scctl_crds_pipes_into_kubectl_apply(kubectl: Kubectl, api_client: Any) -> None:
    scctl = Path(sys.executable).with_name("scctl")
    crds = subprocess.run([str(scctl), "crds"], capture_output=True, text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(crds) if d]
    assert sorted(d["metadata"]["name"] for d in docs) == CRDS

    out = kubectl("apply", "-f", "-", input=crds)
    for name in CRDS:
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in out, out
    wait_established(api_client, CRDS)
