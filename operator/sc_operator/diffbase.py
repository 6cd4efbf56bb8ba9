"""kopf's diff base (the essence it detects changes on), built without copying what nobody compares."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, cast

import kopf


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, minus two copies that cost O(n²) on a burst of n services.

    kopf builds an object's essence for **every** watch event of every watched kind, by deep-copying the
    whole body and then dropping ``.status``:

    - a ConnectNamespace's status is the namespace's whole registry, rewritten once per registration;
      here ``.status`` is left out before the copy (no handler of ours watches a status field, and with
      ``extra_fields`` kopf's own build runs);
    - Deployments and pods carry the namespace's endpoints as ``hostAliases``, and are watched only by
      ``on.event`` handlers, for which kopf computes the diff and never reads it (no changing handlers,
      no timers). ``watch_only`` lists these kinds as ``(apiVersion, kind)``; their essence is empty.

    For every other object the essence is exactly kopf's.
    """

    def __init__(self, *, watch_only: Collection[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch_only = frozenset(watch_only)

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if (body.get("apiVersion"), body.get("kind")) in self.watch_only:
            return cast(kopf.BodyEssence, {})
        if not extra_fields and "status" in body:
            body = kopf.Body(cast(kopf.RawBody, {k: v for k, v in body.items() if k != "status"}))
        return super().build(body=body, extra_fields=extra_fields)
