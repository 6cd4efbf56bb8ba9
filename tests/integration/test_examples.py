"""examples/ is what a newcomer applies first: it must parse with our models and be accepted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.envtest import REPO
from support.kubectl import Kubectl

EXAMPLES = REPO / "examples"


def example_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_examples_hold_the_tutorial_server_and_a_client_only_service() -> None:
    from sc_operator.api.namespace import ConnectNamespaceSpec
    from sc_operator.api.service import ConnectServiceSpec

    services = {}
    for doc in example_documents():
        if doc["kind"] == "ConnectService":
            services[doc["metadata"]["name"]] = ConnectServiceSpec.model_validate(doc["spec"])
        elif doc["kind"] == "ConnectNamespace":
            ConnectNamespaceSpec.model_validate(doc.get("spec") or {})

    nginx = services["service-connect-nginx-service"]
    assert nginx.task_definition.family == "service-connect-nginx"
    (container,) = nginx.task_definition.container_definitions
    assert container.image == "public.ecr.aws/docker/library/nginx:latest"
    (mapping,) = container.port_mappings or []
    assert (mapping.name, mapping.container_port, mapping.app_protocol) == ("nginx", 80, "http")
    assert nginx.service_connect_configuration is not None
    (served,) = nginx.service_connect_configuration.services or []
    assert (served.port_name, served.discovery_name) == ("nginx", "nginx")
    assert [(a.port, a.dns_name) for a in served.client_aliases or []] == [(80, "nginx")]

    client = services["client"].service_connect_configuration
    assert client is not None
    assert client.enabled
    assert not client.services
    assert client.namespace == nginx.service_connect_configuration.namespace == "service-connect"


@pytest.fixture
def applied_examples(crds_installed: list[str], kubectl: Kubectl) -> Iterator[str]:
    out = kubectl("apply", "--server-side", "-f", str(EXAMPLES))
    try:
        yield out
    finally:
        # Leave the shared API server as it was for the other tests.
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(EXAMPLES))


def test_examples_are_accepted_by_server_side_apply(applied_examples: str, kubectl: Kubectl) -> None:
    for obj in (
        "connectnamespace.serviceconnect.dev/service-connect",
        "namespace/tutorial",
        "connectservice.serviceconnect.dev/service-connect-nginx-service",
        "connectservice.serviceconnect.dev/client",
    ):
        assert f"{obj} serverside-applied" in applied_examples, applied_examples

    names = kubectl("get", "connectservices", "-n", "tutorial", "-o", "name").split()
    assert sorted(names) == [
        "connectservice.serviceconnect.dev/client",
        "connectservice.serviceconnect.dev/service-connect-nginx-service",
    ]
    # What was applied is what is stored: the schema pruned nothing from the examples.
    stored = yaml.safe_load(
        kubectl("get", "csvc", "service-connect-nginx-service", "-n", "tutorial", "-o", "yaml")
    )
    (source,) = [d for d in example_documents() if d["metadata"]["name"] == "service-connect-nginx-service"]
    assert stored["spec"] == source["spec"]

    # Applying again is a no-op, as a newcomer re-running the command would expect.
    again = kubectl("apply", "--server-side", "-f", str(EXAMPLES))
    assert again.count("serverside-applied") == 4, again
    assert kubectl("get", "csvc", "-n", "tutorial", "client", "-o", "jsonpath={.metadata.generation}") == "1"
