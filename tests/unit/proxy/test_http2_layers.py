"""The HTTP/2 proxy's modules stay in one-directional layers (the order written in ``sc_proxy.http2``'s
docstring and ``LAYERS``), with no mutable state at module level above the codec.

Read from the source with ``ast``, so an import only made for type checking (under ``TYPE_CHECKING``) or
inside a function counts like any other: a circle held together by such imports fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sc_proxy.http2 as package

PACKAGE = "sc_proxy.http2"
SOURCES = Path(package.__file__).parent
MODULES = sorted(p.stem for p in SOURCES.glob("*.py") if p.stem != "__init__")
LAYERED = [name for layer in package.LAYERS for name in layer]
BASE = 1  # the codec and the pure rules: every module not in LAYERS
TOP = len(package.LAYERS) + 2  # the package itself, above every layer


def layer_of(module: str) -> int:
    """The layer's number in the package docstring."""
    if module == "__init__":
        return TOP
    for i, layer in enumerate(package.LAYERS, start=BASE + 1):
        if module in layer:
            return i
    return BASE


def http2_imports(tree: ast.Module) -> set[str]:
    """The modules of this package imported anywhere in ``tree`` (``__init__`` for the package)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE:
                    found.add("__init__")
                elif alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name.split(".")[2])
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if base in (PACKAGE, "."):
                # ``from sc_proxy.http2 import codec`` names a module; any other name comes from the package.
                found.update(a.name if a.name in MODULES else "__init__" for a in node.names)
            elif base.startswith(PACKAGE + "."):
                found.add(base.split(".")[2])
            elif node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
    return found


def parse(module: str) -> ast.Module:
    return ast.parse((SOURCES / f"{module}.py").read_text(), filename=f"{module}.py")


def test_every_layered_module_exists() -> None:
    assert set(LAYERED) <= set(MODULES)
    assert len(LAYERED) == len(set(LAYERED)), "a module is named in two layers"


def test_modules_import_only_lower_layers() -> None:
    wrong = []
    for module in [*MODULES, "__init__"]:
        for imported in sorted(http2_imports(parse(module)) - {module}):
            # The codec's modules have an order of their own, not this one.
            if layer_of(imported) >= layer_of(module) and layer_of(module) != BASE:
                wrong.append(
                    f"{module} (layer {layer_of(module)}) imports {imported} (layer {layer_of(imported)})"
                )
    assert not wrong, "imports against the layer order of sc_proxy.http2:\n" + "\n".join(wrong)


_MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_MUTABLE_CALLS = {"list", "dict", "set", "deque", "defaultdict", "OrderedDict", "bytearray"}


def _mutable(node: ast.Assign | ast.AnnAssign) -> bool:
    """Whether a module-level assignment makes a mutable object (a ``Final`` table or ``__all__`` is
    not state)."""
    if isinstance(node, ast.AnnAssign) and "Final" in ast.unparse(node.annotation):
        return False
    if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
        return False
    value = node.value
    if isinstance(value, _MUTABLE_DISPLAYS):
        return True
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name | ast.Attribute)
        and (value.func.id if isinstance(value.func, ast.Name) else value.func.attr) in _MUTABLE_CALLS
    )


def test_no_module_level_mutable_state_above_the_codec() -> None:
    wrong = []
    for module in [*LAYERED, "__init__"]:
        tree = parse(module)
        wrong += [
            f"{module}: `global` at line {n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Global)
        ]
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and _mutable(node):
                wrong.append(f"{module}: mutable module-level value at line {node.lineno}")
    assert not wrong, "\n".join(wrong)


def test_the_docstring_names_the_same_layers() -> None:
    doc = package.__doc__ or ""
    items = dict(re.findall(r"^(\d)\. (.*?)(?=^\d\. |\Z)", doc, flags=re.M | re.S))
    for i, layer in enumerate(package.LAYERS, start=BASE + 1):
        named = set(re.findall(r"``(\w+)``", items.get(str(i), "")))
        assert set(layer) <= named, f"layer {i} of the docstring should name {layer}"
        assert not (named & set(LAYERED)) - set(layer), (
            f"layer {i} of the docstring names another layer's module"
        )
    base = set(re.findall(r"``(\w+)``", items.get(str(BASE), "")))
    assert base == set(MODULES) - set(LAYERED), "layer 1 of the docstring should name every other module"
