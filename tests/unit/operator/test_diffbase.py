"""The operator's kopf diff base: kopf's own essence, without the copies nobody compares."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from sc_operator.diffbase import LeanDiffBaseStorage

PREFIX = "serviceconnect.dev"
KEY = "last-handled-configuration"
WATCH_ONLY = {("apps/v1", "Deployment"), ("v1", "Pod")}


def _body(kind: str = "ConnectNamespace", api_version: str = "serviceconnect.dev/v1alpha1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": "prod",
            "uid": "u-1",
            "resourceVersion": "42",
            "labels": {"team": "a"},
            "annotations": {"note": "kept", f"{PREFIX}/{KEY}": '{"spec":{}}'},
        },
        "spec": {"description": "x"},
        "status": {"endpoints": [{"discoveryName": f"svc-{i}", "port": 80} for i in range(50)]},
    }


def _build(storage: kopf.DiffBaseStorage, raw: dict[str, Any], **kw: Any) -> Any:
    return storage.build(body=kopf.Body(raw), **kw)  # type: ignore[arg-type]


def test_essence_equals_kopfs_own() -> None:
    raw = _body()
    ours = LeanDiffBaseStorage(prefix=PREFIX, key=KEY, watch_only=WATCH_ONLY)
    expected = _build(kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=KEY), copy.deepcopy(raw))
    got = _build(ours, raw)
    assert got == expected
    assert "status" not in got
    assert got["metadata"]["annotations"] == {"note": "kept"}
    assert raw == _body()  # the watched body is not modified


def test_status_kept_when_a_handler_watches_a_status_field() -> None:
    ours = LeanDiffBaseStorage(prefix=PREFIX, key=KEY)
    got = _build(ours, _body(), extra_fields=["status.endpoints"])
    assert len(got["status"]["endpoints"]) == 50


def test_watch_only_kinds_have_an_empty_essence() -> None:
    ours = LeanDiffBaseStorage(prefix=PREFIX, key=KEY, watch_only=WATCH_ONLY)
    assert _build(ours, _body("Deployment", "apps/v1")) == {}
    assert _build(ours, _body("Pod", "v1")) == {}
    assert _build(ours, _body("Namespace", "v1"))["spec"] == {"description": "x"}


def test_watch_only_kinds_have_no_handler_that_reads_the_diff() -> None:
    """The operator's handlers for the watch-only kinds are on.event only (no create/update/delete/resume,
    no timers): the empty essence must stay unobservable."""
    import sc_operator.handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    plurals = {"deployments", "pods"}
    for part in (registry._changing, registry._spawning):
        for handler in part.get_all_handlers():
            assert handler.selector is None or handler.selector.any_name not in plurals, handler.id
    watched = {h.selector.any_name for h in registry._watching.get_all_handlers() if h.selector}
    assert plurals <= watched
