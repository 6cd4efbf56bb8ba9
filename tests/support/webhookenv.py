"""The operator serving its admission webhooks on loopback, and the chart's webhook configuration aimed at it.

The API server reaches the webhook server over TLS at https://127.0.0.1:<port>/<handler id>, trusting a
test CA. The configuration is the one the chart renders with two changes for a shared test API server:
the clientConfig URL, and selectors narrowing each webhook to objects labelled with a scope, so other
tests running against the same server never see it.
"""

from __future__ import annotations

import base64
import copy
import shutil
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .certs import write_certs
from .envtest import KubeAPI
from .helmchart import Helm, by_kind
from .operator import OperatorProcess, wait_for
from .procs import free_port

SCOPE_LABEL = "serviceconnect.dev/webhook-test"


@dataclass
class WebhookServer:
    """A started operator with webhooks on, where it listens and the CA its certificate chains to."""

    operator: OperatorProcess
    port: int
    ca_cert: Path


def start_webhook_operator(api: KubeAPI, workdir: Path, env: dict[str, str] | None = None) -> WebhookServer:
    """Start sc-operator with webhooks on 127.0.0.1:<free port>; return once TLS handshakes succeed."""
    pki = write_certs(workdir / "pki")  # a CA and a serving certificate for 127.0.0.1
    cert_dir = workdir / "tls"
    cert_dir.mkdir()
    shutil.copy(pki.serving_cert, cert_dir / "tls.crt")
    shutil.copy(pki.serving_key, cert_dir / "tls.key")
    port = free_port()
    op = OperatorProcess(
        api,
        workdir,
        env={
            "SERVICECONNECT_WEBHOOK_ENABLED": "true",
            "SERVICECONNECT_WEBHOOK_ADDR": "127.0.0.1",
            "SERVICECONNECT_WEBHOOK_PORT": str(port),
            "SERVICECONNECT_WEBHOOK_CERT_DIR": str(cert_dir),
            "SERVICECONNECT_WEBHOOK_EXCLUDE_NAMESPACES": "kube-system",
            **(env or {}),
        },
    )
    op.start()
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))

    def serving() -> bool:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                return tls.version() is not None
        except OSError:
            return False

    try:
        wait_for("the operator's webhook server", serving, timeout=60)
    except BaseException:
        op.stop()
        raise
    return WebhookServer(op, port, pki.ca_cert)


def scoped_webhook_config(helm: Helm, server: WebhookServer, name: str, scope: str) -> dict[str, Any]:
    """The chart's ValidatingWebhookConfiguration aimed at `server`, seeing only objects of `scope`."""
    (config,) = by_kind(helm.template(namespace="sc-system"), "ValidatingWebhookConfiguration")
    config = copy.deepcopy(config)
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {
            "url": f"https://127.0.0.1:{server.port}{path}",
            "caBundle": base64.b64encode(server.ca_cert.read_bytes()).decode(),
        }
        # Namespaced kinds: only namespaces with the scope label; cluster-scoped: only labelled objects.
        if "namespaceSelector" in hook:
            hook["namespaceSelector"]["matchLabels"] = {SCOPE_LABEL: scope}
        else:
            hook["objectSelector"]["matchLabels"] = {SCOPE_LABEL: scope}
    return dict(config)
