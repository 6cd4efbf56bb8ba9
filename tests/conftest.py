"""Settings shared by every test layer.

Tests under tests/integration/ are marked `integration` and tests under tests/e2e/ `e2e`
automatically, so `pytest -m "not integration and not e2e"` runs the fast unit layer alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent
_LAYER_MARKS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            layer = item.path.relative_to(_HERE).parts[0]
        except ValueError:
            continue
        mark = _LAYER_MARKS.get(layer)
        if mark is not None:
            item.add_marker(mark)
