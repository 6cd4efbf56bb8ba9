"""Prometheus metrics named after the Service Connect CloudWatch metrics (reference §8).

Naming choice: ECS's agent strips Envoy's ``envoy_appmesh_`` prefix before publishing (``RequestCount``), so
we expose exactly those stripped, capitalised names (legal in Prometheus) with no prefix and no ``_total``
suffix; a dashboard built for the ECS names reads ours unchanged. Labels are bounded: ``DiscoveryName`` on
ingress (this task's served endpoints) and ``TargetDiscoveryName`` on egress (the endpoints it calls) —
never a task, address or path. Every family of the registry also carries the proxy's constant labels
``ServiceName`` (the service this task belongs to: the serving service on ingress, the *calling* service
on egress, as ECS defines it) and ``ClusterName`` (:meth:`Registry.set_constant_labels`), which gives the
seed's dimension sets (DiscoveryName, ServiceName, ClusterName) and (TargetDiscoveryName, ServiceName,
ClusterName). They are constant per process, so they cost nothing per request and add no series.

Ingress (label ``DiscoveryName``): ``RequestCount``, ``NewConnectionCount``,
``ActiveConnectionCount`` (gauge), ``ProcessedBytes``, ``ResponseTime`` (histogram, ms),
``HTTPCode_2XX_Count`` … ``HTTPCode_5XX_Count``, ``TimeoutCount``, ``Http10RefusedCount``, ``RejectedCount``,
``ClientTLSNegotiationErrorCount`` (failed TLS handshakes of callers on a TLS listener).

Egress (label ``TargetDiscoveryName``): ``RequestCountPerTarget``, ``TargetNewConnectionCount``,
``TargetActiveConnectionCount`` (gauge), ``TargetProcessedBytes``, ``TargetResponseTime`` (histogram, ms),
``HTTPCode_Target_2XX_Count`` … ``HTTPCode_Target_5XX_Count``, ``TargetRetryCount``, ``TargetTimeoutCount``,
``TargetEjectionCount``, ``TargetEjectedHosts`` (gauge), ``TargetConnectFailureCount``,
``TargetHttp10RefusedCount``, ``TargetRejectedCount``, ``TargetTLSNegotiationErrorCount`` (failed TLS
handshakes to a task; each is also a ``TargetConnectFailureCount``). With only the constant labels:
``EgressUnknownDestinationCount`` (redirected connections matching no alias).

For TCP endpoints a "request" is a connection. ``ProcessedBytes`` counts both directions.

The hot path only touches pre-bound children (``stats.request_count.inc()``): plain attribute increments,
no lock (one event-loop thread), no label lookup. Rendering is done at scrape time. The standard process
metrics (``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``process_open_fds`` …) are read
from ``/proc`` here rather than through prometheus-client: importing that library costs about 2 MiB of
RSS and 0.1 s of start-up in every pod, for a text format this module writes in a few lines.
"""

from __future__ import annotations

import os
import resource
from bisect import bisect_left
from collections.abc import Iterator

#: TargetResponseTime buckets in milliseconds.
RESPONSE_TIME_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000, 30000, 60000,
)  # fmt: skip


class Counter:
    """A monotonically increasing value."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class Histogram:
    """Bucketed observations (non-cumulative counts internally; cumulated when rendered)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = RESPONSE_TIME_BUCKETS_MS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


Child = Counter | Gauge | Histogram


class _Family:
    __slots__ = ("children", "help", "kind", "label", "name")

    def __init__(self, name: str, kind: str, help_text: str, label: str | None) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.label = label
        self.children: dict[str, Child] = {}


