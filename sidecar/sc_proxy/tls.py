"""TLS 1.3 between proxies: SSL contexts built from the files the configuration names, rebuilt when the
files change, and the glue that lets asyncio's own TLS (uvloop's, in production) use them.

- Versions and suites: TLS 1.3 only (minimum and maximum), OpenSSL's three TLS 1.3 suites, as ECS.
- ALPN (:func:`alpn_for`): a server offers what its handler speaks (``http`` → ``http/1.1``;
  ``http2``/``grpc`` → ``h2`` and ``http/1.1``, as that listener also relays HTTP/1.1 clients; ``tcp`` →
  none); a client offers the protocol of the pool dialling (``h2`` or ``http/1.1``).
- Reload: a :class:`Reloading` context stats its files (following the kubelet's ``..data`` symlink) at most
  every ``interval`` seconds, checked when a connection is about to be made or accepted, so an idle proxy
  does no work and a busy one one ``stat`` per file per interval. A changed file (inode, size, mtime; the
  content hash decides) builds a new context for new handshakes; established connections keep theirs. A
  broken new file keeps the old context, logs the error and counts ``TLSReloadErrorCount``.
- A server listener is given a :class:`ServerContext`: an ``SSLContext`` whose ``wrap_bio`` hands each new
  connection the current context and whose SSL objects report a failed handshake (for
  ``ClientTLSNegotiationErrorCount``). The asyncio / uvloop TLS transports only call ``wrap_bio`` and the SSL
  object's methods, so nothing of the TLS record layer is ours.

Private keys are read by OpenSSL from their files; they never pass through this module's strings, logs
or metrics.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from sc_proxy import proxyproto
from sc_proxy.config import Via
from sc_proxy.metrics import REGISTRY, Counter, Registry

log = logging.getLogger("sc_proxy.tls")

#: How often (seconds) a context's files are stat'ed, at most; the kubelet refreshes mounted Secrets
#: within about a minute, so a few seconds adds nothing noticeable to a rotation.
RELOAD_CHECK_SECONDS: Final = 2.0

_ALPN_SERVER: Final[dict[str, list[str]]] = {
    "http": ["http/1.1"],
    "http2": ["h2", "http/1.1"],
    "grpc": ["h2", "http/1.1"],
    "tcp": [],
}


#: How long a TLS connection the proxy closed waits for the peer's close_notify (then the socket is closed).
#: TLS 1.3 does not require waiting for it at all; asyncio's default of 30 s would hold a drain (and the
#: process exit) on any client that simply stops reading. Envoy's delayed close is 1 s.
TLS_SHUTDOWN_SECONDS: Final = 2.0

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def tune_malloc_for_tls() -> bool:
    """Keep asyncio's TLS read buffers off ``mmap`` (glibc only; True when applied).

    uvloop's TLS transport reads with ``SSLObject.read(256 KiB)``: every read allocates a 256 KiB bytes
    object, shrinks it to the bytes read and frees it later. Above glibc's mmap threshold (128 KiB; its
    dynamic raise never happens, as the chunks freed were shrunk first) each one is an ``mmap`` + page
    faults + ``mremap`` + ``munmap``: measured at a third of the CPU of a TLS proxy hop (sidecar/README.md,
    TLS). A 512 KiB threshold serves them from the heap;
    the trim threshold keeps glibc from giving that memory back and asking for it again on every read.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 512 * 1024)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * 1024 * 1024))


def alpn_for(app_protocol: str) -> list[str]:
    """The ALPN protocols a server listener of ``app_protocol`` offers."""
    return _ALPN_SERVER[app_protocol]


