"""The operator's own settings: what every rendered workload shares (proxy image, sizing, ports, …).

A plain pydantic model read from ``SC_*`` environment variables (``SC_PROXY_IMAGE``, ``SC_INTERCEPTION``, …:
the field name upper-cased) and/or command-line overrides; the command line wins. Values that are not plain
scalars (``SC_PROXY_RESOURCES``) are JSON. An ``SC_*`` variable that is not a setting but is spelt almost
like one (``SC_PROXY_IMAGES``) is refused, so a typo is not silently ignored; others (the tooling's
``SC_TOOLS_DIR``, …) are left alone.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Interception = Literal["redirect", "listeners"]
Port = Annotated[int, Field(ge=1, le=65535)]
_CLUSTER_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,253}[A-Za-z0-9])?$"

ENV_PREFIX = "SC_"
# Variables with this prefix that are not settings (read by other parts of the operator).
_NOT_SETTINGS = frozenset({"SC_LOG_LEVEL", "SC_KUBECONFIG"})
# How close an unknown name must be to a setting's to be taken for a typo of it.
_TYPO_CUTOFF = 0.85


class SettingsError(Exception):
    """A setting is invalid; the message names the variable (or option) and the rule."""


class ProxySizing(BaseModel):
    """The seeds' recommendation for the proxy's resources (reference §10), in ECS units.

    256 CPU units and 64 MiB; 512 units when the service expects more than 500 requests/s; 128 MiB more when
    the namespace holds more than 100 services or more than 2000 tasks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_units: int = Field(default=256, ge=1)
    memory_mib: int = Field(default=64, ge=4)
    high_traffic_cpu_units: int = Field(default=512, ge=1)
    high_traffic_requests_per_second: int = Field(default=500, ge=0)
    large_namespace_extra_memory_mib: int = Field(default=128, ge=0)
    large_namespace_services: int = Field(default=100, ge=0)
    large_namespace_tasks: int = Field(default=2000, ge=0)
    # The seeds' figure is a reservation (ECS lets the proxy use whatever the task does not reserve); a limit
    # equal to it would OOM-kill the proxy at the first burst, so the limit is this multiple of the request.
    memory_limit_factor: float = Field(default=2.0, ge=1.0, le=16.0)


