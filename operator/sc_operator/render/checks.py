"""Rules that only rendering can check, as pure functions returning violations.

They depend on the interception mode (a property of the Kubernetes namespace, not of the spec) or on the
pinned endpoint list, so they are checked when a rollout is rendered, not at admission.
"""

from __future__ import annotations

import re

from sc_operator.render.inputs import RenderError, RenderInputs
from sc_operator.validation import Violation

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RULE_LISTENER_COLLISION = "listeners-port-collision"
RULE_HOSTNAME = "hostname-dns-label"
RULE_INGRESS_OVERRIDE = "ingress-port-override-collision"
RULE_PORT_NAME_UNKNOWN = "port-name-unknown"

#: Rule id -> the rule in one line (as ``sc_operator.validation.RULES``).
RENDER_RULES: dict[str, str] = {
    RULE_LISTENER_COLLISION: "in the no-privilege (listeners) interception mode a task may not bind a "
    "client-alias port it must reach",
    RULE_HOSTNAME: "hostname becomes the pod's hostname and must be a DNS label",
    RULE_INGRESS_OVERRIDE: "ingressPortOverride may not be a containerPort of the task, nor another "
    "service's ingressPortOverride",
}


def listener_collisions(inputs: RenderInputs) -> list[Violation]:
    """In the ``listeners`` interception mode the proxy binds each client alias ``127.255.x.y:port``; a task
    that binds the same port on all addresses makes that bind fail, so such a task is refused, naming both
    ports. (In the ``redirect`` mode iptables catches alias traffic before any bind, so nothing collides.)
    """
    if inputs.interception != "listeners" or inputs.service_connect is None:
        return []
    alias_ports: dict[int, str] = {}
    for ep in sorted(inputs.pinned, key=lambda e: (e.port, e.dns_name)):
        alias_ports.setdefault(ep.port, f"{ep.dns_name}:{ep.port}")
    out = []
    for port, where in inputs.task_ports():
        if port in alias_ports:
            out.append(
                Violation(
                    RULE_LISTENER_COLLISION,
                    f"{where}.containerPort",
                    f"containerPort {port} collides with client alias "
                    f"{alias_ports[port]}, which this service must reach: in the no-privilege (listeners) "
                    "interception mode the proxy binds every client-alias port itself. Change the "
                    "containerPort or use the redirect mode",
                )
            )
    for served in inputs.served():
        override = served.ingress_port_override
        if override and override in alias_ports:
            out.append(
                Violation(
                    RULE_LISTENER_COLLISION,
                    f"{served.field}.ingressPortOverride",
                    f"ingressPortOverride {override} collides with client alias "
                    f"{alias_ports[override]} in the no-privilege (listeners) interception mode",
                )
            )
    return out


def ingress_override_collisions(inputs: RenderInputs) -> list[Violation]:
    """An ingressPortOverride is a port the proxy binds; it may not be a port the task binds itself, nor
    the override of another of the service's endpoints (the proxy cannot bind one port twice)."""
    task = {port: where for port, where in inputs.task_ports()}
    overrides: dict[int, str] = {}
    out = []
    for served in inputs.served():
        port = served.ingress_port_override
        if not port:
            continue
        if port in task:
            out.append(
                Violation(
                    RULE_INGRESS_OVERRIDE,
                    f"{served.field}.ingressPortOverride",
                    f"ingressPortOverride {port} is also "
                    f"{task[port]}.containerPort: the proxy and the application cannot both listen on it",
                )
            )
        elif port in overrides:
            out.append(
                Violation(
                    RULE_INGRESS_OVERRIDE,
                    f"{served.field}.ingressPortOverride",
                    f"ingressPortOverride {port} is also {overrides[port]}.ingressPortOverride: the proxy "
                    "cannot listen on one port for two endpoints",
                )
            )
        overrides.setdefault(port, served.field)
    return out


def hostname_violations(inputs: RenderInputs) -> list[Violation]:
    """``hostname`` becomes the pod's hostname, which Kubernetes requires to be a DNS label."""
    out = []
    for i, c in enumerate(inputs.containers()):
        if c.hostname is not None and not (len(c.hostname) <= 63 and _is_dns1123_label(c.hostname)):
            where = f"spec.taskDefinition.containerDefinitions[{i}].hostname"
            out.append(
                Violation(
                    RULE_HOSTNAME,
                    where,
                    f"{c.hostname!r} must be a DNS label (at most 63 lowercase letters, digits and "
                    "'-', starting and ending with a letter or digit) to become the pod's hostname",
                )
            )
    return out


def _is_dns1123_label(name: str) -> bool:
    return bool(_DNS1123_LABEL.match(name))


def render_violations(inputs: RenderInputs) -> list[Violation]:
    """Every rule above; an empty list means :func:`render_children` will succeed."""
    try:
        return [
            *listener_collisions(inputs),
            *ingress_override_collisions(inputs),
            *hostname_violations(inputs),
        ]
    except RenderError as exc:
        field, _, message = str(exc).partition(": ")
        return [Violation(RULE_PORT_NAME_UNKNOWN, field, message)]
