"""TLS rules: the ECS-only fields are refused naming what to use here; one CA per service."""

from __future__ import annotations

from typing import Any

import pytest

from sc_operator.validation import RULES, validate_namespace, validate_service

SCC = "spec.serviceConnectConfiguration"
TLS = f"{SCC}.services[0].tls"


def base() -> dict[str, Any]:
    """A server with two ports (nginx http, redis tcp); services[0] serves nginx."""
    port_mappings = [
        {"name": "nginx", "containerPort": 80, "appProtocol": "http"},
        {"name": "redis", "containerPort": 6379},
    ]
    return {
        "taskDefinition": {
            "family": "nginx",
            "networkMode": "awsvpc",
            "memory": "512",
            "containerDefinitions": [{"name": "web", "image": "nginx", "portMappings": port_mappings}],
        },
        "serviceConnectConfiguration": {
            "enabled": True,
            "namespace": "tutorial",
            "services": [{"portName": "nginx", "clientAliases": [{"port": 80}]}],
        },
    }


def svc(spec: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = spec["serviceConnectConfiguration"]["services"][0]
    return entry


def _obj(tls: dict[str, Any] | None, second: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = base()
    if tls is not None:
        svc(spec)["tls"] = tls
    if second is not None:
        extra = {"portName": "redis", "clientAliases": [{"port": 6379}], "tls": second}
        spec["serviceConnectConfiguration"]["services"].append(extra)
    return {"spec": spec}


def _rules(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(v.rule, v.field) for v in validate_service(obj)}


@pytest.mark.parametrize(
    "ca",
    [{}, {"secretName": "my-ca"}, {"issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}],
)
def test_each_ca_choice_is_accepted(ca: dict[str, Any]) -> None:
    assert _rules(_obj({"issuerCertificateAuthority": ca})) == set()


def test_aws_private_ca_is_refused_saying_what_to_use() -> None:
    found = validate_service(
        _obj({"issuerCertificateAuthority": {"awsPcaAuthorityArn": "arn:aws:acm-pca:x"}})
    )
    assert [(v.rule, v.field) for v in found] == [
        ("tls-aws-pca", f"{TLS}.issuerCertificateAuthority.awsPcaAuthorityArn")
    ]
    for choice in ("{}", "secretName", "issuerRef"):
        assert choice in found[0].message


def test_kms_key_and_role_arn_are_refused_not_ignored() -> None:
    tls = {"issuerCertificateAuthority": {}, "kmsKey": "arn:aws:kms:k", "roleArn": "arn:aws:iam::1:role/r"}
    found = validate_service(_obj(tls))
    assert {(v.rule, v.field) for v in found} == {
        ("tls-kms-key", f"{TLS}.kmsKey"),
        ("tls-role-arn", f"{TLS}.roleArn"),
    }
    assert all("refused, not ignored" in v.message for v in found)


def test_two_cas_in_one_block_are_refused() -> None:
    ca = {"secretName": "a", "issuerRef": {"name": "b"}}
    assert _rules(_obj({"issuerCertificateAuthority": ca})) == {
        ("tls-issuer", f"{TLS}.issuerCertificateAuthority")
    }


def test_one_ca_per_service() -> None:
    first = {"issuerCertificateAuthority": {}}
    assert _rules(_obj(first, first)) == set()
    other = {"issuerCertificateAuthority": {"secretName": "other"}}
    assert _rules(_obj(first, other)) == {
        ("tls-one-issuer", f"{SCC}.services[1].tls.issuerCertificateAuthority")
    }


def test_issuer_ref_kind_and_group_are_cert_managers() -> None:
    bad = {"issuerCertificateAuthority": {"issuerRef": {"name": "x", "group": "example.com"}}}
    assert {r for r, _ in _rules(_obj(bad))} == {"schema"}


def test_connect_namespace_default_ca() -> None:
    assert validate_namespace({"spec": {"tls": {"issuerCertificateAuthority": {"secretName": "ca"}}}}) == []
    found = validate_namespace({"spec": {"tls": {"issuerCertificateAuthority": {"awsPcaAuthorityArn": "a"}}}})
    assert [(v.rule, v.field) for v in found] == [
        ("tls-aws-pca", "spec.tls.issuerCertificateAuthority.awsPcaAuthorityArn")
    ]


def test_rules_are_listed() -> None:
    assert {"tls-aws-pca", "tls-issuer", "tls-one-issuer", "tls-kms-key", "tls-role-arn"} <= set(RULES)
