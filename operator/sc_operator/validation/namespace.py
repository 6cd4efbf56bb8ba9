"""Rules on one ConnectNamespace object (pure): the schema, the TLS default's CA rules, and the rules on
``spec.peers`` a schema cannot say (the operator applies the same ones:
:func:`sc_operator.peers.check_peers`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from sc_operator.api.namespace import ConnectNamespaceSpec
from sc_operator.validation.schema import null_violations, violations_from
from sc_operator.validation.tls import issuer_violations
from sc_operator.validation.violation import Violation


def validate_namespace(obj: Mapping[str, Any]) -> list[Violation]:
    """Every violation of a ConnectNamespace object (a missing spec is an empty one)."""
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        return [Violation("schema", "spec", "spec must be an object")]
    nulls = null_violations(ConnectNamespaceSpec, spec, "spec")
    try:
        model = ConnectNamespaceSpec.model_validate(spec)
    except ValidationError as exc:
        return nulls + violations_from(exc, "spec")
    violations = nulls + peer_violations(spec.get("peers") or [])
    if model.tls is not None:
        where = "spec.tls.issuerCertificateAuthority"
        violations += issuer_violations(model.tls.issuer_certificate_authority, where)
    return violations


def peer_violations(peers: Sequence[Mapping[str, Any]], own_cluster: str | None = None) -> list[Violation]:
    """Rules on ``spec.peers``: each cluster once, not this cluster's own name (when known: the operator's
    SC_CLUSTER_NAME), and a ``gateway`` exactly when the network is ``gateway``."""
    return [v for _, v in refused_peers(peers, own_cluster)]


def gateway_problem(network: Any, gateway: Any) -> str | None:
    """Why a peer's ``gateway`` does not fit its ``network`` (None: it does)."""
    if network != "gateway":
        if gateway is not None:
            return "set only with network: gateway (a flat peer's tasks are dialled directly)"
        return None
    if not isinstance(gateway, Mapping) or not gateway.get("address"):
        return (
            "required with network: gateway: the peer's gateway Service address and port (the peer's "
            "chart value gateway.enabled; see docs/operator.md, Linking clusters)"
        )
    try:
        ipaddress.ip_address(str(gateway["address"]))
    except ValueError:
        return f"address {gateway['address']!r} is not an IP address (a DNS name is not resolved)"
    return None


def refused_peers(
    peers: Sequence[Mapping[str, Any]], own_cluster: str | None = None
) -> list[tuple[str, Violation]]:
    """:func:`peer_violations` with the cluster name each one refuses."""
    violations: list[tuple[str, Violation]] = []
    seen: set[str] = set()
    for i, peer in enumerate(peers):
        name = str(peer.get("cluster", ""))
        where = f"spec.peers[{i}]"
        if name in seen:
            violations.append(
                (
                    name,
                    Violation(
                        "peer-duplicate",
                        f"{where}.cluster",
                        f"{name!r} is listed twice; each linked cluster once",
                    ),
                )
            )
        elif own_cluster is not None and name == own_cluster:
            violations.append(
                (
                    name,
                    Violation(
                        "peer-own-name",
                        f"{where}.cluster",
                        f"{name!r} is this cluster's own name (the operator's SC_CLUSTER_NAME); a link needs "
                        "two distinct names, or mirrored endpoints could not be told from local ones",
                    ),
                )
            )
        else:
            problem = gateway_problem(peer.get("network", "flat"), peer.get("gateway"))
            if problem is not None:
                violations.append((name, Violation("peer-gateway", f"{where}.gateway", problem)))
        seen.add(name)
    return violations
