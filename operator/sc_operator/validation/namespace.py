"""Rules on one ConnectNamespace object (pure): the schema, and the TLS default's CA rules."""

from __future__ import annotations

from collections.abc import Mapping
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
    if model.tls is None:
        return nulls
    where = "spec.tls.issuerCertificateAuthority"
    return nulls + list(issuer_violations(model.tls.issuer_certificate_authority, where))
