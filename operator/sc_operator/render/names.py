"""Names, labels and annotations of everything the operator creates.

Kubernetes names are stricter than ECS names (a discoveryName may contain ``_`` or start with a digit; label
values stop at 63 characters), so every derived name is made valid deterministically, and a short hash of the
original is appended whenever the name had to change, so two different inputs never map to one name.
"""

from __future__ import annotations

import hashlib
import re

from sc_operator import GROUP

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "serviceconnect"
SERVICE_LABEL = f"{GROUP}/service"
DEPLOYMENT_LABEL = f"{GROUP}/deployment"
#: On headless Services: the discoveryName they serve (label-safe form).
DISCOVERY_LABEL = f"{GROUP}/discovery-name"
INTERCEPTION_LABEL = f"{GROUP}/interception"

CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
PROXY_VERSION_ANNOTATION = f"{GROUP}/proxy-version"
DEPLOYMENT_ANNOTATION = f"{GROUP}/deployment"
DISCOVERY_ANNOTATION = f"{GROUP}/discovery-name"
ESSENTIAL_ANNOTATION = f"{GROUP}/essential-containers"
#: The de-facto annotations Prometheus' ``kubernetes-pods`` scrape job reads (on pods with a proxy).
PROMETHEUS_SCRAPE_ANNOTATION = "prometheus.io/scrape"
PROMETHEUS_PORT_ANNOTATION = "prometheus.io/port"
PROMETHEUS_PATH_ANNOTATION = "prometheus.io/path"
#: The proxy's pod-reachable port serving ``/metrics`` (and ``/ready``, ``/live``); a PodMonitor names it.
METRICS_PORT_NAME = "sc-metrics"

PROXY_CONTAINER = "sc-proxy"
INTERCEPT_CONTAINER = "sc-intercept"
CONFIG_VOLUME = "sc-proxy-config"
CONFIG_MOUNT = "/etc/serviceconnect"
CONFIG_KEY = "proxy.json"
CONFIG_PATH = f"{CONFIG_MOUNT}/{CONFIG_KEY}"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def short_hash(text: str, length: int = 8) -> str:
    """The first ``length`` hex digits of sha256(text)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def is_dns1035_label(name: str) -> bool:
    """A Service name: lowercase letters, digits and ``-``, starting with a letter, at most 63 characters."""
    return len(name) <= 63 and bool(_DNS1035.match(name))


def is_label_value(value: str) -> bool:
    """A valid Kubernetes label value (at most 63 characters)."""
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def is_port_name(name: str) -> bool:
    """A valid container/Service port name (IANA_SVC_NAME: at most 15, a letter, no ``--``)."""
    return (
        len(name) <= 15
        and bool(_IANA_SVC_NAME.match(name))
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def headless_service_name(discovery_name: str, connect_namespace: str = "") -> str:
    """The headless Service of an endpoint: ``sc-<discoveryName>`` made a DNS-1035 label.

    Always valid and collision-safe: when the name had to change (``_``, upper case, too long) or the endpoint
    belongs to a named ConnectNamespace, an 8-hex hash of the original (and the namespace) is appended — two
    ConnectNamespaces may use the same discoveryName in one Kubernetes namespace.
    """
    base = "sc-" + discovery_name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", base.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    if cleaned == base and is_dns1035_label(cleaned) and not connect_namespace:
        return cleaned
    suffix = short_hash(f"{connect_namespace}/{discovery_name}")
    return f"{cleaned[: 63 - len(suffix) - 1].rstrip('-')}-{suffix}"


def headless_dns_name(headless: str, k8s_namespace: str, cluster_domain: str) -> str:
    """``<headless>.<k8s-ns>.svc.<clusterDomain>``: A/AAAA records list the ready tasks."""
    return f"{headless}.{k8s_namespace}.svc.{cluster_domain}"


def ingress_port_name(app_protocol: str) -> str:
    """The headless Service's port name, ``sc-<proto>`` (``sc-tcp`` when appProtocol is unset)."""
    return f"sc-{app_protocol or 'tcp'}"


def srv_name(headless: str, k8s_namespace: str, cluster_domain: str, app_protocol: str) -> str:
    """``_<portname>._tcp.<headless>.<k8s-ns>.svc.<clusterDomain>``: the SRV record with the ingress port."""
    port_name = ingress_port_name(app_protocol)
    return f"_{port_name}._tcp.{headless_dns_name(headless, k8s_namespace, cluster_domain)}"


def container_port_name(discovery_name: str) -> str:
    """The proxy container's named port for one served endpoint.

    The headless Service's ``targetPort`` refers to it by name, so each pod's endpoint carries that pod's own
    ingress port and a rollout that moves the port needs no Service change visible to clients.
    """
    return f"sci-{short_hash(discovery_name, 10)}"


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a valid, deterministic, collision-safe stand-in."""
    if is_label_value(value):
        return value
    suffix = short_hash(value)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[: 63 - len(suffix) - 1]
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    return f"{cleaned}-{suffix}" if cleaned else suffix


def managed_labels(service_name: str) -> dict[str, str]:
    """The labels every child of a ConnectService carries (and the pod selector)."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SERVICE_LABEL: label_value(service_name)}
