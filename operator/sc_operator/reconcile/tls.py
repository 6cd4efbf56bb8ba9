"""TLS at the edge: CAs, leaf Secrets, cert-manager Certificates and CA bundles, read and written here;
every decision is :mod:`sc_operator.certs` or :mod:`sc_operator.render.tls` (pure).

- **The CA of a service** (:func:`resolve_ca`, read-only, so a refusal touches nothing): its own
  ``issuerCertificateAuthority`` when it names one, else its ConnectNamespace's ``spec.tls`` default, else
  the operator's CA for the ConnectNamespace — a Secret ``sc-ca-<connect-namespace>`` in the CA namespace
  (the operator's), created on first use and kept (10 years; its key never leaves that Secret).
- **The leaf** (:func:`ensure_leaf`): a ``kubernetes.io/tls`` Secret ``sc-tls-<service>`` in the service's
  namespace, owned by the ConnectService (deleting the service deletes it). Issued again only when
  :func:`sc_operator.certs.renewal_reason` says so, so a restarted operator re-issues nothing that is
  still good. With a cert-manager issuer a ``Certificate`` is created instead and cert-manager fills the
  same Secret.
- **The bundle**: a ConfigMap ``sc-ca-<connect-namespace>`` (``ca.crt``: public certificates only) in the CA
  namespace, holding every CA that signs leaves of the ConnectNamespace, and a copy in every Kubernetes
  namespace with clients of it. A change to the bundle is copied to every copy at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.api.service import ConnectServiceSpec
from sc_operator.api.tls import IssuerCertificateAuthority, IssuerRef, NamespaceTls
from sc_operator.certs import (
    CertError,
    CertificateAuthority,
    LeafRequest,
    expires,
    issue_leaf,
    merge_bundle,
    new_ca,
    renewal_reason,
)
from sc_operator.kube import CONFIGMAPS, CONNECT_SERVICES, NAMESPACES, ApiError, Obj, Resource
from sc_operator.reconcile.conditions import get_condition
from sc_operator.reconcile.context import Context
from sc_operator.render.names import label_value, managed_labels
from sc_operator.render.tls import (
    CA_BUNDLE_KEY,
    CA_BUNDLE_LABEL,
    ca_bundle_name,
    certificate_object,
    leaf_request,
    tls_secret_name,
)
from sc_operator.render.workload import owner_reference
from sc_operator.validation import effective_endpoints
from sc_operator.validation.tls import issuer_violations

log = logging.getLogger(__name__)

SECRETS = Resource("", "v1", "secrets")
CERTIFICATES = Resource("cert-manager.io", "v1", "certificates")
CA_VALIDITY = dt.timedelta(days=3650)
#: On leaf Secrets: why the current certificate was issued (renewal, names changed, …).
ISSUED_REASON_ANNOTATION = "serviceconnect.dev/issued-because"


class TlsRefusal(Exception):
    """The service's CA cannot be used; ``reason`` is a condition reason, the message names the field."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CaSource:
    """Where a service's certificates come from, resolved."""

    kind: Literal["operator", "secret", "cert-manager"]
    """The ConnectNamespace's CA the operator keeps, a user's CA Secret, or a cert-manager issuer."""
    secret_namespace: str = ""
    secret_name: str = ""
    issuer: IssuerRef | None = None
    ca: CertificateAuthority | None = None
    """Loaded for ``secret`` (and for ``operator`` once it exists)."""


def ca_namespace(ctx: Context) -> str:
    return ctx.settings.ca_namespace or os.environ.get("POD_NAMESPACE") or "default"


def tls_entry(spec: ConnectServiceSpec) -> IssuerCertificateAuthority | None:
    """The CA the service's TLS endpoints name (validation makes them all name the same one)."""
    scc = spec.service_connect_configuration
    if scc is None or not scc.enabled:
        return None
    for s in scc.services or []:
        if s.tls is not None:
            return s.tls.issuer_certificate_authority
    return None


def _decode(secret: Obj, key: str) -> bytes:
    raw = (secret.get("data") or {}).get(key)
    return base64.b64decode(raw) if raw else b""


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _load_ca(ctx: Context, namespace: str, name: str, field: str) -> CertificateAuthority:
    secret = ctx.kube.get_or_none(SECRETS, name, namespace)
    if secret is None:
        raise TlsRefusal(
            "CaSecretNotFound",
            f"{field}: Secret {namespace}/{name} does not exist (it must hold the CA's tls.crt and tls.key)",
        )
    try:
        return CertificateAuthority.from_pem(_decode(secret, "tls.crt"), _decode(secret, "tls.key"))
    except CertError as exc:
        raise TlsRefusal("CaSecretInvalid", f"{field}: Secret {namespace}/{name}: {exc}") from None


