"""What TLS adds to a rollout's rendering (pure): names, mounts, the proxy's ``tls`` blocks, and the
cert-manager ``Certificate`` of a service whose CA is a cert-manager issuer.

Layout (the contract with sc-proxy): a service's leaf Secret (``tls.crt``, ``tls.key``, ``ca.crt``) is
mounted read-only at ``/var/run/serviceconnect/tls/<service>/``; every ingress listener with ``tls`` points
at those files, and so does every pinned TLS endpoint as the client certificate (mutual TLS). Clients of TLS
endpoints and mutual-TLS servers mount their ConnectNamespace's CA bundle (a ConfigMap, public certificates
only) at ``/var/run/serviceconnect/ca/<connect-namespace>/ca.crt``. Only the proxy container mounts them.
The kubelet refreshes both in place; the proxy re-reads changed files.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.api.tls import IssuerRef
from sc_operator.certs import LeafRequest, spiffe_id
from sc_operator.render.inputs import RenderInputs, ServedEndpoint
from sc_operator.render.names import managed_labels, short_hash

TLS_MOUNT_ROOT = "/var/run/serviceconnect/tls"
CA_MOUNT_ROOT = "/var/run/serviceconnect/ca"
TLS_VOLUME = "sc-tls"
CA_VOLUME = "sc-ca"
CA_BUNDLE_KEY = "ca.crt"
#: On CA bundle ConfigMaps: the ConnectNamespace whose CAs they hold (label-safe form).
CA_BUNDLE_LABEL = "serviceconnect.dev/ca-bundle"
CERT_MANAGER_API = "cert-manager.io/v1"


def _object_name(prefix: str, name: str) -> str:
    """``prefix + name``, shortened with a hash when it would pass the 253-character object name limit."""
    full = prefix + name
    if len(full) <= 253:
        return full
    suffix = short_hash(name)
    return f"{full[: 253 - len(suffix) - 1].rstrip('.-')}-{suffix}"


def tls_secret_name(service: str) -> str:
    """The Secret holding a ConnectService's leaf certificate and key (type kubernetes.io/tls)."""
    return _object_name("sc-tls-", service)


def ca_bundle_name(connect_namespace: str) -> str:
    """The ConfigMap holding a ConnectNamespace's CA bundle, in every namespace with clients of it."""
    return _object_name("sc-ca-", connect_namespace)


def ca_file(connect_namespace: str) -> str:
    return f"{CA_MOUNT_ROOT}/{connect_namespace}/{CA_BUNDLE_KEY}"


def leaf_dir(service: str) -> str:
    return f"{TLS_MOUNT_ROOT}/{service}"


def serves_tls(inputs: RenderInputs) -> bool:
    return any(s.tls for s in inputs.served())


def trusts_tls(inputs: RenderInputs) -> bool:
    """Whether the rollout pinned a TLS endpoint (then its proxy needs the namespace's CA bundle, and a
    certificate of its own to present where the server asks for one)."""
    return any(ep.tls for ep in inputs.pinned)


def has_leaf(inputs: RenderInputs) -> bool:
    """Whether the service has a leaf certificate: it serves TLS, or calls TLS endpoints (mutual TLS)."""
    return serves_tls(inputs) or trusts_tls(inputs)


def needs_bundle(inputs: RenderInputs) -> bool:
    """Whether the proxy verifies peers: servers of TLS endpoints (callers, with mutual TLS) or clients."""
    return trusts_tls(inputs) or any(s.mutual_tls is not None for s in inputs.served())


def _leaf_files(service: str) -> dict[str, str]:
    base = leaf_dir(service)
    return {"certFile": f"{base}/tls.crt", "keyFile": f"{base}/tls.key"}


