"""The proxy configuration file: the contract between the operator (which renders it) and ``sc-proxy``.

The file is YAML or JSON (JSON is YAML, so one loader reads both). Keys are camelCase, like the ECS API the
operator's resources mirror; every object is strict (unknown keys are refused) so a typo in a rendered file
fails at start instead of being silently ignored. Validation errors name the field by its path, e.g.
``endpoints.0.outlier.maxEjectionPercent``.

Example::

    version: "svc-a-7f3c2e"
    service: {namespace: shop, name: frontend}
    admin: {address: 0.0.0.0, port: 9901, localAddress: 127.0.0.1, localPort: 9902}
    egress: {mode: redirect, port: 15001}
    endpoints:
      - name: backend
        appProtocol: http
        discovery:
          dns: {name: backend-sc.shop.svc.cluster.local, srvName: _sc._tcp.backend-sc.shop.svc.cluster.local}
    aliases:
      - {address: 127.255.0.1, port: 80, endpoint: backend}
    ingress:
      - {discoveryName: frontend, port: 15080, appPort: 8080, interceptPort: 8080, appProtocol: http}
    accessLog: {format: JSON}
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

AppProtocol = Literal["tcp", "http", "http2", "grpc"]
Port = Annotated[int, Field(ge=1, le=65535)]
# The ECS API allows up to 2**31-1 seconds; floats let tests use sub-second values.
Seconds = Annotated[float, Field(ge=0, le=2147483647)]

#: The VIP range the operator allocates client aliases from (reference §2.1).
VIP_NETWORK = ipaddress.IPv4Network("127.255.0.0/16")


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the field and the rule."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, validate_default=True
    )


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc


IPAddress = Annotated[str, AfterValidator(_ip)]


class ServiceIdentity(_Model):
    """Who runs this proxy: logs, ``/config`` and the metrics' constant labels; never routing.

    ``name`` is every metric's ``ServiceName`` and ``cluster`` its ``ClusterName`` (ECS's dimensions; on
    egress ServiceName is the calling service). Empty values leave the label out.
    """

    namespace: str = ""
    name: str = Field(default="", max_length=255)
    cluster: str = Field(default="", max_length=255)


class AdminConfig(_Model):
    """The proxy's two admin listeners (as Istio splits its admin port from its stats and health ports).

    - ``address:port``, the stats & health listener: ``/ready``, ``/live``, ``/metrics`` only. It defaults
      to all interfaces because the kubelet's probes and Prometheus reach the pod IP; ``::`` accepts IPv4
      too (dual stack).
    - ``localAddress:localPort``, the admin listener: everything above plus ``/config`` (every task's
      address, the app port, the policies) and ``POST /drain``. Always a loopback address: only the pod
      itself may read the configuration or drain the proxy.
    """

    address: IPAddress = "0.0.0.0"
    port: Port = 9901
    local_address: IPAddress = "127.0.0.1"
    local_port: Port = 9902

    @field_validator("local_address")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError(
                f"{value} is not a loopback address: /config and POST /drain must be reachable from the "
                "pod only (use 127.0.0.1 or ::1)"
            )
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> AdminConfig:
        if self.local_port == self.port:
            raise ValueError(f"localPort: port {self.port} is already used by admin.port")
        return self


class EgressConfig(_Model):
    """How outbound connections to namespace endpoints reach the proxy.

    - ``redirect`` (default): one listener on ``address:port``; iptables (installed by ``sc-proxy
      install-redirect``) redirects every TCP connection to 127.255.0.0/16 here and the proxy reads the
      original destination with ``SO_ORIGINAL_DST`` to find the alias. Needs NET_ADMIN in the init container.
    - ``listeners``: no privilege needed; one listener per alias ``address:port``.

    ``excludeUid``: connections made by this UID are never redirected (set it to the proxy's UID if the proxy
    could ever dial a VIP itself).
    """

    mode: Literal["redirect", "listeners"] = "redirect"
    address: IPAddress = "127.0.0.1"
    port: Port | None = None
    exclude_uid: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _port_for_redirect(self) -> EgressConfig:
        if self.mode == "redirect" and self.port is None:
            raise ValueError("port: required when mode is 'redirect'")
        return self


class HostAddress(_Model):
    """One upstream task: an IP address and a port."""

    address: IPAddress
    port: Port


class DnsDiscovery(_Model):
    """Tasks from DNS: A/AAAA records of ``name`` (a headless Service), the port from the SRV record
    ``srvName`` (so a server can change its ingress port without redeploying clients) or the fixed ``port``.

    Re-resolved every ``intervalSeconds``; when resolution fails the last good set is kept. ``resolver`` is
    ``address`` or ``address:port`` (``[v6]:port`` for IPv6); unset means the system resolver
    (``/etc/resolv.conf``).
    """

    name: str = Field(min_length=1, max_length=253)
    srv_name: str | None = Field(default=None, min_length=1, max_length=253)
    port: Port | None = None
    resolver: str | None = None
    interval_seconds: float = Field(default=5.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _port_source(self) -> DnsDiscovery:
        if self.srv_name is None and self.port is None:
            raise ValueError("srvName: dns discovery needs srvName or port (where the tasks listen)")
        return self

    @field_validator("resolver")
    @classmethod
    def _check_resolver(cls, value: str | None) -> str | None:
        if value is not None:
            parse_resolver(value)
        return value


def parse_resolver(value: str) -> tuple[str, int]:
    """``"10.0.0.10"`` / ``"127.0.0.1:5353"`` / ``"[::1]:53"`` → (address, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif value.count(":") == 1:
        host, _, port_s = value.partition(":")
        port = int(port_s)
    else:
        host, port = value, 53
    _ip(host)
    if not 1 <= port <= 65535:
        raise ValueError(f"resolver port {port} is out of range 1-65535")
    return host, port


class Discovery(_Model):
    """Where the tasks behind an endpoint come from: exactly one of ``static`` or ``dns``."""

    static: list[HostAddress] | None = None
    dns: DnsDiscovery | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Discovery:
        if (self.static is None) == (self.dns is None):
            raise ValueError("discovery needs exactly one of 'static' or 'dns'")
        return self


class Timeouts(_Model):
    """ECS ``TimeoutConfiguration``. Unset means the Service Connect default for the protocol
    (perRequest 15 s for HTTP kinds; idle 300 s for HTTP kinds, 3600 s for TCP); 0 disables."""

    per_request_timeout_seconds: Seconds | None = None
    idle_timeout_seconds: Seconds | None = None


class Retries(_Model):
    """Retries on connection failure, reset before any response byte, or 503 (HTTP; gRPC's UNAVAILABLE too,
    both under ``retryOn503``), each to a task this request has not tried while there is one. A request body
    is replayed only when it is at most ``maxReplayBodyBytes``."""

    attempts: int = Field(default=2, ge=0, le=10)
    retry_on_503: bool = True
    max_replay_body_bytes: int = Field(default=65536, ge=0, le=16 * 1024 * 1024)


class Outlier(_Model):
    """Passive health checking (reference §5; the seed: "5 or more of the connections failed in the last 30
    seconds"): ``failures`` failures of a task (connect failures, resets, 5xx / gateway errors, gRPC
    UNAVAILABLE) within the last ``intervalSeconds`` eject it for ``baseEjectionSeconds`` times the number
    of times it was ejected, at most ``maxEjectionSeconds``. Successes in between do not reset the count
    (unlike Envoy's ``consecutive_5xx``): a task failing every other request is ejected too.

    ``maxEjectionPercent`` bounds the share of tasks ejected at once. ECS does not document it; Envoy's
    default of 10 % means "one task" for the 2-10 task services typical here, which we find too timid when
    two of three tasks die, so we default to 50 %. At least one task may always be ejected when there are
    two or more, the last non-ejected task never is, and if every task ends up ejected (discovery shrank)
    the proxy routes to all of them.
    """

    failures: int = Field(default=5, ge=1, le=1000)
    interval_seconds: float = Field(default=30.0, gt=0, le=86400)
    base_ejection_seconds: float = Field(default=30.0, gt=0, le=86400)
    max_ejection_seconds: float = Field(default=300.0, gt=0, le=86400)
    max_ejection_percent: int = Field(default=50, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # The old name meant "in a row"; saying so beats a bare "extra inputs are not permitted".
        if isinstance(data, dict) and "consecutiveFailures" in data:
            raise ValueError(
                "consecutiveFailures: renamed to failures: failures within intervalSeconds eject a task, "
                "whatever succeeded in between"
            )
        return data

    @model_validator(mode="after")
    def _bounds(self) -> Outlier:
        if self.max_ejection_seconds < self.base_ejection_seconds:
            raise ValueError("maxEjectionSeconds: must be >= baseEjectionSeconds")
        return self


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\x00" in value:
        raise ValueError(f"{value!r} is not an absolute file path")
    return value


#: A file the proxy reads (certificates, keys, CA bundles): an absolute path, never the content.
FilePath = Annotated[str, Field(min_length=2, max_length=4096), AfterValidator(_absolute)]

_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_URI_SAN = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


class IngressTls(_Model):
    """TLS on an ingress listener (TLS 1.3 only). ``certFile``/``keyFile``: the PEM leaf (plus chain) and
    key, re-read when they change. ``clientCaFile`` (mutual TLS, beyond ECS): callers must present a
    certificate from this bundle; ``allowedCallers``: the URI SAN identities admitted (empty: any caller
    the bundle verifies)."""

    cert_file: FilePath
    key_file: FilePath
    client_ca_file: FilePath | None = None
    allowed_callers: list[str] = Field(default=[], max_length=1000)

    @field_validator("allowed_callers")
    @classmethod
    def _uris(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _URI_SAN.match(item):
                raise ValueError(f"{item!r} is not a URI identity (e.g. spiffe://ns/ns/app/connectservice/a)")
        return value

    @model_validator(mode="after")
    def _callers_need_ca(self) -> IngressTls:
        if self.allowed_callers and self.client_ca_file is None:
            raise ValueError(
                "allowedCallers: needs clientCaFile (callers are identified by their certificate)"
            )
        return self


class EndpointTls(_Model):
    """TLS 1.3 to this endpoint's tasks: the server chain is verified against ``caFile`` and must name
    ``serverName`` (sent as SNI) in a DNS SAN. ``certFile``/``keyFile`` (mutual TLS): this proxy's client
    certificate, both or neither."""

    ca_file: FilePath
    server_name: str
    cert_file: FilePath | None = None
    key_file: FilePath | None = None

    @field_validator("server_name")
    @classmethod
    def _dns(cls, value: str) -> str:
        if not _DNS_NAME.match(value) or value.replace(".", "").isdigit():
            raise ValueError(f"{value!r} is not a DNS name")
        return value

    @model_validator(mode="after")
    def _pair(self) -> EndpointTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "certFile: certFile and keyFile go together (a client certificate needs its key)"
            )
        return self


class Via(_Model):
    """A peer cluster's gateway (the ``gateway`` network shape): connections to this endpoint's tasks are
    made to ``address:port`` instead, each starting with a PROXY protocol v2 header naming the task's
    address and port; the gateway checks the task and splices the bytes through (TLS stays end to end)."""

    address: IPAddress
    port: Port


class Endpoint(_Model):
    """A namespace endpoint this task consumes. ``name`` is its TargetDiscoveryName (metrics label).
    ``tls``: originate TLS 1.3 to its tasks (:class:`EndpointTls`). ``via``: reach the tasks through a
    peer cluster's gateway (:class:`Via`)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_][a-z0-9_-]*$")
    app_protocol: AppProtocol = "tcp"
    discovery: Discovery
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    outlier: Outlier = Outlier()
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    tls: EndpointTls | None = None
    via: Via | None = None

    @model_validator(mode="after")
    def _tcp_has_no_request_timeout(self) -> Endpoint:
        _check_per_request(self.app_protocol, self.timeouts)
        return self


def _check_per_request(app_protocol: str, timeouts: Timeouts) -> None:
    if app_protocol == "tcp" and timeouts.per_request_timeout_seconds not in (None, 0):
        raise ValueError(
            "timeouts.perRequestTimeoutSeconds: applies only to appProtocol http, http2 or grpc (ECS rule)"
        )


class Alias(_Model):
    """A client alias: connections to ``address:port`` (a VIP in 127.255.0.0/16 that the pod's hosts file maps
    the alias dnsName to) go to ``endpoint``."""

    address: str
    port: Port
    endpoint: str

    @field_validator("address")
    @classmethod
    def _vip(cls, value: str) -> str:
        value = _ip(value)
        if ipaddress.ip_address(value) not in VIP_NETWORK:
            raise ValueError(f"{value} is not in the client alias range {VIP_NETWORK}")
        return value


class Ingress(_Model):
    """An endpoint this task serves: a listener on ``address:port`` forwarding to the app at
    ``appAddress:appPort``.

    ``interceptPort`` is the containerPort whose non-local traffic iptables redirects to this listener
    (ECS's default); leave it unset when the service sets ``ingressPortOverride`` (then callers of the
    containerPort reach the app directly). ``tls``: the listener accepts TLS 1.3 only (:class:`IngressTls`).
    """

    discovery_name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_][a-z0-9_-]*$")
    address: IPAddress = "0.0.0.0"
    port: Port
    app_address: IPAddress = "127.0.0.1"
    app_port: Port
    intercept_port: Port | None = None
    app_protocol: AppProtocol = "tcp"
    timeouts: Timeouts = Timeouts()
    tls: IngressTls | None = None

    @model_validator(mode="after")
    def _tcp_has_no_request_timeout(self) -> Ingress:
        _check_per_request(self.app_protocol, self.timeouts)
        return self


class AccessLogConfig(_Model):
    """ECS ``accessLogConfiguration``: written to stdout; query strings dropped unless ENABLED."""

    format: Literal["TEXT", "JSON"]
    include_query_parameters: Literal["DISABLED", "ENABLED"] = "DISABLED"


class Limits(_Model):
    """Protection against hostile or broken peers (HTTP kinds). ``maxHeaderCount``: header fields a request
    may carry (Envoy's default, 100; HTTP/2 pseudo-header fields are not counted, cookie crumbs count as
    one field). ``http2``: the HTTP/2 flood defences (:class:`Http2Limits`)."""

    max_header_bytes: int = Field(default=65536, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(default=100, ge=1, le=10000)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    http2: Http2Limits = Field(default_factory=lambda: Http2Limits())


class Http2Limits(_Model):
    """HTTP/2 flood defences per client connection; past each one the connection gets GOAWAY
    ENHANCE_YOUR_CALM and is closed (sidecar/README.md tells where each default comes from).

    - ``maxResetsPerWindow`` streams reset by the client (or refused by the proxy) within the sliding
      ``resetWindowSeconds`` ("rapid reset", CVE-2023-44487; nghttp2 allows 1000 then 33/s).
    - ``controlFramesPerSecond`` / ``controlFrameBurst``: a token bucket for SETTINGS, PING, PRIORITY,
      frames of unknown types and empty DATA/HEADERS frames without END_STREAM.
    - ``windowUpdatesPerDataFrame``: WINDOW_UPDATE frames may number at most
      5 + 2 * (streams opened + this * DATA frames sent), Envoy's rule.
    - ``maxPendingControlAnswers``: PING and SETTINGS acknowledgements (and RST_STREAM answers) queued
      while the client does not read them (Envoy's and nghttp2's 1000 outbound control frames).
    - ``unreadTimeoutSeconds``: a client that reads nothing of what the proxy wrote (its write buffer over
      the high-water mark, reading from it paused) for this long is closed (nginx's ``send_timeout``).
    """

    reset_window_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_resets_per_window: int = Field(default=1000, ge=1, le=1_000_000)
    control_frames_per_second: float = Field(default=100.0, gt=0, le=1_000_000)
    control_frame_burst: int = Field(default=1000, ge=1, le=1_000_000)
    window_updates_per_data_frame: int = Field(default=10, ge=1, le=1000)
    max_pending_control_answers: int = Field(default=1000, ge=1, le=1_000_000)
    unread_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)


class GatewayConfig(_Model):
    """Gateway mode (the ``gateway`` network shape between clusters): a listener on ``address:port`` that
    reads a PROXY protocol v2 header from each connection and splices it to the task the header names, but
    only when that task's address and port are among the hosts ``allow`` currently discovers (the Ready
    tasks of this cluster's linked endpoints). Anything else is closed and counted: never an open relay.
    An empty ``allow`` routes nowhere (a cluster that exposes nothing yet).
    ``headerTimeoutSeconds``: the header must arrive within it; ``connectTimeoutSeconds``: to the task."""

    address: IPAddress = "0.0.0.0"
    port: Port
    allow: list[Discovery] = Field(default=[], max_length=10000)
    header_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)


class ProxyConfig(_Model):
    """The whole file. ``version`` identifies the rendering (shown in ``/config`` and logs)."""

    version: str = Field(min_length=1, max_length=128)
    service: ServiceIdentity = ServiceIdentity()
    admin: AdminConfig = AdminConfig()
    egress: EgressConfig | None = None
    endpoints: list[Endpoint] = []
    aliases: list[Alias] = []
    ingress: list[Ingress] = []
    access_log: AccessLogConfig | None = None
    drain_seconds: float = Field(default=20.0, ge=0, le=3600)
    #: After SIGTERM, keep the process (and so the pod's address) up at least this long, listeners closed:
    #: a caller that still lists this task is refused at once and retries another, where a vanished
    #: address would leave its connection attempt hanging. 0: exit as soon as the drain is done.
    linger_seconds: float = Field(default=0.0, ge=0, le=300)
    limits: Limits = Limits()
    gateway: GatewayConfig | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> ProxyConfig:
        names = [e.name for e in self.endpoints]
        dup_names = sorted(n for n, seen in Counter(names).items() if seen > 1)
        if dup_names:
            raise ValueError(f"endpoints: duplicate endpoint name {dup_names[0]!r}")
        known = set(names)
        for i, alias in enumerate(self.aliases):
            if alias.endpoint not in known:
                raise ValueError(f"aliases.{i}.endpoint: {alias.endpoint!r} is not the name of any endpoint")
        if self.aliases and self.egress is None:
            raise ValueError("egress: required when aliases are configured (mode redirect or listeners)")
        seen_alias: dict[tuple[str, int], int] = {}
        for i, alias in enumerate(self.aliases):
            key = (alias.address, alias.port)
            if key in seen_alias:
                first = seen_alias[key]
                raise ValueError(
                    f"aliases.{i}: duplicate address:port {alias.address}:{alias.port} (aliases.{first})"
                )
            seen_alias[key] = i
        self._check_ports()
        return self

    def _check_ports(self) -> None:
        # Listening ports of this process; a collision would fail at bind time, after some listeners are up.
        taken: dict[int, str] = {self.admin.port: "admin.port", self.admin.local_port: "admin.localPort"}

        def claim(port: int, what: str) -> None:
            if port in taken:
                raise ValueError(f"{what}: port {port} is already used by {taken[port]}")
            taken[port] = what

        if self.egress is not None and self.egress.mode == "redirect" and self.egress.port is not None:
            claim(self.egress.port, "egress.port")
        for i, ing in enumerate(self.ingress):
            claim(ing.port, f"ingress.{i}.port")
        if self.gateway is not None:
            claim(self.gateway.port, "gateway.port")
        seen_discovery: set[str] = set()
        for i, ing in enumerate(self.ingress):
            if ing.discovery_name in seen_discovery:
                raise ValueError(f"ingress.{i}.discoveryName: duplicate {ing.discovery_name!r}")
            seen_discovery.add(ing.discovery_name)
            if ing.intercept_port is not None and ing.intercept_port in taken:
                other = taken[ing.intercept_port]
                raise ValueError(f"ingress.{i}.interceptPort: {ing.intercept_port} collides with {other}")
            if ing.app_port == ing.port and ing.app_address in ("127.0.0.1", "::1", ing.address):
                raise ValueError(f"ingress.{i}.appPort: {ing.app_port} is the listener's own port")

    # Convenience lookups used at start (not on the hot path).
    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)


_RELATIVE_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*: ")


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if _RELATIVE_FIELD.match(msg):
            # Our own validators name the field relative to the model they check.
            lines.append(f"{loc}.{msg}" if loc else msg)
        else:
            lines.append(f"{loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any) -> ProxyConfig:
    """Validate already-parsed data; raises :class:`ConfigError` naming each bad field."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a YAML or JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    return parse_config(parse_text(text, str(path)))


def parse_text(text: str, source: str) -> Any:
    """The document in ``text``: JSON first (what the operator writes; the C parser reads a 300-endpoint
    file in 0.7 ms where PyYAML's pure-Python one takes 190 ms, all of it start-up time), else YAML."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml  # only for YAML files (about 10 ms of imports)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is neither YAML nor JSON: {exc}") from None


def dump_config(config: ProxyConfig) -> str:
    """JSON with the file's camelCase keys (what ``/config`` serves)."""
    return json.dumps(config.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2)