def _operator_ca_name(connect_namespace: str) -> str:
    return ca_bundle_name(connect_namespace)  # sc-ca-<cns>: the Secret (key) beside the ConfigMap (bundle)


def resolve_ca(
    ctx: Context,
    service_namespace: str,
    spec: ConnectServiceSpec,
    connect_namespace: str,
    calls_tls: bool = False,
) -> CaSource | None:
    """The service's CA (reads only); None when it neither serves TLS nor calls TLS endpoints (a service
    that only calls gets its certificate, for mutual TLS, from the ConnectNamespace's CA as with ``{}``).
    Raises :class:`TlsRefusal`."""
    ca = tls_entry(spec)
    if ca is None:
        if not calls_tls:
            return None
        ca = IssuerCertificateAuthority()
    field = "spec.serviceConnectConfiguration.services[].tls.issuerCertificateAuthority"
    where = service_namespace
    if ca.secret_name is None and ca.issuer_ref is None:
        raw = ctx.namespace_tls(connect_namespace)
        try:
            default = NamespaceTls.model_validate(raw).issuer_certificate_authority if raw else None
        except ValidationError as exc:  # the CRD schema refuses this first; be clear if it slips by
            raise TlsRefusal("TlsIssuer", f"ConnectNamespace {connect_namespace} spec.tls: {exc}") from None
        found = list(issuer_violations(default, "spec.tls.issuerCertificateAuthority")) if default else []
        if found:
            rule = found[0]
            raise TlsRefusal(
                "".join(p.capitalize() for p in rule.rule.split("-")),
                f"the default CA of ConnectNamespace {connect_namespace}: {rule}",
            )
        if default is not None and (default.secret_name or default.issuer_ref):
            ca, where = default, ca_namespace(ctx)
            field = f"ConnectNamespace {connect_namespace} spec.tls.issuerCertificateAuthority"
    if ca.issuer_ref is not None:
        if not cert_manager_installed(ctx):
            raise TlsRefusal(
                "CertManagerNotInstalled",
                f"{field}.issuerRef: cert-manager's Certificate API (cert-manager.io/v1) is not installed",
            )
        return CaSource("cert-manager", issuer=ca.issuer_ref)
    if ca.secret_name is not None:
        loaded = _load_ca(ctx, where, ca.secret_name, f"{field}.secretName")
        return CaSource("secret", where, ca.secret_name, ca=loaded)
    home, name = ca_namespace(ctx), _operator_ca_name(connect_namespace)
    if ctx.kube.get_or_none(SECRETS, name, home) is None and ctx.kube.get_or_none(NAMESPACES, home) is None:
        raise _no_ca_namespace(home)
    return CaSource("operator", home, name)


def _no_ca_namespace(home: str) -> TlsRefusal:
    return TlsRefusal(
        "CaNamespaceNotFound",
        f"the CA namespace {home!r} (SC_CA_NAMESPACE, else the operator's namespace) does not exist: "
        "the operator keeps each ConnectNamespace's CA key there",
    )


def cert_manager_installed(ctx: Context) -> bool:
    try:
        resources = ctx.kube.request("GET", "/apis/cert-manager.io/v1").get("resources") or []
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.get("name") == "certificates" for r in resources)


def _operator_ca(ctx: Context, source: CaSource, connect_namespace: str) -> CertificateAuthority:
    """The ConnectNamespace's CA, created once (a concurrent creator's CA wins; both then use it)."""
    existing = ctx.kube.get_or_none(SECRETS, source.secret_name, source.secret_namespace)
    if existing is None:
        made = new_ca(
            f"Service Connect CA {connect_namespace}",
            ctx.clock(),
            CA_VALIDITY,
            ctx.settings.tls_key_algorithm,
        )
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": source.secret_name,
                "namespace": source.secret_namespace,
                "labels": {CA_BUNDLE_LABEL: label_value(connect_namespace)},
            },
            "data": {"tls.crt": _encode(made.cert_pem), "tls.key": _encode(made.key_pem)},
        }
        try:
            existing, created = ctx.kube.create_or_get(SECRETS, body, source.secret_namespace)
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise _no_ca_namespace(source.secret_namespace) from None
        if created:
            log.info("created the CA of ConnectNamespace %s", connect_namespace)
    try:
        return CertificateAuthority.from_pem(_decode(existing, "tls.crt"), _decode(existing, "tls.key"))
    except CertError as exc:
        raise TlsRefusal(
            "CaSecretInvalid", f"the CA Secret {source.secret_namespace}/{source.secret_name}: {exc}"
        ) from None


