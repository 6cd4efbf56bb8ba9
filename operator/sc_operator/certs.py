"""Certificates for TLS between proxies (pure: the clock and every input are passed in; no I/O).

Built on ``cryptography`` (no hand-written ASN.1):

- :func:`new_ca`: a self-signed CA (ECDSA P-256 by default, or RSA 2048, the two key types ECS issues);
- :func:`issue_leaf`: a leaf for one ConnectService: DNS SANs for every name its clients may use (none for a
  service that only calls), one URI SAN naming it
  (``spiffe://<connect-namespace>/ns/<namespace>/connectservice/<name>``), usable as a server and as a
  client certificate (mutual TLS needs no second certificate);
- :func:`renewal_reason`: whether a stored leaf must be issued again, and why (missing, from another CA,
  other names, due for renewal): a restarted operator keeps what is still good;
- :func:`merge_bundle`: the CA bundle clients trust (public certificates only; during a CA change it holds
  old and new).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyAlgorithm = Literal["ECDSA_P256", "RSA_2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: Leaves start this much in the past, so a node whose clock is slightly behind accepts them at once.
BACKDATE = dt.timedelta(minutes=5)
ORGANIZATION = "serviceconnect.dev"


class CertError(Exception):
    """A certificate or key cannot be used; the message says which and why (never the key itself)."""


def _key_usage(*, signs_certificates: bool, key_encipherment: bool) -> x509.KeyUsage:
    """A CA signs certificates (and CRLs); a leaf signs handshakes, and an RSA leaf also enciphers keys."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def new_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm == "RSA_2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_algorithm(key: object) -> KeyAlgorithm | None:
    """The algorithm of a public or private key, when it is one we issue."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ECDSA_P256" if isinstance(key.curve, ec.SECP256R1) else None
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RSA_2048" if key.key_size == 2048 else None
    return None


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_bytes(key: object) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        key = key.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key; ``chain``: the certificates above it (an intermediate CA's
    issuers, up to the root when given), in the order of the Secret's ``tls.crt``."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def trust_pem(self) -> bytes:
        """What clients must trust: the CA and its chain. Proxies verify up to a self-signed root (no
        partial chains), so an intermediate CA's Secret should carry its root too."""
        return b"".join(cert_pem(c) for c in (self.cert, *self.chain))

    @property
    def intermediates_pem(self) -> bytes:
        """What a leaf's chain carries after the leaf: every CA certificate except a self-signed root."""
        return b"".join(cert_pem(c) for c in (self.cert, *self.chain) if not _is_self_signed(c))

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @classmethod
    def from_pem(cls, cert_data: bytes, key_data: bytes) -> CertificateAuthority:
        """A CA from PEM (e.g. a Secret's ``tls.crt``/``tls.key``); CertError when it is not a usable CA."""
        try:
            certs = x509.load_pem_x509_certificates(cert_data)
        except ValueError as exc:
            raise CertError(f"tls.crt is not a PEM certificate ({exc})") from None
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError):
            # The library's message may quote the input; keep key material out of every message.
            raise CertError("tls.key is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CertError("tls.key: only ECDSA and RSA keys are supported")
        cert = certs[0]
        if _public_bytes(cert.public_key()) != _public_bytes(key):
            raise CertError("tls.key does not belong to the first certificate of tls.crt")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertError("tls.crt is not a CA certificate (basicConstraints CA:TRUE is missing)")
        return cls(cert=cert, key=key, chain=tuple(certs[1:]))


def new_ca(
    common_name: str,
    now: dt.datetime,
    validity: dt.timedelta,
    algorithm: KeyAlgorithm,
    path_length: int | None = 0,
) -> CertificateAuthority:
    """A self-signed CA; by default it may sign leaves only (pathLen 0)."""
    key = new_key(algorithm)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True, key_encipherment=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert=cert, key=key)


def spiffe_id(connect_namespace: str, namespace: str, service: str) -> str:
    """The URI SAN naming a ConnectService (what mutual TLS would authorise callers by)."""
    return f"spiffe://{connect_namespace}/ns/{namespace}/connectservice/{service}"


