"""ConnectNamespace lifecycle: initial status, and deletion held while services use it."""

from __future__ import annotations

from typing import Any

from sc_operator.kube import CONNECT_NAMESPACES, ApiError, Obj
from sc_operator.reconcile.conditions import get_condition, set_condition
from sc_operator.reconcile.context import Context
from sc_operator.registry import Registry


class NamespaceInUse(Exception):
    """Deletion must wait: the message names the services that hold the namespace."""


def initialise(ctx: Context, cns: Obj, attempts: int = 20) -> None:
    """Give a new ConnectNamespace an empty registry and a Ready condition (idempotent).

    ``cns`` is the body of the event, which may be older than the stored object: a service may already
    have registered its endpoints. So the stored object is read, an empty registry written only where
    there is none, and the write made at the version read (a 409 means someone wrote meanwhile: read
    again). A merge patch of the event's body would wipe such a registration.
    """
    status = cns.get("status") or {}
    if "revision" in status and _ready(status):
        return
    name = cns["metadata"]["name"]
    for _ in range(attempts):
        fresh = ctx.kube.get_or_none(CONNECT_NAMESPACES, name)
        if fresh is None:
            return
        status = fresh.get("status") or {}
        if "revision" in status and _ready(status):
            return
        patch: dict[str, Any] = {
            "conditions": set_condition(
                status.get("conditions"), "Ready", "True", "Ready", "the registry accepts endpoints"
            )
        }
        if "revision" not in status:
            patch = {**Registry.from_status(status).to_status(), **patch}
        body = {"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"]}, "status": patch}
        try:
            ctx.kube.patch(CONNECT_NAMESPACES, name, body, sub="status")
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
    raise RuntimeError(f"ConnectNamespace {name!r}: initial status kept conflicting ({attempts} attempts)")


def _ready(status: dict[str, Any]) -> bool:
    cond = get_condition(status.get("conditions"), "Ready")
    return cond is not None and cond.get("status") == "True"


def check_deletable(ctx: Context, name: str) -> None:
    """Raise :class:`NamespaceInUse` (after recording why) while any service is registered."""
    cns = ctx.kube.get_or_none(CONNECT_NAMESPACES, name)
    if cns is None:
        return
    reg = Registry.from_status(cns.get("status"))
    holders = reg.holders()
    if not holders:
        return
    shown = ", ".join(str(h) for h in holders[:10]) + (
        f" and {len(holders) - 10} more" if len(holders) > 10 else ""
    )
    message = (
        f"ConnectNamespace {name} is used by {len(holders)} ConnectService(s): {shown}; delete them first"
    )
    status = cns.get("status") or {}
    conditions = set_condition(status.get("conditions"), "Deletable", "False", "InUse", message)
    if conditions != status.get("conditions"):
        ctx.kube.patch_status(CONNECT_NAMESPACES, name, {"conditions": conditions})
        ctx.kube.post_event(cns, "Warning", "DeletionBlocked", message)
    raise NamespaceInUse(message)
