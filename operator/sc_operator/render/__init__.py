"""Pure rendering of a ConnectService rollout into Kubernetes objects (no I/O).

Entry point: :func:`render_children` with :class:`RenderInputs`. The pieces are importable on their own:
:func:`render_proxy_config`, :func:`assign_vips`, :func:`proxy_resources`, :func:`headless_service_name`,
:func:`config_hash`, and the render-time rules in :func:`render_violations`.
"""

from sc_operator.render.checks import RENDER_RULES, listener_collisions, render_violations
from sc_operator.render.children import Children, render_children, render_config_map
from sc_operator.render.inputs import (
    NATIVE_SIDECAR_VERSION,
    RenderError,
    RenderInputs,
    interception_mode,
    parse_server_version,
)
from sc_operator.render.names import (
    DEPLOYMENT_LABEL,
    MANAGED_BY_LABEL,
    SERVICE_LABEL,
    headless_dns_name,
    headless_service_name,
    managed_labels,
    srv_name,
)
from sc_operator.render.proxy_config import config_hash, render_proxy_config
from sc_operator.render.resources import cpu_millicores, proxy_resources
from sc_operator.render.vips import assign_vips

__all__ = [
    "DEPLOYMENT_LABEL",
    "MANAGED_BY_LABEL",
    "NATIVE_SIDECAR_VERSION",
    "RENDER_RULES",
    "SERVICE_LABEL",
    "Children",
    "RenderError",
    "RenderInputs",
    "assign_vips",
    "config_hash",
    "cpu_millicores",
    "headless_dns_name",
    "headless_service_name",
    "interception_mode",
    "listener_collisions",
    "managed_labels",
    "parse_server_version",
    "proxy_resources",
    "render_children",
    "render_config_map",
    "render_proxy_config",
    "render_violations",
    "srv_name",
]