def _tls13(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def server_context(
    cert_file: str, key_file: str, alpn: Sequence[str], client_ca_file: str | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 server context; with ``client_ca_file`` callers must present a certificate it verifies."""
    ctx = _tls13(ssl.PROTOCOL_TLS_SERVER)
    # No session tickets: the callers are client proxies, and asyncio cannot resume a session; each ticket
    # would be made, encrypted and sent after every handshake for nothing.
    ctx.num_tickets = 0
    ctx.load_cert_chain(cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    ca_file: str, alpn: Sequence[str], cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 client context verifying the chain against ``ca_file`` and the host name (DNS SANs)."""
    ctx = _tls13(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.sslobject_class = _DirectSSLObject
    ctx.load_verify_locations(cafile=ca_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class TlsStats:
    """Process-wide reload counters (no per-endpoint label: a file is usually shared by several)."""

    def __init__(self, registry: Registry | None = None) -> None:
        reg = registry or REGISTRY
        ok = reg.child("TLSReloadCount", "counter", "TLS contexts rebuilt after their files changed.")
        err = reg.child(
            "TLSReloadErrorCount",
            "counter",
            "Changed TLS files that could not be used (the previous certificate stays in use).",
        )
        assert isinstance(ok, Counter)
        assert isinstance(err, Counter)
        self.reloads = ok
        self.reload_errors = err


class Reloading:
    """The current context built by ``build`` from ``paths``; rebuilt when the files change."""

    __slots__ = (
        "_build", "_clock", "_ctx", "_digest", "_interval", "_next", "_paths", "_sig", "_stats", "what",
    )  # fmt: skip

    def __init__(
        self,
        what: str,
        paths: Sequence[str],
        build: Callable[[], ssl.SSLContext],
        stats: TlsStats,
        clock: Callable[[], float] = time.monotonic,
        interval: float = RELOAD_CHECK_SECONDS,
    ) -> None:
        self.what = what
        self._paths = tuple(paths)
        self._build = build
        self._stats = stats
        self._clock = clock
        self._interval = interval
        # Signature first, then content: a swap between the two is seen at the next check.
        self._sig = self._signature()
        self._digest = self._hash()
        self._ctx = build()  # at start a bad file is an error the caller reports, naming the field
        self._next = clock() + interval

    def _signature(self) -> tuple[tuple[int, int, int, int], ...] | None:
        try:
            stats = [os.stat(p) for p in self._paths]
        except OSError:
            return None
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _hash(self) -> bytes:
        h = hashlib.sha256()
        for p in self._paths:
            try:
                with open(p, "rb") as f:
                    h.update(f.read())
            except OSError:
                h.update(b"\0missing\0")
            h.update(b"\0")
        return h.digest()

    def current(self) -> ssl.SSLContext:
        """The context for a new handshake (checks the files when the interval has passed)."""
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            self.check()
        return self._ctx

    def check(self) -> bool:
        """Rebuild if the files changed; True when a new context is in use."""
        sig = self._signature()
        if sig == self._sig:
            return False
        self._sig = sig
        if sig is None:
            # Mid-swap or removed: keep serving, look again next time.
            self._stats.reload_errors.inc()
            log.error("tls %s: cannot stat %s; keeping the previous certificate", self.what, self._paths)
            return False
        digest = self._hash()
        if digest == self._digest:
            return False  # touched, same content
        try:
            ctx = self._build()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._stats.reload_errors.inc()
            log.error(
                "tls %s: new files unusable (%s); keeping the previous certificate", self.what, _reason(exc)
            )
            return False
        self._digest = digest
        self._ctx = ctx
        self._stats.reloads.inc()
        log.info("tls %s: reloaded %s", self.what, ", ".join(self._paths))
        return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{exc.reason}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """The access log's transport failure reason (Envoy's ``%UPSTREAM_TRANSPORT_FAILURE_REASON%``)."""
    return f"TLS error: {_reason(exc)}"


class _DirectSSLObject(ssl.SSLObject):
    """An SSL object whose ``read``, ``write`` and ``pending`` are OpenSSL's own methods: the TLS transport
    calls them for every record it receives or sends, and the Python wrappers of :class:`ssl.SSLObject`
    only pass the arguments on (a Python frame each time)."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super()._create(*args, **kwargs)  # type: ignore[misc]
        obj.read = obj._sslobj.read
        obj.write = obj._sslobj.write
        obj.pending = obj._sslobj.pending
        return obj


class _ObservedSSLObject(_DirectSSLObject):
    """An SSL object that reports a failed handshake to its listener (nothing else changes)."""

    on_failure: Callable[[BaseException], None] | None = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except Exception as exc:
            hook = self.on_failure
            if hook is not None:
                hook(exc)
            raise


class ServerContext(ssl.SSLContext):
    """What a listener's ``create_server(ssl=...)`` gets: each new connection is wrapped with the current
    context of ``source``, and a failed handshake calls ``on_failure``."""

    source: Reloading
    on_failure: Callable[[BaseException], None] | None

    def __new__(
        cls, source: Reloading, on_failure: Callable[[BaseException], None] | None = None
    ) -> ServerContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self.source = source
        self.on_failure = on_failure
        return self

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        ctx = self.source.current()
        obj = _ObservedSSLObject._create(
            incoming, outgoing, server_side=server_side, server_hostname=None, session=session, context=ctx
        )
        obj.on_failure = self.on_failure
        return obj  # type: ignore[no-any-return]


def peer_identity(transport: Any) -> str | None:
    """The caller's first URI SAN (its identity) on a verified mutual-TLS connection, else ``None``."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    cert = sslobj.getpeercert()
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI":
            return str(value)
    return None


class ClientTls:
    """TLS to one endpoint's tasks: a reloading client context per ALPN offer, and the expected name."""

    __slots__ = ("_sources", "server_name")

    def __init__(
        self,
        endpoint: str,
        ca_file: str,
        server_name: str,
        alpn_offers: Sequence[str | None],
        stats: TlsStats,
        cert_file: str | None = None,
        key_file: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = RELOAD_CHECK_SECONDS,
    ) -> None:
        self.server_name = server_name
        paths = [ca_file] + [p for p in (cert_file, key_file) if p is not None]
        self._sources: dict[str | None, Reloading] = {}
        for offer in alpn_offers:
            alpn = [offer] if offer else []

            def build(alpn: list[str] = alpn) -> ssl.SSLContext:
                return client_context(ca_file, alpn, cert_file, key_file)

            self._sources[offer] = Reloading(f"endpoint {endpoint}", paths, build, stats, clock, interval)

    def context(self, alpn: str | None) -> ssl.SSLContext:
        """The current context offering ``alpn`` (``h2``, ``http/1.1`` or None for TCP)."""
        return self._sources[alpn].current()


def client_alpn_offers(app_protocol: str) -> list[str | None]:
    """The ALPN offers a client proxy makes to an endpoint of ``app_protocol``: one per upstream pool
    (an ``http2``/``grpc`` endpoint also relays HTTP/1.1 clients over HTTP/1.1)."""
    if app_protocol == "tcp":
        return [None]
    if app_protocol == "http":
        return ["http/1.1"]
    return ["h2", "http/1.1"]


async def dial(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    address: str,
    port: int,
    tls: ClientTls | None,
    alpn: str | None,
    timeout: float,  # noqa: ASYNC109 - one deadline for connect and handshake, like the plaintext path
    via: Via | None = None,
) -> asyncio.BaseTransport:
    """Connect (and with ``tls``, complete a verified TLS 1.3 handshake) within ``timeout`` seconds.

    ``via`` (a peer cluster's gateway): connect to the gateway instead and send a PROXY protocol v2 header
    naming ``address:port`` first; TLS, when used, then runs through the gateway to the task itself.

    Raises ``ssl.SSLError`` for a failed handshake (check it before ``OSError``, its base class),
    ``OSError`` / ``TimeoutError`` for anything else."""
    return await asyncio.wait_for(_dial(loop, factory, address, port, tls, alpn, via), timeout)


async def _dial(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    address: str,
    port: int,
    tls: ClientTls | None,
    alpn: str | None,
    via: Via | None,
) -> asyncio.BaseTransport:
    sock = None
    if via is not None:
        # The header must precede the TLS ClientHello, so connect and write it on the bare socket.
        header = proxyproto.encode((address, port))
        family = socket.AF_INET6 if ":" in via.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (via.address, via.port))
            await loop.sock_sendall(sock, header)
        except BaseException:
            sock.close()
            raise
    target: dict[str, Any] = {"sock": sock} if sock is not None else {"host": address, "port": port}
    if tls is not None:
        target.update(
            ssl=tls.context(alpn), server_hostname=tls.server_name, ssl_shutdown_timeout=TLS_SHUTDOWN_SECONDS
        )
    try:
        transport, _ = await loop.create_connection(factory, **target)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return transport