def ingress_tls(inputs: RenderInputs, served: ServedEndpoint) -> dict[str, Any]:
    """A TLS listener: the service's leaf; with mutual TLS the namespace's bundle verifies callers and
    ``allowedCallers`` (URI identities) narrows who may call."""
    out: dict[str, Any] = _leaf_files(inputs.service_name)
    mutual = served.mutual_tls
    if mutual is not None:
        cns = inputs.connect_namespace
        out["clientCaFile"] = ca_file(cns)
        callers = {
            spiffe_id(cns, c.namespace or inputs.k8s_namespace, c.name) for c in mutual.allowed_callers or []
        }
        if callers:
            out["allowedCallers"] = sorted(callers)
    return out


def endpoint_tls(ep: Endpoint, inputs: RenderInputs) -> dict[str, Any] | None:
    """The client side of a pinned endpoint: verify the chain against the namespace's bundle and the
    discoveryName (a DNS SAN of every leaf serving it), and present the service's own certificate when the
    server asks (mutual TLS; a server that does not ask never sees it)."""
    if not ep.tls:
        return None
    return {
        "caFile": ca_file(inputs.connect_namespace),
        "serverName": ep.discovery_name,
        **_leaf_files(inputs.service_name),
    }


def volumes_and_mounts(inputs: RenderInputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod volumes and the proxy container's mounts TLS needs (none without TLS: a service that does
    not use TLS renders exactly as before)."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if has_leaf(inputs):
        volumes.append({"name": TLS_VOLUME, "secret": {"secretName": tls_secret_name(inputs.service_name)}})
        mounts.append({"name": TLS_VOLUME, "mountPath": leaf_dir(inputs.service_name), "readOnly": True})
    if needs_bundle(inputs):
        cns = inputs.connect_namespace
        volumes.append({"name": CA_VOLUME, "configMap": {"name": ca_bundle_name(cns)}})
        mounts.append({"name": CA_VOLUME, "mountPath": f"{CA_MOUNT_ROOT}/{cns}", "readOnly": True})
    return volumes, mounts


def leaf_request(
    endpoints: list[Endpoint], connect_namespace: str, namespace: str, service: str
) -> LeafRequest:
    """The names of a service's leaf: for each of its TLS endpoints every name a client may use
    (discoveryName, dnsName, portName), and its URI identity."""
    names: list[str] = []
    for ep in endpoints:
        if ep.tls:
            names += [ep.discovery_name, ep.dns_name, *([ep.port_name] if ep.port_name else [])]
    return LeafRequest.of(names, spiffe_id(connect_namespace, namespace, service))


def _go_duration(seconds: int) -> str:
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


def certificate_object(
    service: str,
    namespace: str,
    owner: dict[str, Any],
    request: LeafRequest,
    issuer: IssuerRef,
    validity: dt.timedelta,
    renew_before: dt.timedelta,
    algorithm: str,
) -> dict[str, Any]:
    """The cert-manager ``Certificate`` standing for the leaf when the CA is a cert-manager issuer:
    cert-manager fills the same Secret the operator would (so the mount does not change)."""
    rsa = algorithm == "RSA_2048"
    return {
        "apiVersion": CERT_MANAGER_API,
        "kind": "Certificate",
        "metadata": {
            "name": tls_secret_name(service),
            "namespace": namespace,
            "labels": managed_labels(service),
            "ownerReferences": [owner],
        },
        "spec": {
            "secretName": tls_secret_name(service),
            "secretTemplate": {"labels": managed_labels(service)},
            "dnsNames": list(request.dns_names),
            "uris": [request.uri],
            "duration": _go_duration(int(validity.total_seconds())),
            "renewBefore": _go_duration(int(renew_before.total_seconds())),
            "privateKey": {
                "algorithm": "RSA" if rsa else "ECDSA",
                "size": 2048 if rsa else 256,
                "encoding": "PKCS8",
                "rotationPolicy": "Always",
            },
            "usages": [
                "digital signature",
                *(["key encipherment"] if rsa else []),
                "server auth",
                "client auth",
            ],
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        },
    }
