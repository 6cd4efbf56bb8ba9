"""Which build of the hot modules runs: the mypyc extensions of a compiled wheel, or their ``.py``.

hack/test.sh runs the proxy's tests twice: from the source tree (pure) and against the compiled wheel
(``SC_PROXY_EXPECT_BUILD=compiled``). These tests make each run prove it ran the build it claims.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
from pathlib import Path

import pytest

from sc_proxy import compiled

ROOT = Path(__file__).resolve().parents[3]
#: What this run must have loaded; a source tree (the editable install) is pure.
EXPECTED = os.environ.get("SC_PROXY_EXPECT_BUILD", "pure")


def test_the_run_loads_the_build_it_claims() -> None:
    assert compiled.build() == EXPECTED, (
        f"expected the {EXPECTED} build of {compiled.COMPILED_MODULES}; "
        "stray extensions in the source tree, or a compiled wheel that did not load?"
    )


def test_the_ready_line_judges_only_what_the_proxy_loaded() -> None:
    """The proxy's ready line must not import protocol modules its config does not use (start-up time and
    memory): judged in a fresh interpreter that has loaded only the HTTP/1.1 parser."""
    import subprocess
    import sys

    probe = (
        "import sys; import sc_proxy.http1.parse; from sc_proxy import compiled; "
        "print(compiled.build(loaded_only=True)); print('sc_proxy.http2.connection' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == [EXPECTED, "False"]


def test_every_compiled_module_keeps_its_python_source_beside_it() -> None:
    """The fallback: the .py of each listed module ships with (and next to) its extension."""
    for module in compiled.COMPILED_MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        assert spec.origin is not None, module
        source = Path(spec.origin).parent / (module.rsplit(".", 1)[1] + ".py")
        assert source.is_file(), f"{module}: no {source.name} beside {spec.origin}"


def test_setup_builds_no_extension_when_asked_for_pure_or_editable(monkeypatch: pytest.MonkeyPatch) -> None:
    """SC_PROXY_PURE=1 (a wheel without a compiler), an editable install (the source tree) and pip's
    metadata steps compile nothing."""
    setup = runpy.run_path(str(ROOT / "setup.py"), run_name="sc_setup")
    monkeypatch.setenv("SC_PROXY_PURE", "1")
    assert setup["extensions"](["setup.py", "bdist_wheel", "--dist-dir", "x"]) == []
    monkeypatch.delenv("SC_PROXY_PURE")
    assert setup["extensions"](["setup.py", "editable_wheel", "--dist-dir", "x"]) == []
    assert setup["extensions"](["setup.py", "egg_info"]) == []
    assert setup["extensions"](["setup.py", "dist_info", "--output-dir", "x"]) == []
    # What it compiles otherwise: the listed modules' files, every one of them present.
    assert setup["sources"]() == [f"sidecar/{m.replace('.', '/')}.py" for m in compiled.COMPILED_MODULES]
    assert all((ROOT / path).is_file() for path in setup["sources"]())
