"""TLS rules (pure): what ECS asks for that has no meaning here is refused with what to use instead.

- ``awsPcaAuthorityArn`` (``tls-aws-pca``): AWS Private CA is not reachable from Kubernetes; the CA is
  ``{}`` (the operator's, per ConnectNamespace), ``secretName`` or ``issuerRef``.
- ``kmsKey`` (``tls-kms-key``) and ``roleArn`` (``tls-role-arn``): refused rather than ignored (a setting
  accepted and ignored would claim a protection that does not exist). Private keys live in Kubernetes
  Secrets, encrypted at rest by the API server's EncryptionConfiguration; no IAM role is involved.
- at most one CA per ``issuerCertificateAuthority`` (``tls-issuer``), and one per service
  (``tls-one-issuer``): a service has one certificate covering all its TLS endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

from sc_operator.api.service import ConnectServiceSpec
from sc_operator.api.tls import IssuerCertificateAuthority, TlsConfiguration
from sc_operator.validation.endpoints import SCC, served
from sc_operator.validation.violation import Violation

CA_CHOICES = (
    "use {} (a CA the operator creates and keeps per ConnectNamespace, or the ConnectNamespace's "
    "spec.tls default), secretName (a Secret with your CA's tls.crt and tls.key) or issuerRef (a "
    "cert-manager Issuer or ClusterIssuer)"
)


def issuer_violations(ca: IssuerCertificateAuthority, where: str) -> Iterator[Violation]:
    """The rules on one issuerCertificateAuthority (a service's or a ConnectNamespace's)."""
    if ca.aws_pca_authority_arn is not None:
        yield Violation(
            "tls-aws-pca",
            f"{where}.awsPcaAuthorityArn",
            f"AWS Private CA is not available to Service Connect for Kubernetes; {CA_CHOICES}",
        )
    named = [f for f, v in (("secretName", ca.secret_name), ("issuerRef", ca.issuer_ref)) if v is not None]
    if len(named) > 1:
        yield Violation(
            "tls-issuer",
            where,
            f"name at most one CA; got {' and '.join(named)}",
        )


def tls_block_violations(tls: TlsConfiguration, where: str) -> Iterator[Violation]:
    yield from issuer_violations(tls.issuer_certificate_authority, f"{where}.issuerCertificateAuthority")
    if tls.kms_key is not None:
        yield Violation(
            "tls-kms-key",
            f"{where}.kmsKey",
            "refused, not ignored: private keys are kept in Kubernetes Secrets, which the API server "
            "encrypts at rest with its own EncryptionConfiguration (configure a KMS provider there); "
            "remove kmsKey",
        )
    if tls.role_arn is not None:
        yield Violation(
            "tls-role-arn",
            f"{where}.roleArn",
            "refused, not ignored: no IAM role is involved here (the operator issues certificates "
            "itself or through cert-manager); remove roleArn",
        )


def tls_rules(spec: ConnectServiceSpec) -> Iterator[Violation]:
    """Every TLS block of the service, and one CA per service."""
    first: tuple[int, IssuerCertificateAuthority] | None = None
    for i, service in enumerate(served(spec)):
        if service.tls is None:
            continue
        yield from tls_block_violations(service.tls, f"{SCC}.services[{i}].tls")
        ca = service.tls.issuer_certificate_authority
        if first is None:
            first = (i, ca)
        elif ca != first[1]:
            yield Violation(
                "tls-one-issuer",
                f"{SCC}.services[{i}].tls.issuerCertificateAuthority",
                f"differs from services[{first[0]}]'s: a service has one certificate for all its TLS "
                "endpoints, from one CA",
            )
