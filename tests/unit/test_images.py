"""What the container images promise, checked without a container engine.

Docker cannot build here, so these tests check the two facts the images rest on: the base
distribution (what sidecar/Dockerfile installs) pulls in no Kubernetes library, and every proxy
module imports with those libraries absent. Plus the Dockerfiles' own promises (non-root UID,
exec-form entrypoint, pinned base), read from the files.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DIST = "serviceconnect-k8s"
KUBE_LIBS = {"kopf", "kubernetes"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(dist: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `dist` (with `extras`) needs on this platform, found from installed metadata."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            dep = _canon(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append((dep, frozenset(req.extras)))
    return seen


def test_sidecar_install_pulls_in_no_kubernetes_library() -> None:
    base = _closure(DIST)
    assert base, "the base distribution declares no dependencies at all?"
    assert not (base & KUBE_LIBS), f"the proxy image would carry {sorted(base & KUBE_LIBS)}"
    # The operator extra is where they belong; if this fails the closure walk itself is broken.
    assert _closure(DIST, frozenset({"operator"})) >= KUBE_LIBS


_BLOCKER = """
import importlib, importlib.abc, pkgutil, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"kopf", "kubernetes", "sc_operator"}:
            raise ImportError(f"{name} is not in the proxy image")
        return None

sys.meta_path.insert(0, Block())
import sc_proxy
for mod in pkgutil.walk_packages(sc_proxy.__path__, "sc_proxy."):
    importlib.import_module(mod.name)
print("ok")
"""


def test_every_proxy_module_imports_without_operator_libraries() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKER], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _dockerfile(path: str) -> str:
    return (REPO / path).read_text()


def test_sidecar_image_runs_as_appnet_uid_without_operator_extra() -> None:
    text = _dockerfile("sidecar/Dockerfile")
    assert "[operator]" not in text
    assert re.search(r"^USER 20000:20000$", text, re.M)
    assert "iptables" in text
    assert re.search(r'^ENTRYPOINT \["/opt/venv/bin/sc-proxy"\]$', text, re.M)


def test_operator_image_is_non_root_and_exec_form() -> None:
    text = _dockerfile("operator/Dockerfile")
    assert "[operator]" in text
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert user
    assert int(user.group(1)) != 0
    assert re.search(r"^ENTRYPOINT \[", text, re.M)


def test_base_images_are_pinned_to_a_version() -> None:
    for path in ("sidecar/Dockerfile", "operator/Dockerfile"):
        image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", _dockerfile(path), re.M)
        assert image, path
        # python:3.11.11-slim-bookworm: full patch version and the Debian release, never "latest".
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image.group(1)), path


def test_build_context_carries_only_what_the_wheel_needs() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    # setup.py: the proxy image compiles its hot modules with it (without it the wheel would be pure).
    assert {"!pyproject.toml", "!setup.py", "!operator/sc_operator/", "!sidecar/sc_proxy/"} <= set(lines)


def test_sidecar_image_compiles_its_hot_modules_and_refuses_a_pure_build_by_accident() -> None:
    text = _dockerfile("sidecar/Dockerfile")
    build = text.split("\nFROM ", 2)[1]  # the build stage
    assert re.search(r"^COPY pyproject\.toml setup\.py ", build, re.M)
    assert "compiled.build()" in build  # the build fails unless the extensions load
    final = text.split("\nFROM ", 2)[2]
    assert "gcc" not in final  # the compiler stays in the build stage