def ensure_leaf(
    ctx: Context,
    service: Obj,
    source: CaSource,
    connect_namespace: str,
    endpoints: list[Endpoint],
) -> dict[str, Any]:
    """Issue (or renew) the service's leaf, or create its cert-manager Certificate; add its CA to the
    ConnectNamespace's bundle. Returns the service's ``status.tlsCertificate``."""
    meta = service["metadata"]
    ns, name = meta["namespace"], meta["name"]
    request = leaf_request(endpoints, connect_namespace, ns, name)
    owner = owner_reference("ConnectService", name, meta["uid"])
    settings = ctx.settings
    validity = dt.timedelta(seconds=settings.tls_certificate_validity_seconds)
    renew_before = dt.timedelta(seconds=settings.tls_renew_before_seconds)
    if source.kind == "cert-manager":
        assert source.issuer is not None
        wanted = certificate_object(
            name, ns, owner, request, source.issuer, validity, renew_before, settings.tls_key_algorithm
        )
        current, created = ctx.kube.create_or_get(CERTIFICATES, wanted, ns)
        if not created and current.get("spec") != wanted["spec"]:
            wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            ctx.kube.replace(CERTIFICATES, wanted, ns)
        # cert-manager writes ca.crt into the Secret for CA issuers: that is what clients must trust.
        filled = ctx.kube.get_or_none(SECRETS, tls_secret_name(name), ns)
        ca_pem = _decode(filled, "ca.crt") if filled is not None else b""
        if ca_pem:
            add_to_bundle(ctx, connect_namespace, ca_pem)
        chain = _decode(filled, "tls.crt") if filled is not None else b""
    else:
        ca = source.ca if source.ca is not None else _operator_ca(ctx, source, connect_namespace)
        add_to_bundle(ctx, connect_namespace, ca.trust_pem)
        chain = _issue_if_needed(ctx, service, ca, request, owner, validity, renew_before)
    not_after = _not_after(chain)
    return {"secretName": tls_secret_name(name), "notAfter": not_after}


def _not_after(chain: bytes) -> str | None:
    try:
        return expires(chain).strftime("%Y-%m-%dT%H:%M:%SZ") if chain else None
    except ValueError:
        return None


def _issue_if_needed(
    ctx: Context,
    service: Obj,
    ca: CertificateAuthority,
    request: LeafRequest,
    owner: Obj,
    validity: dt.timedelta,
    renew_before: dt.timedelta,
) -> bytes:
    """The leaf chain in force: the stored one when still good, else a new one (stored)."""
    meta = service["metadata"]
    ns, name = meta["namespace"], meta["name"]
    secret_name = tls_secret_name(name)
    algorithm = ctx.settings.tls_key_algorithm
    current = ctx.kube.get_or_none(SECRETS, secret_name, ns)
    now = ctx.clock()
    chain = _decode(current, "tls.crt") if current else None
    key = _decode(current, "tls.key") if current else None
    reason = renewal_reason(chain, key, ca.cert, request, now, renew_before, algorithm)
    if reason is None:
        assert chain is not None
        return chain
    leaf = issue_leaf(ca, request, now, validity, algorithm)
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": secret_name,
            "namespace": ns,
            "labels": managed_labels(name),
            "annotations": {ISSUED_REASON_ANNOTATION: reason},
            "ownerReferences": [owner],
        },
        "data": {"tls.crt": _encode(leaf.chain), "tls.key": _encode(leaf.key), "ca.crt": _encode(leaf.ca)},
    }
    if current is None:
        ctx.kube.create(SECRETS, body, ns)
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        ctx.kube.replace(SECRETS, body, ns)
    until = expires(leaf.chain).strftime("%Y-%m-%dT%H:%M:%SZ")
    names = ", ".join(request.dns_names) or request.uri
    message = f"TLS certificate for {names} issued ({reason}), valid until {until}"
    log.info("%s/%s: %s", ns, name, message)
    ctx.kube.post_event(service, "Normal", "CertificateIssued", message)
    return leaf.chain


def _bundle_body(connect_namespace: str, namespace: str, pem: bytes) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ca_bundle_name(connect_namespace),
            "namespace": namespace,
            "labels": {CA_BUNDLE_LABEL: label_value(connect_namespace)},
        },
        "data": {CA_BUNDLE_KEY: pem.decode()},
    }


def _bundle_text(obj: Obj | None) -> bytes:
    return str(((obj or {}).get("data") or {}).get(CA_BUNDLE_KEY, "")).encode()


def add_to_bundle(ctx: Context, connect_namespace: str, ca_pem: bytes) -> None:
    """Put ``ca_pem`` into the ConnectNamespace's bundle (once) and copy a changed bundle everywhere."""
    home = ca_namespace(ctx)
    name = ca_bundle_name(connect_namespace)
    for _ in range(5):  # optimistic concurrency: another service may add its CA at the same moment
        current = ctx.kube.get_or_none(CONFIGMAPS, name, home)
        merged = merge_bundle(_bundle_text(current), [ca_pem], ctx.clock())
        if current is not None and merged == _bundle_text(current):
            return
        body = _bundle_body(connect_namespace, home, merged)
        try:
            if current is None:
                ctx.kube.create(CONFIGMAPS, body, home)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                ctx.kube.replace(CONFIGMAPS, body, home)
        except ApiError as exc:
            if exc.status == 409:
                continue
            raise
        _propagate(ctx, connect_namespace, merged)
        return
    raise ApiError(409, f"the CA bundle {home}/{name} kept changing")


