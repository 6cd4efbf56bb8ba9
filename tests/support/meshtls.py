"""TLS material for the proxy tests: a mesh CA and its leaves (``cryptography``), written the way the kubelet
mounts Secrets, and a byte-recording TCP relay to look at what crosses between two proxies.

- :class:`MeshCA`: an ECDSA P-256 CA (``issue`` makes leaves: DNS SANs, an optional URI identity, a chosen
  serial and validity window; RSA 2048 on request).
- :class:`SecretDir`: ``tls.crt``/``tls.key``/``ca.crt`` as symlinks through ``..data`` to a timestamped
  directory, swapped atomically by :meth:`SecretDir.write` (a ``rename`` of the ``..data`` link), exactly
  how the kubelet refreshes a mounted Secret.
- :class:`Pki`: one CA, a served endpoint's Secret volume and the clients' CA bundle, and the proxy config
  ``tls`` blocks pointing at them.
- :class:`Tap`: a loopback relay recording every byte from its clients to its target.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now
_serials = itertools.count(1000)


@dataclass(frozen=True)
class Leaf:
    cert_pem: bytes
    key_pem: bytes
    serial: int


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class MeshCA:
    """A CA for one test (ECDSA P-256, one day)."""

    def __init__(self, name: str = "mesh-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _NOW(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        dns: list[str],
        uri: str | None = None,
        *,
        serial: int | None = None,
        expired: bool = False,
        rsa_key: bool = False,
    ) -> Leaf:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        now = _NOW(datetime.UTC)
        start, end = (
            (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
            if expired
            else (
                now - datetime.timedelta(minutes=5),
                now + datetime.timedelta(days=1),
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        if uri is not None:
            sans.append(x509.UniformResourceIdentifier(uri))
        serial = serial if serial is not None else next(_serials)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "leaf")]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), serial)


class SecretDir:
    """A kubelet-style Secret volume: stable file names, contents swapped atomically through ``..data``."""

    FILES = ("tls.crt", "tls.key", "ca.crt")

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def file(self, name: str) -> str:
        return str(self.path / name)

    def write(self, files: dict[str, bytes]) -> None:
        """Publish a new version of every file at once (as the kubelet's AtomicWriter does)."""
        self._n += 1
        version = self.path / f"..v{self._n}"
        version.mkdir()
        for name, data in files.items():
            (version / name).write_bytes(data)
        tmp = self.path / "..data_tmp"
        os.symlink(version.name, tmp)
        os.replace(tmp, self.path / "..data")
        for name in files:
            link = self.path / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)

    def write_leaf(self, leaf: Leaf, ca: MeshCA) -> None:
        self.write({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.pem})


#: The served endpoint of the TLS tests and its identity (URI SAN).
NAME = "nginx"
IDENTITY = "spiffe://shop-ns/ns/shop/connectservice/nginx"


class Pki:
    """One CA, the server's Secret volume and the clients' CA bundle (a ConfigMap volume)."""

    def __init__(self, tmp: Path) -> None:
        self.ca = MeshCA()
        self.server = SecretDir(tmp / "tls" / NAME)
        self.leaf = self.ca.issue([NAME, f"{NAME}.shop"], IDENTITY, serial=1)
        self.server.write_leaf(self.leaf, self.ca)
        self.bundle = SecretDir(tmp / "ca" / "shop-ns")
        self.bundle.write({"ca.crt": self.ca.pem})

    def ingress_tls(self, **extra: Any) -> dict[str, Any]:
        return {"certFile": self.server.file("tls.crt"), "keyFile": self.server.file("tls.key"), **extra}

    def endpoint_tls(self, **extra: Any) -> dict[str, Any]:
        return {"caFile": self.bundle.file("ca.crt"), "serverName": NAME, **extra}


class Tap:
    """A TCP relay on ``127.0.0.1:port`` to ``target``, recording what its clients send (threads)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        #: Client → target and target → client bytes, one entry per relayed connection.
        self.streams: list[bytearray] = []
        self.answers: list[bytearray] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            record, answer = bytearray(), bytearray()
            with self._lock:
                self.streams.append(record)
                self.answers.append(answer)
                self._socks += [down, up]
            threading.Thread(target=self._pipe, args=(down, up, record), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, answer), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    record.extend(data)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def recorded(self) -> list[tuple[bytes, bytes]]:
        """(sent, answered) bytes of every relayed connection."""
        with self._lock:
            return [(bytes(a), bytes(b)) for a, b in zip(self.streams, self.answers, strict=True)]

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()
