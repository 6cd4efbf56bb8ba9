"""TLS contexts and their reload, in memory: real certificates (tests/support/meshtls.py), real OpenSSL
handshakes between two SSL objects over memory BIOs, an injected clock for the file checks."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from sc_proxy.metrics import Registry
from sc_proxy.tls import (
    ClientTls,
    Reloading,
    ServerContext,
    TlsStats,
    alpn_for,
    client_alpn_offers,
    client_context,
    failure_reason,
    server_context,
)
from support.meshtls import MeshCA, SecretDir


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, name: str = "nginx"
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake between two SSL objects over memory BIOs; raises what either side raises."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname=name)
    done = {"c": False, "s": False}
    for _ in range(20):
        for side, obj, out, peer_in in (("c", cli, c_out, s_in), ("s", srv, s_out, c_in)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return srv, cli
    raise AssertionError("handshake did not finish")


@pytest.fixture
def ca() -> MeshCA:
    return MeshCA()


@pytest.fixture
def secret(tmp_path: Path, ca: MeshCA) -> SecretDir:
    d = SecretDir(tmp_path / "tls")
    d.write_leaf(ca.issue(["nginx"], serial=1), ca)
    return d


def serial_of(obj: ssl.SSLObject) -> int:
    der = obj.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def reloading(secret: SecretDir, clock: Clock, stats: TlsStats) -> Reloading:
    def build() -> ssl.SSLContext:
        return server_context(secret.file("tls.crt"), secret.file("tls.key"), ["h2", "http/1.1"])

    return Reloading(
        "ingress nginx", [secret.file("tls.crt"), secret.file("tls.key")], build, stats, clock, 2.0
    )


def test_tls13_only_and_alpn(secret: SecretDir, ca: MeshCA) -> None:
    server = server_context(secret.file("tls.crt"), secret.file("tls.key"), alpn_for("grpc"))
    client = client_context(secret.file("ca.crt"), ["h2"])
    _, cli = handshake(server, client)
    assert (cli.version(), cli.selected_alpn_protocol()) == ("TLSv1.3", "h2")
    assert cli.cipher()[0] in {
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_GCM_SHA256",
    }
    # A client that stops at TLS 1.2 is refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(secret.file("ca.crt"))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(server, old)


def test_alpn_offers_follow_app_protocol() -> None:
    assert (alpn_for("http"), alpn_for("http2"), alpn_for("tcp")) == (["http/1.1"], ["h2", "http/1.1"], [])
    assert client_alpn_offers("grpc") == ["h2", "http/1.1"]
    assert client_alpn_offers("tcp") == [None]


def test_client_refuses_a_name_the_certificate_does_not_carry(secret: SecretDir) -> None:
    server = server_context(secret.file("tls.crt"), secret.file("tls.key"), [])
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        handshake(server, client_context(secret.file("ca.crt"), []), name="other")
    assert failure_reason(err.value).startswith("TLS error: CERTIFICATE_VERIFY_FAILED: Hostname mismatch")


def test_files_are_checked_at_most_every_interval_and_a_swap_is_picked_up(
    secret: SecretDir, ca: MeshCA
) -> None:
    clock, stats = Clock(), TlsStats(Registry(process_metrics=False))
    source = reloading(secret, clock, stats)
    first = source.current()
    secret.write_leaf(ca.issue(["nginx"], serial=2), ca)
    clock.now = 1.9
    assert source.current() is first  # not looked at yet
    clock.now = 2.0
    second = source.current()
    assert second is not first
    assert stats.reloads.value == 1
    client = client_context(secret.file("ca.crt"), [])
    _, cli = handshake(ServerContext(source), client)
    assert serial_of(cli) == 2
    # Touching without a change rebuilds nothing.
    Path(secret.file("tls.crt")).resolve().touch()
    clock.now = 4.0
    assert source.current() is second


def test_broken_new_files_keep_the_old_context_and_count_once(secret: SecretDir, ca: MeshCA) -> None:
    clock, stats = Clock(), TlsStats(Registry(process_metrics=False))
    source = reloading(secret, clock, stats)
    first = source.current()
    other = ca.issue(["nginx"], serial=3)
    key = Path(secret.file("tls.key")).read_bytes()
    for files in (
        {"tls.crt": b"-----BEGIN CERTIFICATE-----\nbroken\n", "tls.key": key},  # bad PEM
        {"tls.crt": other.cert_pem, "tls.key": key},  # key mismatch
    ):
        secret.write(files)
        clock.now += 2
        assert source.current() is first
        clock.now += 2
        assert source.current() is first  # the same broken files are not retried (nor counted) again
    assert (stats.reload_errors.value, stats.reloads.value) == (2, 0)
    secret.write_leaf(other, ca)
    clock.now += 2
    assert source.current() is not first
    assert stats.reloads.value == 1


def test_failed_server_handshakes_are_reported(secret: SecretDir) -> None:
    seen: list[BaseException] = []
    stats = TlsStats(Registry(process_metrics=False))
    source = reloading(secret, Clock(), stats)
    front = ServerContext(source, seen.append)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(front, old)
    assert len(seen) == 1
    assert "UNSUPPORTED_PROTOCOL" in failure_reason(seen[0])


def test_client_tls_has_one_context_per_offer(secret: SecretDir) -> None:
    stats = TlsStats(Registry(process_metrics=False))
    tls = ClientTls("nginx", secret.file("ca.crt"), "nginx", client_alpn_offers("http2"), stats)
    server = server_context(secret.file("tls.crt"), secret.file("tls.key"), alpn_for("http2"))
    for offer in ("h2", "http/1.1"):
        _, cli = handshake(server, tls.context(offer))
        assert cli.selected_alpn_protocol() == offer
    with pytest.raises(FileNotFoundError):
        ClientTls("nginx", "/nonexistent/ca.crt", "nginx", [None], stats)