def _propagate(ctx: Context, connect_namespace: str, pem: bytes) -> None:
    labels = {CA_BUNDLE_LABEL: label_value(connect_namespace)}
    for copy in ctx.kube.list(CONFIGMAPS, None, labels, cached=False):
        if copy["metadata"]["name"] != ca_bundle_name(connect_namespace) or _bundle_text(copy) == pem:
            continue
        body = _bundle_body(connect_namespace, copy["metadata"]["namespace"], pem)
        body["metadata"]["resourceVersion"] = copy["metadata"]["resourceVersion"]
        try:
            ctx.kube.replace(CONFIGMAPS, body, copy["metadata"]["namespace"])
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or changed by a concurrent propagation: fine
                raise


def ensure_bundle_copy(ctx: Context, connect_namespace: str, namespace: str) -> None:
    """The ConnectNamespace's bundle in ``namespace`` (for clients there that pinned TLS endpoints)."""
    home = ca_namespace(ctx)
    if namespace == home:
        master = ctx.kube.get_or_none(CONFIGMAPS, ca_bundle_name(connect_namespace), home)
        if master is None:
            ctx.kube.create_or_get(CONFIGMAPS, _bundle_body(connect_namespace, home, b""), home)
        return
    master = ctx.kube.get_or_none(CONFIGMAPS, ca_bundle_name(connect_namespace), home)
    pem = _bundle_text(master)
    copy, created = ctx.kube.create_or_get(
        CONFIGMAPS, _bundle_body(connect_namespace, namespace, pem), namespace
    )
    if not created and _bundle_text(copy) != pem and pem:
        body = _bundle_body(connect_namespace, namespace, pem)
        body["metadata"]["resourceVersion"] = copy["metadata"]["resourceVersion"]
        ctx.kube.replace(CONFIGMAPS, body, namespace)


def tls_switched(before: Iterable[Endpoint], after: Iterable[Endpoint]) -> list[tuple[str, bool]]:
    """discoveryNames registered before and after whose TLS flag changed, with the new flag (pure)."""
    old = {ep.discovery_name: bool(ep.tls) for ep in before}
    new = {ep.discovery_name: bool(ep.tls) for ep in after}
    return sorted((name, flag) for name, flag in new.items() if name in old and old[name] != flag)


def verifies_callers(spec: ConnectServiceSpec) -> bool:
    """Whether any endpoint of the service asks for mutual TLS."""
    scc = spec.service_connect_configuration
    services = scc.services or [] if scc is not None and scc.enabled else []
    return any(s.tls is not None and s.tls.mutual_tls is not None for s in services)


def pinned_tls(endpoints: list[Endpoint] | None) -> bool:
    return any(ep.tls for ep in endpoints or [])


def maintain(ctx: Context, namespace: str, name: str) -> None:
    """The timer's part: renew the leaf of an accepted service that has one (it serves or calls TLS
    endpoints) when due; cheap when it is not: a read of the Secret (and of a user's CA Secret)."""
    with ctx.service_lock(namespace, name):
        service = ctx.kube.get_or_none(CONNECT_SERVICES, name, namespace)
        if service is None or service["metadata"].get("deletionTimestamp"):
            return
        status = service.get("status") or {}
        accepted = get_condition(status.get("conditions"), "Accepted")
        connect_namespace = status.get("namespace")
        if accepted is None or accepted.get("status") != "True" or not connect_namespace:
            return  # reconcile_service decides (and reports) first
        try:
            spec = ConnectServiceSpec.model_validate(service.get("spec") or {})
            calls = status.get("tlsCertificate") is not None
            source = resolve_ca(ctx, namespace, spec, connect_namespace, calls_tls=calls)
            if source is None:
                return
            endpoints = effective_endpoints(spec, ServiceRef(namespace=namespace, name=name))
            cert = ensure_leaf(ctx, service, source, connect_namespace, endpoints)
        except (ValidationError, TlsRefusal) as exc:
            # The next reconcile of the service refuses it with the same words; say it here too.
            log.warning("%s/%s: TLS certificate not renewed: %s", namespace, name, exc)
            return
        if status.get("tlsCertificate") != cert:
            ctx.kube.patch_status(CONNECT_SERVICES, name, {"tlsCertificate": cert}, namespace)
