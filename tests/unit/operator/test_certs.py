"""The certificate module against ``cryptography``'s own verifier and the ``openssl`` CLI."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from sc_operator.certs import (
    CertError,
    CertificateAuthority,
    IssuedLeaf,
    LeafRequest,
    cert_pem,
    issue_leaf,
    key_pem,
    merge_bundle,
    new_ca,
    renewal_reason,
    spiffe_id,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WEEK, TWO_DAYS = dt.timedelta(days=7), dt.timedelta(days=2)
URI = spiffe_id("tutorial", "web", "nginx")
REQ = LeafRequest.of(["nginx", "nginx.web", "nginx", "http"], URI)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return new_ca("Service Connect CA tutorial", T0, dt.timedelta(days=3650), "ECDSA_P256")


def _verify(chain: bytes, bundle: bytes, name: str, at: dt.datetime) -> None:
    """Chain building and name checking as a TLS client does it (raises when invalid)."""
    leaf, *intermediates = x509.load_pem_x509_certificates(chain)
    store = Store(x509.load_pem_x509_certificates(bundle))
    verifier = PolicyBuilder().store(store).time(at).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, intermediates)


def test_leaf_chains_to_the_ca_with_every_name(ca: CertificateAuthority) -> None:
    leaf = issue_leaf(ca, REQ, T0, WEEK, "ECDSA_P256")
    for name in ("nginx", "nginx.web", "http"):
        _verify(leaf.chain, leaf.ca, name, T0 + dt.timedelta(hours=1))
    with pytest.raises(x509.verification.VerificationError):
        _verify(leaf.chain, leaf.ca, "redis", T0 + dt.timedelta(hours=1))
    cert = x509.load_pem_x509_certificates(leaf.chain)[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["http", "nginx", "nginx.web"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://tutorial/ns/web/connectservice/nginx"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == WEEK + dt.timedelta(minutes=5)
    assert leaf.key.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_leaf_is_refused_after_expiry_and_by_another_ca(ca: CertificateAuthority) -> None:
    leaf = issue_leaf(ca, REQ, T0, WEEK, "ECDSA_P256")
    with pytest.raises(x509.verification.VerificationError):
        _verify(leaf.chain, leaf.ca, "nginx", T0 + WEEK + dt.timedelta(seconds=1))
    other = new_ca("other", T0, WEEK * 10, "ECDSA_P256")
    with pytest.raises(x509.verification.VerificationError):
        _verify(leaf.chain, other.cert_pem, "nginx", T0)


def test_rsa_2048() -> None:
    ca = new_ca("rsa", T0, WEEK * 10, "RSA_2048")
    leaf = issue_leaf(ca, REQ, T0, WEEK, "RSA_2048")
    cert = x509.load_pem_x509_certificates(leaf.chain)[0]
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]
    _verify(leaf.chain, leaf.ca, "nginx", T0)


def test_a_leaf_never_outlives_its_ca() -> None:
    short = new_ca("short", T0, dt.timedelta(days=1), "ECDSA_P256")
    cert = x509.load_pem_x509_certificates(issue_leaf(short, REQ, T0, WEEK, "ECDSA_P256").chain)[0]
    assert cert.not_valid_after_utc == short.cert.not_valid_after_utc


def test_renewal_decisions_with_a_fake_clock(ca: CertificateAuthority) -> None:
    leaf = issue_leaf(ca, REQ, T0, WEEK, "ECDSA_P256")

    def reason(
        at: dt.datetime, request: LeafRequest = REQ, authority: x509.Certificate = ca.cert
    ) -> str | None:
        return renewal_reason(leaf.chain, leaf.key, authority, request, at, TWO_DAYS, "ECDSA_P256")

    assert reason(T0) is None
    assert reason(T0 + dt.timedelta(days=4, hours=23)) is None
    assert reason(T0 + dt.timedelta(days=5)) == "due for renewal"  # ECS: rotated every 5 days
    assert reason(T0 - dt.timedelta(hours=1)) == "not valid yet (the clock went back)"
    assert reason(T0, LeafRequest.of(["nginx"], URI)) == "the names changed"
    assert reason(T0, authority=new_ca("other", T0, WEEK, "ECDSA_P256").cert) == "issued by another CA"
    assert renewal_reason(None, None, ca.cert, REQ, T0, TWO_DAYS, "ECDSA_P256") == "no certificate yet"
    other_key = issue_leaf(ca, REQ, T0, WEEK, "ECDSA_P256").key
    assert (
        renewal_reason(leaf.chain, other_key, ca.cert, REQ, T0, TWO_DAYS, "ECDSA_P256")
        == "the stored key does not match the certificate"
    )
    assert renewal_reason(leaf.chain, leaf.key, ca.cert, REQ, T0, TWO_DAYS, "RSA_2048") == (
        "the key type changed to RSA_2048"
    )


def test_user_ca_from_pem(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem)
    assert again.cert == ca.cert
    leaf_ca = issue_leaf(ca, REQ, T0, WEEK, "ECDSA_P256")
    with pytest.raises(CertError, match="not a CA certificate"):
        CertificateAuthority.from_pem(leaf_ca.chain, leaf_ca.key)
    with pytest.raises(CertError, match="does not belong"):
        CertificateAuthority.from_pem(ca.cert_pem, leaf_ca.key)
    with pytest.raises(CertError) as info:
        CertificateAuthority.from_pem(ca.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    assert "AAAA" not in str(info.value)


def test_bundle_union_is_stable_and_drops_expired(ca: CertificateAuthority) -> None:
    other = new_ca("other", T0, WEEK, "ECDSA_P256")
    one = merge_bundle(b"", [ca.cert_pem], T0)
    both = merge_bundle(one, [other.cert_pem, ca.cert_pem], T0)
    assert len(x509.load_pem_x509_certificates(both)) == 2
    assert merge_bundle(both, [], T0) == both == merge_bundle(b"", [other.cert_pem, ca.cert_pem], T0)
    assert merge_bundle(both, [], T0 + WEEK * 2) == one
    assert b"PRIVATE" not in both


def test_openssl_verifies_the_leaf_against_the_bundle(ca: CertificateAuthority, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    now = dt.datetime.now(dt.UTC)
    fresh = new_ca("live", now, WEEK, "ECDSA_P256")
    leaf = issue_leaf(fresh, REQ, now, WEEK, "ECDSA_P256")
    (tmp_path / "ca.crt").write_bytes(merge_bundle(b"", [fresh.cert_pem, ca.cert_pem], now))
    (tmp_path / "tls.crt").write_bytes(leaf.chain)
    args = [openssl, "verify", "-CAfile", str(tmp_path / "ca.crt"), "-purpose", "sslserver"]
    ok = subprocess.run(
        [*args, "-verify_hostname", "nginx.web", str(tmp_path / "tls.crt")], capture_output=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*args, "-verify_hostname", "redis", str(tmp_path / "tls.crt")], capture_output=True)
    assert bad.returncode != 0
    assert key_pem(fresh.key) not in (tmp_path / "ca.crt").read_bytes()


def test_a_calling_only_service_gets_a_uri_only_client_certificate(ca: CertificateAuthority) -> None:
    leaf = issue_leaf(ca, LeafRequest.of([], URI), T0, WEEK, "ECDSA_P256")
    cert = x509.load_pem_x509_certificates(leaf.chain)[0]
    assert _sans_of(cert) == ([], [URI])
    assert cert.subject.rfc4514_string() == "CN=nginx,O=serviceconnect.dev"
    store = Store(x509.load_pem_x509_certificates(leaf.ca))
    PolicyBuilder().store(store).time(T0).build_client_verifier().verify(cert, [])
    with pytest.raises(CertError):
        issue_leaf(ca, LeafRequest.of([], ""), T0, WEEK, "ECDSA_P256")


def _sans_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName)), san.get_values_for_type(
        x509.UniformResourceIdentifier
    )


def _intermediate_leaf() -> tuple[CertificateAuthority, IssuedLeaf]:
    """A user's intermediate CA Secret (tls.crt = intermediate + root) and a leaf it issued."""
    ca = new_ca("team root", T0, WEEK * 20, "ECDSA_P256", path_length=1)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "team intermediate")])
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    inter = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0)
        .not_valid_after(T0 + WEEK * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    user = CertificateAuthority.from_pem(cert_pem(inter) + ca.cert_pem, key_pem(inter_key))
    return user, issue_leaf(user, REQ, T0, WEEK, "ECDSA_P256")


def test_an_intermediate_ca_from_a_secret_chains_to_its_root() -> None:
    """Leaves of an intermediate carry it (not the root); the bundle carries the root."""
    user, leaf = _intermediate_leaf()
    assert len(x509.load_pem_x509_certificates(leaf.chain)) == 2
    bundle = merge_bundle(b"", [user.trust_pem], T0)
    assert len(x509.load_pem_x509_certificates(bundle)) == 2
    _verify(leaf.chain, bundle, "nginx", T0 + dt.timedelta(hours=1))


def _openssl_verifies(tmp_path: Path, bundle: bytes, chain: bytes, at: dt.datetime) -> bool:
    """``openssl verify`` as the proxies' OpenSSL verifies: complete chains only (no -partial_chain)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    leaf, *rest = x509.load_pem_x509_certificates(chain)
    (tmp_path / "ca.crt").write_bytes(bundle)
    (tmp_path / "leaf.crt").write_bytes(cert_pem(leaf))
    (tmp_path / "untrusted.crt").write_bytes(b"".join(cert_pem(c) for c in rest))
    args = ["-CAfile", str(tmp_path / "ca.crt"), "-untrusted", str(tmp_path / "untrusted.crt")]
    args += ["-attime", str(int(at.timestamp())), str(tmp_path / "leaf.crt")]
    return subprocess.run([openssl, "verify", *args], capture_output=True).returncode == 0


def test_openssl_needs_the_root_of_an_intermediate(tmp_path: Path) -> None:
    user, leaf = _intermediate_leaf()
    at = T0 + dt.timedelta(hours=1)
    assert _openssl_verifies(tmp_path, merge_bundle(b"", [user.trust_pem], T0), leaf.chain, at)
    # Trusting the intermediate alone is not enough: the bundle carries the root.
    assert not _openssl_verifies(tmp_path, user.cert_pem, leaf.chain, at)
