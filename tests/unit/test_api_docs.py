"""docs/api.md describes what the code does: every rule, kind, short name and printer column."""

from __future__ import annotations

from pathlib import Path

import pytest

from sc_operator.api import KINDS, Kind
from sc_operator.validation import RULES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_is_documented(rule: str) -> None:
    assert f"| `{rule}` |" in DOC


def test_no_documented_rule_is_missing_from_the_code() -> None:
    table = [line for line in DOC.splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1] for line in table}
    kinds = {k.kind for k in KINDS}
    assert documented - kinds == set(RULES)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_kinds_short_names_and_columns_are_documented(kind: Kind) -> None:
    scope = "cluster" if kind.scope == "Cluster" else "namespaced"
    assert f"| `{kind.kind}` | {scope} | `{kind.short_names[0]}` |" in DOC
    for column in kind.printer_columns:
        if column.priority == 0:
            assert column.name in DOC
