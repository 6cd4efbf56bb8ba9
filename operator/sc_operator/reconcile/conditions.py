"""Conditions and status events as pure list updates (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now() -> str:
    """RFC 3339 UTC, second precision: what Kubernetes stores."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set; lastTransitionTime moves only when the status changes."""
    out = [dict(c) for c in conditions or []]
    for cond in out:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now()
            cond.update(status=status, reason=reason, message=message)
            if generation is not None:
                cond["observedGeneration"] = generation
            return out
    new: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    return [*out, new]


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def add_event(events: list[dict[str, Any]] | None, message: str, limit: int) -> list[dict[str, Any]]:
    """Newest first, at most ``limit``; a message equal to the newest one is not repeated."""
    current = list(events or [])
    if current and current[0].get("message") == message:
        return current[:limit]
    return [{"createdAt": now(), "message": message}, *current][:limit]
