"""Build hook: the proxy's hot modules as C extensions, compiled by mypyc.

Everything else about the package is in pyproject.toml. The modules compiled are the ones listed in
``sidecar/sc_proxy/compiled.py`` (the one list; read here without importing the package). Their ``.py``
files stay in the wheel beside the extensions. ``SC_PROXY_PURE=1`` builds a wheel without extensions (no
compiler needed); an editable install (``pip install -e``) is always pure, so a source tree runs the code
as written. Compiling needs gcc and the Python headers (Debian: python3-dev).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def mypyc_extensions(paths: list[str], config_file: str) -> list[Any]:
    """The extensions mypyc builds from ``paths`` (one shared library for all, so calls between them are
    native), type-checked with the project's mypy configuration ``config_file``."""
    from mypyc.build import mypycify

    # The modules compiled are checked as mypy --strict checks them; the rest of the package, which they
    # import (sc_proxy.config and its yaml, ...), only lends its types: errors there are mypy's business in
    # CI, not the build's (the build environment has no stubs such as types-PyYAML). opt_level 3 is
    # mypyc's default; debug_level 0: no debug info (the wheel's size); one group named after the package
    # (sc_proxy__mypyc.so), not a hash of the file list.
    flags = [f"--config-file={config_file}", "--follow-imports=silent"]
    return mypycify([*flags, *paths], opt_level="3", debug_level="0", group_name="sc_proxy")


#: The setup.py commands that build a wheel or an install. pip runs setup.py for metadata first (egg_info,
#: dist_info), which needs no extensions: mypyc's type check and C generation are left to the build.
BUILD_COMMANDS = frozenset({"bdist_wheel", "build", "build_ext", "install", "bdist"})


def extensions(argv: list[str]) -> list[Any]:
    """The extensions for the setup.py command line ``argv``: none for metadata, none with
    ``SC_PROXY_PURE=1``, and none for an editable install, which would compile in place, into the source
    tree, where they would shadow the .py being edited (and the pure test run would run compiled code)."""
    if os.environ.get("SC_PROXY_PURE", "") not in ("", "0"):
        return []
    if "editable_wheel" in argv or not BUILD_COMMANDS.intersection(argv):
        return []
    return mypyc_extensions(sources(), str(ROOT / "pyproject.toml"))


def sources() -> list[str]:
    """The files of the modules listed in sidecar/sc_proxy/compiled.py, relative to the project root."""
    modules = runpy.run_path(str(ROOT / "sidecar" / "sc_proxy" / "compiled.py"))["COMPILED_MODULES"]
    return [f"sidecar/{m.replace('.', '/')}.py" for m in modules]


if __name__ == "__main__":
    setup(ext_modules=extensions(sys.argv))