class OperatorSettings(BaseModel):
    """Everything the renderer needs that is not in the custom resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proxy_image: str = Field(default="ghcr.io/serviceconnect/sc-proxy:0.1.0", min_length=1)
    #: Shown in the pod annotation; defaults to the image tag.
    proxy_version: str = ""
    proxy_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    proxy_sizing: ProxySizing = ProxySizing()
    #: Kubernetes ``resources`` for every proxy, replacing the sizing rules (a service's own override wins).
    proxy_resources: dict[str, dict[str, str]] | None = None
    #: ``lingerSeconds`` of every proxy that serves endpoints: after SIGTERM it stays up this long with its
    #: listeners closed, so callers that still list the task are refused (and retry another at once)
    #: instead of dialling an address that is gone. The default covers how long callers take to drop a
    #: stopping task: the cluster DNS TTL (5 s) plus the proxies' re-resolution interval (5 s), plus margin.
    proxy_linger_seconds: float = Field(default=12.0, ge=0, le=300)
    interception: Interception = "redirect"
    cluster_domain: str = Field(default="cluster.local", pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    #: The ``ClusterName`` label on every proxy metric (ECS's dimension; Kubernetes has no cluster name an
    #: operator could read, so it is set here). The ECS rule (letters, digits, ``-``, ``_``) plus ``.``,
    #: for DNS-style cluster names (kops).
    cluster_name: str = Field(default="kubernetes", pattern=_CLUSTER_NAME)
    #: Put ``prometheus.io/scrape|port|path`` on every pod with a proxy (annotation-based scraping).
    prometheus_annotations: bool = True
    #: ``address`` or ``address:port`` the proxies resolve headless Services with (empty: resolv.conf).
    dns_resolver: str = ""
    #: Preferred proxy ports; the next free one is taken when a task already uses it. ``admin_port``: the
    #: stats & health listener (probes, metrics), reachable on the pod IP.
    admin_port: Port = 9901
    #: The loopback admin listener (``/config``, ``POST /drain``); ``admin_port`` serves the probes.
    admin_local_port: Port = 9902
    egress_port: Port = 15001
    ingress_port_base: Port = 15100
    #: The UID the proxy runs as (ECS's AppNetUID).
    proxy_uid: int = Field(default=20000, ge=1)
    #: Pod-level resources (``spec.resources``) for the task size: ``auto`` = when the API server is
    #: ≥ 1.34 (PodLevelResources on by default); ``disabled`` where the feature gate is off.
    pod_level_resources: Literal["auto", "enabled", "disabled"] = "auto"
    #: Seconds the start-up gate (API servers < 1.29) waits for the proxy's ``/ready``.
    wait_ready_timeout: int = Field(default=120, ge=1, le=3600)
    #: TLS between proxies (ECS: certificates rotated every 5 days, failures if 7 days pass unrotated):
    #: each leaf is valid this long, and renewed when no more than ``tls_renew_before_seconds`` remain.
    tls_certificate_validity_seconds: int = Field(default=7 * 86400, ge=60)
    tls_renew_before_seconds: int = Field(default=2 * 86400, ge=10)
    #: Key type of the CAs the operator creates and of every leaf it issues (ECS: ECDSA 256 or RSA 2048).
    tls_key_algorithm: Literal["ECDSA_P256", "RSA_2048"] = "ECDSA_P256"
    #: Where CA private keys (and ConnectNamespace-level ``secretName`` CAs) live; empty: the operator's
    #: own namespace (``POD_NAMESPACE``), else ``default``.
    ca_namespace: str = Field(default="", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", max_length=63)
    #: The ``gateway`` network shape (chart ``gateway.*``): run this cluster's gateway (a Deployment and a
    #: Service ``sc-gateway`` in the operator's namespace) exposing the tasks of linked ConnectNamespaces.
    gateway_enabled: bool = False
    gateway_port: Port = 15443
    gateway_replicas: int = Field(default=2, ge=1, le=100)
    gateway_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "LoadBalancer"

    @field_validator("proxy_resources")
    @classmethod
    def _resources_keys(cls, value: dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]] | None:
        if value is not None:
            bad = sorted(set(value) - {"requests", "limits"})
            if bad:
                raise ValueError(f"only 'requests' and 'limits' are allowed, not {bad[0]!r}")
        return value

    @model_validator(mode="after")
    def _renewal_within_validity(self) -> OperatorSettings:
        if self.tls_renew_before_seconds >= self.tls_certificate_validity_seconds:
            raise ValueError(
                "tls_renew_before_seconds must be less than tls_certificate_validity_seconds "
                f"({self.tls_renew_before_seconds} >= {self.tls_certificate_validity_seconds})"
            )
        return self

    @property
    def effective_proxy_version(self) -> str:
        """The version shown on pods: explicit, else the image tag, else the image."""
        if self.proxy_version:
            return self.proxy_version
        last = self.proxy_image.rsplit("/", 1)[-1]
        if "@" in last:
            return last.split("@", 1)[1]
        if ":" in last:
            return last.split(":", 1)[1]
        return "latest"

    @classmethod
    def load(cls, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> OperatorSettings:
        """Settings from ``SC_*`` variables in ``env``, then ``overrides`` (e.g. CLI options) on top."""
        data: dict[str, Any] = {}
        names = set(cls.model_fields)
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX) or key in _NOT_SETTINGS:
                continue
            field = key[len(ENV_PREFIX) :].lower()
            if field not in names:
                close = difflib.get_close_matches(field, names, n=1, cutoff=_TYPO_CUTOFF)
                if close:
                    raise SettingsError(
                        f"{key}: unknown setting; did you mean {ENV_PREFIX}{close[0].upper()}?"
                    )
                continue
            data[field] = _parse_env_value(key, raw, field in _JSON_FIELDS)
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                head = loc.split(".", 1)[0]
                where = f"{ENV_PREFIX}{head.upper()}" + (loc[len(head) :] if "." in loc else "")
                if not head:  # a rule across settings: its message names them
                    where = f"{ENV_PREFIX}* settings"
                problems.append(f"{where}: {err['msg']}")
            raise SettingsError("; ".join(problems)) from None


_JSON_FIELDS = frozenset({"proxy_sizing", "proxy_resources"})


def _parse_env_value(key: str, raw: str, is_json: bool) -> Any:
    if not is_json:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{key}: not valid JSON ({exc.msg})") from None
