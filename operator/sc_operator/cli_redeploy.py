"""``scctl redeploy NAMESPACE/SERVICE``: ECS ``update-service --force-new-deployment`` for a ConnectService.

It writes a fresh token into ``spec.forceNewDeployment`` (a UTC timestamp, as ``kubectl rollout restart``
writes ``restartedAt``); the operator answers with a new ConnectDeployment of the same definition that
pins the namespace's endpoints as they are now, and Kubernetes replaces the pods. ``kubectl rollout
restart`` is not the same: it restarts pods of the current ConnectDeployment, which keep its pinned list.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from sc_operator.kube import CONNECT_SERVICES, ApiError, Kube
from sc_operator.reconcile.deployments import list_rollouts

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    """Register the subcommand on ``scctl``'s subparsers."""
    p = sub.add_parser(
        "redeploy",
        help="force a new deployment that pins the namespace's current endpoints (ECS force-new-deployment)",
        description=(
            "Set spec.forceNewDeployment of a ConnectService to a fresh token. The operator starts a new "
            "ConnectDeployment of the same definition, pinning the ConnectNamespace's endpoints as they "
            "are now, and the pods are replaced (ECS: aws ecs update-service --force-new-deployment). "
            "Unlike kubectl rollout restart, new pods see endpoints added since the last deployment."
        ),
    )
    p.add_argument("target", metavar="NAMESPACE/SERVICE", help="the ConnectService, e.g. web/frontend")
    p.add_argument("--token", help="the token to write (default: the current UTC time, microseconds)")
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the operator to create the ConnectDeployment, and print its name",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def _kube(args: argparse.Namespace) -> Kube:
    if not args.kubeconfig and not args.context:
        return Kube.from_environment()
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, context=args.context, client_configuration=configuration
    )
    return Kube(client.ApiClient(configuration))


def fresh_token(now: datetime | None = None) -> str:
    """RFC 3339 UTC with microseconds: unique enough for people, and tells when it was asked for."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    namespace, _, name = str(args.target).partition("/")
    if not namespace or not name or "/" in name:
        err.write(f"scctl redeploy: expected NAMESPACE/SERVICE, got {args.target!r}\n")
        return EXIT_USAGE
    token = args.token or fresh_token()
    try:
        kube = _kube(args)
        svc = kube.patch(CONNECT_SERVICES, name, {"spec": {"forceNewDeployment": token}}, namespace)
    except ApiError as exc:
        if exc.status == 404:
            err.write(f"scctl redeploy: ConnectService {namespace}/{name} not found\n")
        else:
            err.write(f"scctl redeploy: {namespace}/{name}: {exc}\n")
        return EXIT_FAILED
    except Exception as exc:  # kubeconfig missing or unreadable: say so, no traceback
        err.write(f"scctl redeploy: cannot reach the cluster: {exc}\n")
        return EXIT_FAILED
    out.write(f"connectservice {namespace}/{name}: forceNewDeployment set to {token}\n")
    accepted = next(
        (c for c in (svc.get("status") or {}).get("conditions") or [] if c.get("type") == "Accepted"), None
    )
    if accepted is not None and accepted.get("status") == "False":
        err.write(
            f"note: the service is refused ({accepted.get('reason')}); the new deployment starts once it "
            "is accepted\n"
        )
    if args.wait is None:
        return EXIT_OK
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        for rollout in list_rollouts(kube, namespace, name):
            if rollout.force_token == token:
                out.write(f"connectdeployment {namespace}/{rollout.name} started\n")
                return EXIT_OK
        if time.monotonic() >= deadline:
            err.write(f"scctl redeploy: no ConnectDeployment for token {token} after {args.wait:g} s\n")
            return EXIT_FAILED
        time.sleep(0.5)
