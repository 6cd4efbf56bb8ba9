"""Render the service-connect chart with helm (from hack/tools.sh) and look at the manifests."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .envtest import REPO

CHART = REPO / "charts" / "service-connect"
VALUES_SETS = {
    "default": None,
    **{p.stem: p for p in sorted((CHART / "ci").glob("*-values.yaml"))},
}


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Helm:
    """One helm binary; every call is bounded in time and never touches a cluster unless asked."""

    binary: Path

    def run(self, *args: str, timeout: float = 60.0) -> str:
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc.stdout

    def template(
        self,
        values: Path | None = None,
        *,
        release: str = "sc",
        namespace: str = "sc-system",
        sets: dict[str, Any] | None = None,
        include_crds: bool = False,
        api_versions: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """`helm template` → the rendered documents (empty ones dropped).

        ``api_versions`` are announced as the cluster's (``--api-versions``, what
        ``.Capabilities.APIVersions.Has`` sees); ``extra`` are more helm arguments.
        """
        args = ["template", release, str(CHART), "--namespace", namespace]
        for version in api_versions:
            args += ["--api-versions", version]
        args += extra
        if values is not None:
            args += ["-f", str(values)]
        for key, value in (sets or {}).items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        if include_crds:
            args.append("--include-crds")
        return [d for d in yaml.safe_load_all(self.run(*args)) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(next(c for c in containers if c["name"] == "operator"))


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal env values (valueFrom entries left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
