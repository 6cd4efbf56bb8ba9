"""The JSON documents inside a text (the seed pages print them between prose): every balanced top-level
``{...}`` that parses as JSON, in order. Braces inside JSON strings are skipped; a stray ``}`` in the prose
(seed 002 prints one after the create-cluster output) is ignored."""

from __future__ import annotations

import contextlib
import json
from typing import Any


def json_blocks(text: str) -> list[tuple[str, Any]]:
    """(raw text, parsed value) of each JSON object in ``text``."""
    found: list[tuple[str, Any]] = []
    depth, start, in_string, escaped = 0, -1, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"' and depth > 0:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                raw = text[start : i + 1]
                with contextlib.suppress(json.JSONDecodeError):
                    found.append((raw, json.loads(raw)))
    return found
