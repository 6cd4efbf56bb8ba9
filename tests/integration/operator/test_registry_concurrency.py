"""The registry under contention, on a real API server: many services register and leave at once.

Each thread plays one ConnectService's handler. They all write the same ConnectNamespace status, so
most writes hit 409 Conflict and must re-read and retry; the test proves nothing is lost or doubled and
that the revision counts every change exactly once.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from sc_operator import GROUP, VERSION
from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.kube import CONNECT_NAMESPACES, METADATA_LIST, Kube
from sc_operator.registry import (
    NamespaceNotFound,
    Registry,
    RegistryConflict,
    RegistryWriter,
    deregister,
    register,
    update_registry,
)

PLURAL = "connectnamespaces"
SERVICES = 32
THREADS = 16


@pytest.fixture
def connect_namespace(api_client: Any, crds_installed: list[str]) -> Any:
    api = client.CustomObjectsApi(api_client)
    name = f"reg-{uuid.uuid4().hex[:8]}"
    api.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ConnectNamespace", "metadata": {"name": name}},
    )
    yield name
    api.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def endpoints_for(i: int) -> list[Endpoint]:
    svc = ServiceRef(namespace="shop", name=f"svc-{i:02d}")
    return [
        Endpoint(discovery_name=f"svc-{i:02d}", dns_name=f"svc-{i:02d}.shop", port=80, service=svc),
        Endpoint(discovery_name=f"svc-{i:02d}-admin", dns_name=f"svc-{i:02d}.shop", port=9000, service=svc),
    ]


def read(api: Any, name: str) -> Registry:
    return Registry.from_status(api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name).get("status"))


def test_concurrent_registration_loses_and_doubles_nothing(api_client: Any, connect_namespace: str) -> None:
    # One ApiClient per thread: the kubernetes client's connection pool is shared-safe, but separate
    # clients make the writers truly independent, as separate operator workers would be.
    def api() -> Any:
        return client.CustomObjectsApi(api_client)

    kube = Kube(api_client)

    def reg(i: int) -> None:
        svc = ServiceRef(namespace="shop", name=f"svc-{i:02d}")
        update_registry(kube, connect_namespace, lambda r: register(r, svc, endpoints_for(i), tasks=i))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(reg, range(SERVICES)))
    after = read(api(), connect_namespace)
    assert after.service_count == SERVICES
    assert len(after.endpoints) == 2 * SERVICES
    assert len({e.discovery_name for e in after.endpoints}) == 2 * SERVICES
    assert after.task_count == sum(range(SERVICES))
    assert after.revision == SERVICES

    # Registering again changes nothing (idempotent handlers after an operator restart).
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(reg, range(SERVICES)))
    assert read(api(), connect_namespace).revision == SERVICES

    # Half leave while the other half re-register with one endpoint fewer: all at once.
    def churn(i: int) -> None:
        svc = ServiceRef(namespace="shop", name=f"svc-{i:02d}")
        if i % 2:
            update_registry(kube, connect_namespace, lambda r: deregister(r, svc))
        else:
            update_registry(kube, connect_namespace, lambda r: register(r, svc, endpoints_for(i)[:1]))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(churn, range(SERVICES)))
    final = read(api(), connect_namespace)
    assert sorted(e.discovery_name for e in final.endpoints) == [
        f"svc-{i:02d}" for i in range(0, SERVICES, 2)
    ]
    assert final.service_count == SERVICES // 2
    assert final.revision == 2 * SERVICES
    status = api().get_cluster_custom_object(GROUP, VERSION, PLURAL, connect_namespace)["status"]
    assert status["endpointCount"] == SERVICES // 2


def test_racing_for_one_discovery_name_admits_exactly_one(api_client: Any, connect_namespace: str) -> None:
    def claim(i: int) -> tuple[str, str]:
        svc = ServiceRef(namespace="shop", name=f"claimer-{i}")
        ep = Endpoint(discovery_name="contested", dns_name=f"c{i}", port=80, service=svc)
        try:
            update_registry(Kube(api_client), connect_namespace, lambda r: register(r, svc, [ep]))
        except RegistryConflict as exc:
            return ("refused", exc.rule)
        return ("won", svc.name)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))
    winners = [name for outcome, name in results if outcome == "won"]
    assert len(winners) == 1
    assert {rule for outcome, rule in results if outcome == "refused"} == {"DuplicateDiscoveryName"}
    owners = {str(e.service) for e in read(client.CustomObjectsApi(api_client), connect_namespace).endpoints}
    assert owners == {f"shop/{winners[0]}"}


def test_missing_namespace_is_reported(api_client: Any, crds_installed: list[str]) -> None:
    with pytest.raises(NamespaceNotFound, match="does-not-exist"):
        update_registry(Kube(api_client), "does-not-exist", lambda r: None)


def test_batched_writer_combines_concurrent_registrations(api_client: Any, connect_namespace: str) -> None:
    """The operator's in-process writer: the same guarantees, fewer writes (one per batch)."""
    kube = Kube(api_client)
    writer = RegistryWriter(kube)
    puts = []
    original = kube.request

    def counting(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if method == "PUT":
            puts.append(path)
        return original(method, path, *args, **kwargs)

    kube.request = counting  # type: ignore[method-assign]

    def reg(i: int) -> int:
        svc = ServiceRef(namespace="shop", name=f"svc-{i:02d}")
        return writer.update(connect_namespace, lambda r: register(r, svc, endpoints_for(i))).revision

    with ThreadPoolExecutor(THREADS) as pool:
        revisions = list(pool.map(reg, range(SERVICES)))
    after = read(client.CustomObjectsApi(api_client), connect_namespace)
    assert after.service_count == SERVICES
    assert len(after.endpoints) == 2 * SERVICES
    assert after.revision == SERVICES
    assert max(revisions) == SERVICES
    assert len(puts) < SERVICES  # batched: fewer writes than registrations
    # A refused change fails only its own caller.
    intruder = ServiceRef(namespace="other", name="intruder")
    with pytest.raises(RegistryConflict, match="shop/svc-00"):
        writer.update(
            connect_namespace,
            lambda r: register(r, intruder, [endpoints_for(0)[0].model_copy(update={"service": intruder})]),
        )


def test_writer_memory_never_hides_a_change_made_elsewhere(api_client: Any, connect_namespace: str) -> None:
    """The writer writes on top of what it wrote last without reading it back, and lists registries as
    metadata, parsing only versions it has not seen. Changes by another process (kubectl, a second
    operator) must still be seen: neither lost by the next write nor hidden from the next check."""
    kube = Kube(api_client)
    writer = RegistryWriter(kube)
    api = client.CustomObjectsApi(api_client)
    svc = [ServiceRef(namespace="shop", name=f"svc-{i:02d}") for i in range(4)]
    gets = []
    original = kube.request

    def counting(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if method == "GET" and path.endswith(f"/{connect_namespace}"):
            gets.append(path)
        return original(method, path, *args, **kwargs)

    kube.request = counting  # type: ignore[method-assign]

    writer.update(connect_namespace, lambda r: register(r, svc[0], endpoints_for(0)))
    writer.update(connect_namespace, lambda r: register(r, svc[1], endpoints_for(1)))
    assert len(gets) == 1  # the second write went on top of the first without a read
    assert writer.registries()[connect_namespace][1] == read(api, connect_namespace)

    # Another process registers svc-02 behind the writer's back.
    update_registry(kube, connect_namespace, lambda r: register(r, svc[2], endpoints_for(2)))
    # registries() reads the API server's watch cache, which may lag by a moment: poll (bounded).
    deadline = time.monotonic() + 20
    while (listed := writer.registries()[connect_namespace][1]).members[2:] == () and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert [m.service for m in listed.members] == svc[:3]

    # The writer's next write conflicts (409), re-reads and keeps svc-02.
    written = writer.update(connect_namespace, lambda r: register(r, svc[3], endpoints_for(3)))
    stored = read(api, connect_namespace)
    assert written == stored
    assert [m.service for m in stored.members] == svc
    assert stored.revision == 4

    # A verdict from memory is confirmed by a read: svc-00 left elsewhere, so svc-00's name is free.
    update_registry(kube, connect_namespace, lambda r: deregister(r, svc[0]))
    newcomer = ServiceRef(namespace="other", name="newcomer")
    taken = endpoints_for(0)[0].model_copy(update={"service": newcomer})
    writer.update(connect_namespace, lambda r: register(r, newcomer, [taken]))
    assert {
        str(e.service) for e in read(api, connect_namespace).endpoints if e.discovery_name == "svc-00"
    } == {"other/newcomer"}


def test_a_lagging_cache_never_hides_the_writers_own_write(api_client: Any, connect_namespace: str) -> None:
    """registries() lists from the API server's cache (resourceVersion 0), which may still show the version
    before this writer's last write: the writer's own later version wins."""
    kube = Kube(api_client)
    writer = RegistryWriter(kube)
    svc = [ServiceRef(namespace="shop", name=f"svc-{i:02d}") for i in range(2)]
    writer.update(connect_namespace, lambda r: register(r, svc[0], endpoints_for(0)))
    original = kube.request
    stale = original("GET", CONNECT_NAMESPACES.path(), query={"resourceVersion": "0"}, accept=METADATA_LIST)
    writer.update(connect_namespace, lambda r: register(r, svc[1], endpoints_for(1)))

    def lagging(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if (kwargs.get("query") or {}).get("resourceVersion") == "0":
            return stale  # the cache has not seen the second write yet
        return original(method, path, *args, **kwargs)

    kube.request = lagging  # type: ignore[method-assign]
    meta, listed = writer.registries()[connect_namespace]
    assert listed.revision == 2
    assert [m.service for m in listed.members] == svc
    stored = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        GROUP, VERSION, PLURAL, connect_namespace
    )
    assert meta["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
