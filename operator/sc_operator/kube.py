"""A small JSON client for the Kubernetes API: plain dicts in, plain dicts out.

The renderer produces plain Kubernetes dicts and the handlers compare plain dicts, so the typed models of
the ``kubernetes`` package would only add conversions (and CPU: deserialising into models dominates when
hundreds of services reconcile at once). This module reuses the package's authentication and connection
pool (``ApiClient``) and speaks JSON to any path.

Errors are :class:`ApiError` with the HTTP status; :func:`is_transient` says which ones a handler should
retry (409 conflicts, 429, 5xx, connection failures) instead of reporting them as failures.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sc_operator import GROUP, VERSION

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
#: Accept header for lists of metadata only (PartialObjectMetadataList; API servers 1.15+).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

#: Labels on everything the operator creates.
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "serviceconnect"
SERVICE_LABEL = f"{GROUP}/service"
DEPLOYMENT_LABEL = f"{GROUP}/deployment"

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer from the API server (status 0: no answer at all)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        self.status = status
        self.reason = reason
        self.body = body
        message = reason
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(body).get("message") or reason
        super().__init__(f"{status} {message}")
        self.message = message


def is_transient(exc: BaseException) -> bool:
    """Conflicts, throttling, server errors and lost connections: worth retrying with backoff."""
    return isinstance(exc, ApiError) and (exc.status in (0, 409, 429) or exc.status >= 500)


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        parts = [base]
        if self.namespaced and namespace is not None:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
        if sub is not None:
            parts.append(sub)
        return "/".join(parts)


NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
PODS = Resource("", "v1", "pods")
SERVICES = Resource("", "v1", "services")
CONFIGMAPS = Resource("", "v1", "configmaps")
EVENTS = Resource("", "v1", "events")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
REPLICASETS = Resource("apps", "v1", "replicasets")
CONNECT_NAMESPACES = Resource(GROUP, VERSION, "connectnamespaces", namespaced=False)
CONNECT_SERVICES = Resource(GROUP, VERSION, "connectservices")
CONNECT_DEPLOYMENTS = Resource(GROUP, VERSION, "connectdeployments")


class Kube:
    """JSON requests over a ``kubernetes.client.ApiClient`` (thread-safe: it pools connections)."""

    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._version: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, pool_size: int = 8) -> Kube:
        """In-cluster service account if present, else the kubeconfig (``KUBECONFIG`` or ``~/.kube``).

        ``pool_size``: pooled connections; give one per worker thread so workers never queue for a socket.
        """
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = pool_size
        return cls(client.ApiClient(configuration))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> Obj:
        """One request; the JSON answer parsed (``{}`` when empty). Raises :class:`ApiError`."""
        import urllib3

        headers = {"Accept": accept}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            # Serialised here, compactly: the client's own path walks every value of the body first
            # (sanitize_for_serialization), a tenth of the operator's CPU when bodies pin hundreds of
            # endpoints, and its json.dumps pads every separator with a space.
            data = json.dumps(body, separators=(",", ":")).encode()
        if query:
            path = f"{path}?{urllib.parse.urlencode(dict(query))}"
        try:
            # param_serialize adds the authentication (refreshing tokens) and the default headers.
            m, url, hdrs, _, _ = self.api_client.param_serialize(
                method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"]
            )
            resp = self.api_client.rest_client.pool_manager.request(
                m, url, body=data, headers=hdrs, timeout=urllib3.Timeout(total=self.timeout)
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc
        raw = resp.data
        if not 200 <= int(resp.status) < 300:
            raise ApiError(int(resp.status), str(resp.reason), raw.decode(errors="replace"))
        return json.loads(raw) if raw else {}

    # -- verbs ------------------------------------------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None) -> Obj:
        return self.request("GET", res.path(namespace, name))

    def get_or_none(self, res: Resource, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.get(res, name, namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        cached: bool = True,
    ) -> list[Obj]:
        """List objects, by default from the API server's watch cache (``resourceVersion=0``).

        Without it, a label-selected list is read from etcd in full and filtered afterwards: hundreds of
        ConnectDeployments, each holding a pinned endpoint list, made every such list read megabytes.
        The cache may lag by milliseconds; callers are idempotent (deterministic names) so that is safe.
        """
        query: dict[str, str] = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if cached:
            query["resourceVersion"] = "0"
        items: list[Obj] = self.request("GET", res.path(namespace), query=query).get("items") or []
        return items

    def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        return self.request("POST", res.path(namespace), body)

    def create_or_get(self, res: Resource, body: Obj, namespace: str | None = None) -> tuple[Obj, bool]:
        """Create ``body``; if it exists already, return the existing object. The flag says "created"."""
        try:
            return self.create(res, body, namespace), True
        except ApiError as exc:
            if exc.status != 409:
                raise
        return self.get(res, body["metadata"]["name"], namespace), False

    def replace(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        return self.request("PUT", res.path(namespace, body["metadata"]["name"]), body)

    def patch(
        self, res: Resource, name: str, patch: Obj, namespace: str | None = None, sub: str | None = None
    ) -> Obj:
        return self.request("PATCH", res.path(namespace, name, sub), patch, content_type=MERGE_PATCH)

    def patch_status(self, res: Resource, name: str, status: Obj, namespace: str | None = None) -> Obj:
        return self.patch(res, name, {"status": status}, namespace, sub="status")

    def delete(self, res: Resource, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", res.path(namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise

    # -- cluster facts ----------------------------------------------------------------------------------

    def server_version(self) -> tuple[int, int]:
        """(major, minor) from ``/version``; cached (a server upgrade restarts nothing we rely on)."""
        with self._lock:
            if self._version is None:
                info = self.request("GET", "/version")
                self._version = parse_version(str(info.get("major", "")), str(info.get("minor", "")))
            return self._version

    # -- events -----------------------------------------------------------------------------------------

    def post_event(self, involved: Obj, type_: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about ``involved``; never fails the caller (events are best effort)."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'sc')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "serviceconnect-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "serviceconnect-operator",
        }
        with contextlib.suppress(ApiError):
            self.create(EVENTS, event, namespace)


def parse_version(major: str, minor: str) -> tuple[int, int]:
    """``("1", "20+")`` → (1, 20): providers append ``+`` and other marks to the minor version."""
    digits = "".join(ch for ch in minor if ch.isdigit())
    return int("".join(ch for ch in major if ch.isdigit()) or 0), int(digits or 0)
