"""TLS material and settings for the proxy benchmarks (hack/bench-proxy, hack/bench-proxy-h2).

A throw-away ECDSA P-256 CA and a leaf for ``nginx`` (the mesh's defaults), made with the ``openssl``
command line so the benchmarks need no Python package; the same files serve both proxies:

- HAProxy: ``bind ... ssl crt <pem> ssl-min-ver TLSv1.3`` on the server side, ``server ... ssl verify
  required ca-file <ca> sni str(nginx) verifyhost nginx ssl-min-ver TLSv1.3`` on the client side;
- sc-proxy: the ingress ``tls`` and endpoint ``tls`` blocks of the proxy configuration.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

NAME = "nginx"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    pem: Path  # certificate and key in one file (HAProxy's crt)


def make_certs(tmp: Path) -> TlsFiles:
    d = tmp / "tls"
    d.mkdir()

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=d)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=bench-ca")
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={NAME}")
    (d / "san.ext").write_text(f"subjectAltName=DNS:{NAME}\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    (d / "tls.pem").write_bytes((d / "tls.crt").read_bytes() + (d / "tls.key").read_bytes())
    return TlsFiles(d / "ca.crt", d / "tls.crt", d / "tls.key", d / "tls.pem")


def haproxy_bind_opts(files: TlsFiles, alpn: str) -> str:
    return f"ssl crt {files.pem} ssl-min-ver TLSv1.3 alpn {alpn}"


def haproxy_server_opts(files: TlsFiles, alpn: str) -> str:
    return (
        f"ssl verify required ca-file {files.ca} sni str({NAME}) verifyhost {NAME} ssl-min-ver TLSv1.3 "
        f"alpn {alpn}"
    )


def ingress_tls(files: TlsFiles) -> dict[str, str]:
    return {"certFile": str(files.cert), "keyFile": str(files.key)}


def endpoint_tls(files: TlsFiles) -> dict[str, str]:
    return {"caFile": str(files.ca), "serverName": NAME}
