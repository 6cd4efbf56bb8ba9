"""TLS between proxies: where certificates come from (ServiceConnectTlsConfiguration, and ours).

ECS names an AWS Private CA (``awsPcaAuthorityArn``); here a CA is named one of three ways, at most one
per ``issuerCertificateAuthority``:

- ``{}``: a CA the operator creates and keeps, one per ConnectNamespace (or the ConnectNamespace's default
  CA, ``spec.tls``, when it sets one);
- ``secretName``: a Secret holding the CA's ``tls.crt`` and ``tls.key``, provided by the user (in the
  ConnectService's Kubernetes namespace; for a ConnectNamespace default, in the operator's namespace);
- ``issuerRef``: a cert-manager ``Issuer`` or ``ClusterIssuer``; the operator creates cert-manager
  ``Certificate`` objects and mounts the Secrets cert-manager fills.

``awsPcaAuthorityArn``, ``kmsKey`` and ``roleArn`` stay in the schema so ECS definitions parse, and are
refused by validation with a message saying what to use instead (``sc_operator.validation.tls``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sc_operator.api.common import OBJECT_NAME_MAX_LENGTH, OBJECT_NAME_PATTERN, ApiModel

ObjectName = Annotated[
    str, Field(min_length=1, max_length=OBJECT_NAME_MAX_LENGTH, pattern=OBJECT_NAME_PATTERN)
]


class IssuerRef(ApiModel):
    """A cert-manager issuer (cert-manager's own ``issuerRef``)."""

    name: ObjectName
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    """An Issuer lives in the ConnectService's namespace; a ClusterIssuer is cluster-wide."""
    group: Literal["cert-manager.io"] = "cert-manager.io"


class IssuerCertificateAuthority(ApiModel):
    """Where the TLS certificates come from: at most one field; ``{}`` is the operator's CA."""

    aws_pca_authority_arn: str | None = None
    """ECS only: refused here (use one of the others)."""
    secret_name: ObjectName | None = None
    """A Secret (type kubernetes.io/tls or Opaque) with the CA's ``tls.crt`` and ``tls.key`` (PEM)."""
    issuer_ref: IssuerRef | None = None
    """A cert-manager Issuer or ClusterIssuer (needs cert-manager in the cluster)."""


class CallerRef(ApiModel):
    """A ConnectService allowed to call (by its certificate's URI identity)."""

    name: ObjectName
    namespace: ObjectName | None = None
    """Default: the namespace of the ConnectService that lists it."""


class MutualTls(ApiModel):
    """Ours, beyond ECS: callers must present a certificate from the ConnectNamespace's CAs."""

    allowed_callers: list[CallerRef] | None = None
    """Only these services may call (others fail the handshake); unset or empty: any service of the
    ConnectNamespace."""


class TlsConfiguration(ApiModel):
    """TLS between proxies (ServiceConnectTlsConfiguration); not available in bridge mode."""

    issuer_certificate_authority: IssuerCertificateAuthority
    kms_key: str | None = None
    """ECS only (the key encrypting private keys in Secrets Manager): refused here; Kubernetes Secrets
    are encrypted at rest by the API server's EncryptionConfiguration."""
    role_arn: str | None = None
    """ECS only (the IAM role ECS uses to reach AWS Private CA): refused here."""
    mutual_tls: MutualTls | None = None
    """Ours: mutual TLS on this endpoint (every client proxy presents its service's certificate)."""


class NamespaceTls(ApiModel):
    """Ours: the default CA of a ConnectNamespace's TLS services (those whose CA is ``{}``)."""

    issuer_certificate_authority: IssuerCertificateAuthority