def _fmt(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Registry:
    """All metric families of one proxy process, rendered as Prometheus text."""

    def __init__(self, process_metrics: bool = True) -> None:
        self._families: dict[str, _Family] = {}
        self._process = process_metrics and os.path.exists("/proc/self/stat")
        #: The constant labels, pre-rendered (``ServiceName="a",ClusterName="b"``): added at scrape time.
        self._constant = ""
        self._constant_names: frozenset[str] = frozenset()

    def set_constant_labels(self, labels: dict[str, str]) -> None:
        """Labels added to every family of this registry (not the ``process_*`` metrics) when rendered.

        For values that are the same for every series of the process (``ServiceName``, ``ClusterName``):
        rendering adds them, so children and the hot path do not change. An empty value is left out (an
        empty label is no label in Prometheus). A name that is also a family's own label is refused.
        """
        clash = sorted({fam.label for fam in self._families.values() if fam.label in labels})
        if clash:
            raise ValueError(f"constant label {clash[0]} is already a metric's own label")
        self._constant = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items() if v)
        self._constant_names = frozenset(labels)

    def child(self, name: str, kind: str, help_text: str, label: str | None = None, value: str = "") -> Child:
        """The child of family ``name`` for label ``value`` (created once: at set-up, not per request)."""
        fam = self._families.get(name)
        if fam is None:
            if label in self._constant_names:
                raise ValueError(f"metric {name}: label {label} is a constant label of this registry")
            fam = self._families[name] = _Family(name, kind, help_text, label)
        elif fam.kind != kind or fam.label != label:
            raise ValueError(f"metric {name} already registered as {fam.kind} with label {fam.label}")
        existing = fam.children.get(value)
        if existing is not None:
            return existing
        made: Child = Counter() if kind == "counter" else Gauge() if kind == "gauge" else Histogram()
        fam.children[value] = made
        return made

    def _lines(self) -> Iterator[str]:
        const = self._constant
        for fam in self._families.values():
            yield f"# HELP {fam.name} {fam.help}"
            yield f"# TYPE {fam.name} {fam.kind}"
            for value, ch in fam.children.items():
                own = f'{fam.label}="{_escape(value)}"' if fam.label else ""
                labels = f"{const},{own}" if const and own else const or own
                if isinstance(ch, Histogram):
                    sep = "," if labels else ""
                    cumulative = 0
                    for bound, n in zip((*ch.bounds, float("inf")), ch.counts, strict=True):
                        cumulative += n
                        le = "+Inf" if bound == float("inf") else _fmt(bound)
                        yield f'{fam.name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}'
                    suffix = f"{{{labels}}}" if labels else ""
                    yield f"{fam.name}_sum{suffix} {_fmt(ch.sum)}"
                    yield f"{fam.name}_count{suffix} {ch.count}"
                else:
                    suffix = f"{{{labels}}}" if labels else ""
                    yield f"{fam.name}{suffix} {_fmt(ch.value)}"

    def render(self) -> bytes:
        lines = list(self._lines())
        if self._process:
            lines.extend(_process_lines())
        return ("\n".join(lines) + "\n").encode()


def _process_lines() -> list[str]:
    """The client libraries' standard process metrics, from /proc (Linux)."""
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        vsz_pages, rss_pages = (int(x) for x in f.read().split()[:2])
    with open("/proc/self/stat") as f:
        # Fields after the command name (which may contain spaces); starttime is field 22.
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    boot = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                boot = int(line.split()[1])
    times = os.times()
    values = [
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsz_pages * page),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss_pages * page),
        ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         boot + start_ticks / os.sysconf("SC_CLK_TCK")),
        ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         times.user + times.system),
        ("process_open_fds", "gauge", "Number of open file descriptors.", len(os.listdir("/proc/self/fd"))),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.",
         resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    ]  # fmt: skip
    out = []
    for name, kind, help_text, value in values:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_fmt(float(value))}"]
    return out


#: The process-wide registry (one proxy per process).
REGISTRY = Registry()


class _DirectionStats:
    """Children for one direction and one endpoint name, bound once."""

    _label = ""
    _names: dict[str, str] = {}

    def __init__(self, name: str, registry: Registry | None = None) -> None:
        reg = registry or REGISTRY
        label = self._label
        n = self._names

        def counter(key: str, help_text: str) -> Counter:
            c = reg.child(n[key], "counter", help_text, label, name)
            assert isinstance(c, Counter)
            return c

        def gauge(key: str, help_text: str) -> Gauge:
            g = reg.child(n[key], "gauge", help_text, label, name)
            assert isinstance(g, Gauge)
            return g

        self.name = name
        self.request_count = counter("request_count", "Requests (connections for TCP).")
        self.new_connections = counter("new_connections", "Connections opened.")
        self.active_connections = gauge("active_connections", "Connections open now.")
        self.processed_bytes = counter("processed_bytes", "Bytes relayed, both directions.")
        hist = reg.child(n["response_time_ms"], "histogram", "Response time in milliseconds.", label, name)
        assert isinstance(hist, Histogram)
        self.response_time_ms = hist
        self.code_2xx = counter("code_2xx", "Responses with status 2xx.")
        self.code_3xx = counter("code_3xx", "Responses with status 3xx.")
        self.code_4xx = counter("code_4xx", "Responses with status 4xx.")
        self.code_5xx = counter("code_5xx", "Responses with status 5xx.")
        self.retries = counter("retries", "Retried attempts (connection failure, reset or 503).")
        self.timeouts = counter("timeouts", "Requests cut by perRequestTimeout (504) or idle timeout.")
        self.http10_refused = counter("http10_refused", "HTTP/1.0 requests answered 426.")
        self.rejected = counter("rejected", "Requests refused as malformed or over a limit.")
        self.connect_failures = counter("connect_failures", "Failed connection attempts to a task.")
        self.ejections = counter("ejections", "Outlier ejections of a task.")
        self.ejected_hosts = gauge("ejected_hosts", "Tasks currently ejected.")
        self.tls_errors = counter("tls_errors", "Failed TLS handshakes.")

    def count_status(self, status: int) -> None:
        """Count a response status in its class (HTTP kinds)."""
        if status < 300:
            self.code_2xx.inc()
        elif status < 400:
            self.code_3xx.inc()
        elif status < 500:
            self.code_4xx.inc()
        else:
            self.code_5xx.inc()


