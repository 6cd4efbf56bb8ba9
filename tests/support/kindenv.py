"""Shared pieces of the e2e tests (tests/e2e): what they need, how they run commands."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from .helmchart import Helm

OPERATOR_IMAGE = "serviceconnect.local/sc-operator"
PROXY_IMAGE = "serviceconnect.local/sc-proxy"
#: The tutorial's public.ecr.aws images cannot be pulled here: hack/build-images.sh builds these instead.
NGINX_IMAGE = "serviceconnect.local/nginx"
CLIENT_IMAGE = "serviceconnect.local/client"
RELEASE, RELEASE_NS = "sc", "sc-system"

KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
"""


def flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """Skip with `reason`, or fail when the e2e run was explicitly requested (SC_E2E=1)."""
    if flag("SC_E2E"):
        pytest.fail(f"{reason} (SC_E2E=1: the e2e run was requested)", pytrace=False)
    pytest.skip(reason)


def run(
    *argv: str, timeout: float = 600, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it exits non-zero."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, input=input, env=env, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False
        )
    return proc


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: Path
    #: The kind binary when the cluster is a kind cluster; None for a cluster given by kubeconfig.
    kind: str | None


@dataclass(frozen=True)
class Images:
    """The tag of the images hack/build-images.sh built and loaded onto the cluster's nodes."""

    tag: str

    @property
    def nginx(self) -> str:
        return f"{NGINX_IMAGE}:{self.tag}"

    @property
    def client(self) -> str:
        return f"{CLIENT_IMAGE}:{self.tag}"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    helm: Helm
    kubeconfig: Path

    def helm_args(self, *args: str) -> list[str]:
        return [*args, "--kubeconfig", str(self.kubeconfig)]
