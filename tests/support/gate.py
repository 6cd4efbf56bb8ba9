"""Skip locally, fail in CI: a missing prerequisite must never make CI green by skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it when running in CI (CI=true)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: prerequisites must be present, not skipped)", pytrace=False)
    pytest.skip(reason)