_KEYS = (
    "request_count", "new_connections", "active_connections", "processed_bytes", "response_time_ms",
    "code_2xx", "code_3xx", "code_4xx", "code_5xx", "retries", "timeouts", "http10_refused", "rejected",
    "connect_failures", "ejections", "ejected_hosts", "tls_errors",
)  # fmt: skip


class IngressStats(_DirectionStats):
    """Metrics of one served endpoint (label ``DiscoveryName``)."""

    _label = "DiscoveryName"
    _names = dict(
        zip(
            _KEYS,
            [
                "RequestCount", "NewConnectionCount", "ActiveConnectionCount", "ProcessedBytes",
                "ResponseTime",
                "HTTPCode_2XX_Count", "HTTPCode_3XX_Count", "HTTPCode_4XX_Count", "HTTPCode_5XX_Count",
                "RetryCount", "TimeoutCount", "Http10RefusedCount", "RejectedCount", "ConnectFailureCount",
                "EjectionCount", "EjectedHosts", "ClientTLSNegotiationErrorCount",
            ],
            strict=True,
        )
    )  # fmt: skip


class EgressStats(_DirectionStats):
    """Metrics of one consumed endpoint (label ``TargetDiscoveryName``)."""

    _label = "TargetDiscoveryName"
    _names = dict(
        zip(
            _KEYS,
            [
                "RequestCountPerTarget", "TargetNewConnectionCount", "TargetActiveConnectionCount",
                "TargetProcessedBytes", "TargetResponseTime", "HTTPCode_Target_2XX_Count",
                "HTTPCode_Target_3XX_Count", "HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count",
                "TargetRetryCount", "TargetTimeoutCount", "TargetHttp10RefusedCount", "TargetRejectedCount",
                "TargetConnectFailureCount", "TargetEjectionCount", "TargetEjectedHosts",
                "TargetTLSNegotiationErrorCount",
            ],
            strict=True,
        )
    )  # fmt: skip


Stats = IngressStats | EgressStats


def unknown_destination_counter(registry: Registry | None = None) -> Counter:
    """Redirected egress connections whose original destination matches no alias (closed)."""
    c = (registry or REGISTRY).child(
        "EgressUnknownDestinationCount", "counter", "Redirected connections to an unknown address:port."
    )
    assert isinstance(c, Counter)
    return c


#: The defences that ``ProtectionTriggeredCount`` names (its ``Protection`` label: a closed set).
PROTECTIONS: tuple[str, ...] = (
    "http1_header_timeout",  # no complete request head within limits.headerTimeoutSeconds
    "header_count",  # more header fields than limits.maxHeaderCount (431, or RST_STREAM/GOAWAY in HTTP/2)
    "http2_rapid_reset",  # too many streams reset by the peer (or refused) in the window
    "http2_control_flood",  # SETTINGS / PING / WINDOW_UPDATE / empty-frame rate over its limit
    "http2_unread_answers",  # the peer does not read our control-frame answers (queue bound reached)
)


def protection_counter(protection: str, registry: Registry | None = None) -> Counter:
    """``ProtectionTriggeredCount{Protection=…}``: a defence against a hostile or broken peer fired."""
    if protection not in PROTECTIONS:
        raise ValueError(f"unknown protection {protection!r}; known: {', '.join(PROTECTIONS)}")
    c = (registry or REGISTRY).child(
        "ProtectionTriggeredCount",
        "counter",
        "A defence against a hostile or broken peer fired (connection closed, request refused).",
        "Protection",
        protection,
    )
    assert isinstance(c, Counter)
    return c


def identify_proxy(service_name: str, cluster_name: str, registry: Registry | None = None) -> None:
    """Label every Service Connect metric with this proxy's ``ServiceName`` and ``ClusterName`` (ECS's
    dimensions; on egress ServiceName is the calling service, which is this one)."""
    (registry or REGISTRY).set_constant_labels({"ServiceName": service_name, "ClusterName": cluster_name})


def publish_config_version(version: str, registry: Registry | None = None) -> None:
    """``ProxyConfigInfo{version="…"} 1``: which rendering (so which pinned endpoint list) this task runs."""
    g = (registry or REGISTRY).child(
        "ProxyConfigInfo",
        "gauge",
        "The running configuration's version (value always 1).",
        "version",
        version,
    )
    assert isinstance(g, Gauge)
    g.set(1)