@dataclass(frozen=True)
class LeafRequest:
    """What a service's leaf must say: its DNS names (sorted, unique) and its URI identity."""

    dns_names: tuple[str, ...]
    uri: str

    @classmethod
    def of(cls, names: Iterable[str], uri: str) -> LeafRequest:
        return cls(tuple(sorted(set(names))), uri)


@dataclass(frozen=True)
class IssuedLeaf:
    """PEM: ``chain`` is the leaf followed by the CA certificate when the CA is not a root (the peer
    needs the intermediates); ``ca`` is the issuing CA certificate."""

    chain: bytes
    key: bytes
    ca: bytes


def _common_name(request: LeafRequest) -> str:
    """The first DNS name, else (a client-only certificate) the service name ending the URI."""
    return (request.dns_names[0] if request.dns_names else request.uri.rsplit("/", 1)[-1])[:64]


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def issue_leaf(
    ca: CertificateAuthority,
    request: LeafRequest,
    now: dt.datetime,
    validity: dt.timedelta,
    algorithm: KeyAlgorithm,
) -> IssuedLeaf:
    """A new key and a leaf for ``request``, valid from now (less :data:`BACKDATE`) for ``validity``, but
    never beyond the CA's own expiry."""
    if not request.dns_names and not request.uri:
        raise CertError("a leaf certificate needs a DNS name or a URI")
    key = new_key(algorithm)
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in request.dns_names]
    sans.append(x509.UniformResourceIdentifier(request.uri))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, _common_name(request)),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False, key_encipherment=is_rsa),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    chain = cert_pem(cert) + ca.intermediates_pem
    return IssuedLeaf(chain=chain, key=key_pem(key), ca=ca.cert_pem)


def leaf_names(cert: x509.Certificate) -> LeafRequest:
    """The DNS and URI SANs of a certificate, as a request would state them."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return LeafRequest((), "")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return LeafRequest.of(san.get_values_for_type(x509.DNSName), uris[0] if uris else "")


def renewal_reason(
    chain_pem: bytes | None,
    leaf_key_pem: bytes | None,
    ca: x509.Certificate,
    request: LeafRequest,
    now: dt.datetime,
    renew_before: dt.timedelta,
    algorithm: KeyAlgorithm,
) -> str | None:
    """Why the stored leaf must be issued again, or None when it is still good.

    Good means: it parses, its key is the stored key, ``ca`` signed it, it names exactly ``request``, its
    key type is the configured one, and more than ``renew_before`` of it remains."""
    if not chain_pem or not leaf_key_pem:
        return "no certificate yet"
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
        key = serialization.load_pem_private_key(leaf_key_pem, password=None)
    except (ValueError, TypeError):
        return "the stored certificate or key does not parse"
    if _public_bytes(leaf.public_key()) != _public_bytes(key):
        return "the stored key does not match the certificate"
    if leaf.issuer != ca.subject:
        return "issued by another CA"
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "issued by another CA"
    if leaf_names(leaf) != request:
        return "the names changed"
    if key_algorithm(key) != algorithm:
        return f"the key type changed to {algorithm}"
    if now < leaf.not_valid_before_utc:
        return "not valid yet (the clock went back)"
    if leaf.not_valid_after_utc - now <= renew_before:
        return "due for renewal"
    return None


def expires(chain_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificates(chain_pem)[0].not_valid_after_utc


def merge_bundle(existing: bytes, add: Iterable[bytes], now: dt.datetime) -> bytes:
    """The union of CA certificates in ``existing`` and ``add`` (PEM), expired ones dropped, in a stable
    order (by subject and serial), so an unchanged bundle is byte-for-byte the same."""
    found: dict[bytes, x509.Certificate] = {}
    for data in (existing, *add):
        if not data.strip():
            continue
        for cert in x509.load_pem_x509_certificates(data):
            if cert.not_valid_after_utc > now:
                found[cert.fingerprint(hashes.SHA256())] = cert
    ordered = sorted(found.values(), key=lambda c: (c.subject.rfc4514_string(), c.serial_number))
    return b"".join(cert_pem(c) for c in ordered)
