"""The modules built as C extensions (mypyc) in a compiled wheel, and which build this process loaded.

:data:`COMPILED_MODULES` is the one list: ``setup.py`` compiles exactly these (it reads this file without
importing the package, so it must stay standard-library only), the proxy reports them at startup and in the
admin ``/config`` answer, and the tests of the compiled run assert they were loaded. Each module keeps its
``.py`` beside the extension in the wheel: an install built with ``SC_PROXY_PURE=1`` (or from a source tree)
runs the same code interpreted. To compile another module, add it here (it must pass ``mypy --strict``, and
tests must not monkeypatch it: attributes of a compiled module are fixed).
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Final

#: Hot pure-logic modules, and the small ones they call on every frame or request (compiled together, calls
#: between them are native).
COMPILED_MODULES: Final = (
    "sc_proxy.http1.headers",
    "sc_proxy.http1.machine",
    "sc_proxy.http1.parse",
    "sc_proxy.http1.pool",
    "sc_proxy.http1.server",
    "sc_proxy.http2.connection",
    "sc_proxy.http2.errors",
    "sc_proxy.http2.events",
    "sc_proxy.http2.frames",
    "sc_proxy.http2.guard",
    "sc_proxy.http2.hpack_decoder",
    "sc_proxy.http2.hpack_encoder",
    "sc_proxy.http2.validate",
    "sc_proxy.http2.headers",
    "sc_proxy.http2.side",
    "sc_proxy.http2.stream",
    "sc_proxy.http2.server",
    "sc_proxy.http2.upstream",
    "sc_proxy.cluster",
    "sc_proxy.policy",
)


def is_compiled(module: str) -> bool:
    """Whether ``module`` was (or would be) loaded from a C extension rather than its ``.py``."""
    path = getattr(importlib.import_module(module), "__file__", None) or ""
    return path.endswith(tuple(EXTENSION_SUFFIXES))


def build(loaded_only: bool = False) -> str:
    """``compiled`` (every listed module is an extension), ``pure`` (none is), or ``mixed: pure <those>``.

    ``loaded_only``: judge only the listed modules this process has imported already (what the proxy logs
    when ready: importing the rest would load, say, the HTTP/2 layers into a proxy that serves HTTP/1.1
    alone, costing start-up time and memory); ``none loaded`` when there are none."""
    modules = [m for m in COMPILED_MODULES if not loaded_only or m in sys.modules]
    if not modules:
        return "none loaded"
    pure = [m for m in modules if not is_compiled(m)]
    if not pure:
        return "compiled"
    if len(pure) == len(modules):
        return "pure"
    return "mixed: pure " + ", ".join(pure)
