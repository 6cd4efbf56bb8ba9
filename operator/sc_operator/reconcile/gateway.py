"""This cluster's gateway (the ``gateway`` network shape): keep ``sc-gateway`` (ConfigMap, Deployment,
Service, in the operator's namespace) admitting exactly the local endpoints of the ConnectNamespaces that
have peers. Run after every peer sync (``reconcile.peers``); a no-op unless ``SC_GATEWAY_ENABLED``."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.kube import CONFIGMAPS, CONNECT_NAMESPACES, DEPLOYMENTS, SERVICES, ApiError, Obj, Resource
from sc_operator.reconcile.context import Context
from sc_operator.reconcile.tls import ca_namespace
from sc_operator.render.gateway import gateway_config_document, gateway_objects

log = logging.getLogger(__name__)
_lock = threading.Lock()
_KINDS: dict[str, Resource] = {"ConfigMap": CONFIGMAPS, "Deployment": DEPLOYMENTS, "Service": SERVICES}
# What the operator owns in a ConfigMap and a Deployment; the rest (status, defaults the API server
# filled in) is carried over on replace.
_OWNED = ("data", "spec")
#: On each gateway object: the hash of what the operator rendered for it.
RENDERED_ANNOTATION = "serviceconnect.dev/rendered"


def linked_endpoints(namespaces: Sequence[Obj]) -> list[tuple[str, list[Endpoint]]]:
    """``(name, registered endpoints)`` of each ConnectNamespace with ``spec.peers``."""
    out = []
    for cns in namespaces:
        if not (cns.get("spec") or {}).get("peers"):
            continue
        raw = (cns.get("status") or {}).get("endpoints") or []
        out.append((str(cns["metadata"]["name"]), [Endpoint.model_validate(e) for e in raw]))
    return sorted(out, key=lambda item: item[0])


def sync_gateway(ctx: Context) -> None:
    """Create or update the gateway's objects (failures are logged: the next peer sync retries)."""
    if not ctx.settings.gateway_enabled:
        return
    with _lock:
        try:
            doc = gateway_config_document(linked_endpoints(ctx.kube.list(CONNECT_NAMESPACES)), ctx.settings)
            namespace = ca_namespace(ctx)
            for obj in gateway_objects(doc, namespace, ctx.settings):
                _apply(ctx, obj, namespace)
        except ApiError as exc:
            log.warning("gateway: cannot update %s: %s", "sc-gateway", exc)


def _apply(ctx: Context, obj: Obj, namespace: str) -> None:
    res = _KINDS[obj["kind"]]
    name = obj["metadata"]["name"]
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    obj = {**obj, "metadata": {**obj["metadata"], "annotations": {RENDERED_ANNOTATION: digest}}}
    current = ctx.kube.get_or_none(res, name, namespace)
    if current is None:
        ctx.kube.create(res, obj, namespace)
        log.info("gateway: created %s %s/%s", obj["kind"], namespace, name)
        return
    # Compared by the hash of what was rendered: the API server's defaults never look like a change.
    if (current["metadata"].get("annotations") or {}).get(RENDERED_ANNOTATION) == digest:
        return
    if obj["kind"] == "Service":
        # Merged over what the API server allocated (clusterIP, nodePorts); the chart's role may patch
        # Services, not update them.
        ctx.kube.patch(res, name, {"metadata": obj["metadata"], "spec": obj["spec"]}, namespace)
    else:
        merged: dict[str, Any] = {**current, **{k: obj[k] for k in _OWNED if k in obj}}
        merged["metadata"] = {
            **current["metadata"],
            "labels": obj["metadata"]["labels"],
            "annotations": {**(current["metadata"].get("annotations") or {}), RENDERED_ANNOTATION: digest},
        }
        ctx.kube.replace(res, merged, namespace)
    log.info("gateway: updated %s %s/%s", obj["kind"], namespace, name)
