"""The generated CRDs in crds/: read them, and wait until the API server serves them."""

from __future__ import annotations

import time
from typing import Any

import yaml

from .envtest import REPO

CRD_DIR = REPO / "crds"


def crd_documents() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in crds/ (one or more YAML documents per file)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def wait_established(api_client: Any, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every named CRD has condition Established=True (and NamesAccepted=True)."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = ext.read_custom_resource_definition(name)
            status = crd.status
            conds = {c.type: c.status for c in ((status.conditions if status else None) or [])}
            if conds.get("Established") == "True" and conds.get("NamesAccepted") == "True":
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    assert not pending, f"CRDs not Established after {timeout:.0f} s: {sorted(pending)}"
