"""A ConnectNamespace's initial status never wipes a registration that came first, on a real API server.

kopf hands the create handler the body of the event. When a service is applied right after its namespace,
the service's handler may register endpoints before the namespace's handler runs with that older body;
initialising from it used to replace the registry with an empty one, and later rollouts of clients then
pinned a namespace without the server (seen as a client task that could not resolve its server's name).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from sc_operator import GROUP, VERSION
from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.kube import CONNECT_NAMESPACES, Kube
from sc_operator.reconcile.conditions import get_condition
from sc_operator.reconcile.context import Context
from sc_operator.reconcile.namespace import initialise
from sc_operator.registry import Registry, register


@pytest.fixture
def fresh_namespace(kube: Kube, crds_installed: list[str]) -> Iterator[dict[str, object]]:
    """A new ConnectNamespace, and its body as the create event carries it (no status yet)."""
    name = f"init-{uuid.uuid4().hex[:8]}"
    body = kube.create(
        CONNECT_NAMESPACES,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ConnectNamespace", "metadata": {"name": name}},
    )
    yield body
    kube.delete(CONNECT_NAMESPACES, name)


def _stored(kube: Kube, name: str) -> tuple[Registry, str | None]:
    obj = kube.get(CONNECT_NAMESPACES, name)
    status = obj.get("status") or {}
    ready = get_condition(status.get("conditions"), "Ready")
    return Registry.from_status(status), ready["status"] if ready else None


def test_initialising_from_an_old_body_keeps_a_registration_made_meanwhile(
    kube: Kube, fresh_namespace: dict[str, object]
) -> None:
    ctx = Context(kube=kube)
    name = fresh_namespace["metadata"]["name"]  # type: ignore[index]
    server = ServiceRef(namespace="shop", name="slow")
    endpoint = Endpoint(discovery_name="slow", dns_name="slow", port=80, service=server)
    # The service's handler registers first ...
    ctx.registry.update(name, lambda r: register(r, server, [endpoint]))
    # ... then the namespace's create handler runs with the event's body, which has no status.
    initialise(ctx, fresh_namespace)
    registry, ready = _stored(kube, name)
    assert [e.discovery_name for e in registry.endpoints] == ["slow"]
    assert registry.revision == 1
    assert ready == "True"


def test_initialising_gives_an_empty_registry_and_is_idempotent(
    kube: Kube, fresh_namespace: dict[str, object]
) -> None:
    ctx = Context(kube=kube)
    name = fresh_namespace["metadata"]["name"]  # type: ignore[index]
    initialise(ctx, fresh_namespace)
    registry, ready = _stored(kube, name)
    assert (registry.endpoints, registry.members, registry.revision, ready) == ((), (), 0, "True")
    version = kube.get(CONNECT_NAMESPACES, name)["metadata"]["resourceVersion"]
    initialise(ctx, fresh_namespace)  # the resume handler, after a restart: nothing to write
    assert kube.get(CONNECT_NAMESPACES, name)["metadata"]["resourceVersion"] == version
