"""ConnectNamespace lifecycle: initial status, and deletion held while services use it."""

from __future__ import annotations

from sc_operator.kube import CONNECT_NAMESPACES, Obj
from sc_operator.reconcile.conditions import set_condition
from sc_operator.reconcile.context import Context
from sc_operator.registry import Registry


class NamespaceInUse(Exception):
    """Deletion must wait: the message names the services that hold the namespace."""


def initialise(ctx: Context, cns: Obj) -> None:
    """Give a new ConnectNamespace an empty registry and a Ready condition (idempotent)."""
    status = cns.get("status") or {}
    if "revision" in status:
        return
    reg = Registry.from_status(status)
    ctx.kube.patch_status(
        CONNECT_NAMESPACES,
        cns["metadata"]["name"],
        {
            **reg.to_status(),
            "conditions": set_condition(
                status.get("conditions"), "Ready", "True", "Ready", "the registry accepts endpoints"
            ),
        },
    )


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
