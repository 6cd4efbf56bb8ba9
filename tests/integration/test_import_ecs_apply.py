"""`scctl import-ecs` on the seed tutorial's JSON, piped into `kubectl apply --dry-run=server`: the API
server (with our CRDs) accepts every object it prints, the Namespace label included."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from support.ecsjson import json_blocks
from support.kubectl import Kubectl

FIXTURE = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "seed-002-json.txt"


def test_the_imported_tutorial_is_accepted_by_the_api_server(
    kubectl: Kubectl, crds_installed: list[str], tmp_path: Path
) -> None:
    docs = [doc for _, doc in json_blocks(FIXTURE.read_text())]
    target = f"sc-import-{uuid.uuid4().hex[:8]}"
    files = {}
    for name, pick in {
        "cluster": lambda d: "cluster" in d and "serviceName" not in d,
        "namespace": lambda d: "Namespace" in d,
        "service": lambda d: "service" in d,
        "task": lambda d: "family" in d,
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(next(d for d in docs if pick(d))))
        files[name] = str(path)
    scctl = Path(sys.executable).with_name("scctl")
    out = subprocess.run(
        [str(scctl), "import-ecs", "--cluster", files["cluster"], "--cloud-map-namespace", files["namespace"],
         "--service", files["service"], "--task-definition", files["task"], "--namespace", target],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    assert kinds == ["Namespace", "ConnectNamespace", "ConnectService"]
    namespace = next(yaml.safe_load_all(out))
    assert namespace["metadata"]["labels"] == {"serviceconnect.dev/default-namespace": "service-connect"}
    # A dry run cannot create into a namespace it only pretends to create: the Namespace is applied for
    # real, then the whole stream is dry-run (the ConnectNamespace is cluster-wide and shared by tests).
    kubectl("apply", "-f", "-", input=yaml.safe_dump(namespace))
    try:
        applied = kubectl("apply", "--dry-run=server", "-f", "-", input=out)
    finally:
        kubectl("delete", "namespace", target, "--wait=false")
    assert "connectnamespace.serviceconnect.dev/service-connect created (server dry run)" in applied
    assert (
        "connectservice.serviceconnect.dev/service-connect-nginx-service created (server dry run)" in applied
    )
