"""``sc-proxy wait-ready``: block until the local proxy answers ``/ready``, for the start-up gate.

On API servers older than 1.29 (no native sidecars) the operator puts the proxy first among the pod's
containers with this command as its postStart hook. The kubelet runs a postStart hook to completion before it
starts the next container, so the application starts only once the proxy's listeners are bound (Istio's
``holdApplicationUntilProxyStarts``). Exit 0 when ready; exit 1 after ``--timeout`` seconds: the kubelet
then restarts the proxy container and goes on starting the others, so the gate delays the application, it
never holds the pod forever (the pod stays unready until the proxy is ready).
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from collections.abc import Callable, Sequence

#: Between attempts: short, because every 100 ms here delays the application's start.
POLL_INTERVAL = 0.1
ATTEMPT_TIMEOUT = 1.0


def probe(address: str, port: int, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """One ``GET /ready``; True on 200. Refused or slow connections are just "not ready yet"."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def wait_ready(
    address: str,
    port: int,
    timeout: float,
    *,
    check: Callable[[str, int], bool] = probe,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll until ready or ``timeout`` seconds have passed; at least one attempt is made."""
    deadline = clock() + timeout
    while True:
        if check(address, port):
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        sleep(min(POLL_INTERVAL, remaining))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (shared by ``sc-proxy wait-ready`` and :func:`main`)."""
    parser.add_argument(
        "--admin-port",
        type=int,
        default=9901,
        help="the proxy's stats & health port, which serves /ready (default 9901)",
    )
    parser.add_argument(
        "--address", default="127.0.0.1", help="the admin address to poll (default 127.0.0.1)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")


def run(args: argparse.Namespace) -> int:
    """Exit status for parsed arguments: 0 ready, 1 timed out, 2 bad arguments."""
    port: int = args.admin_port
    timeout: float = args.timeout
    if not 1 <= port <= 65535:
        print(f"sc-proxy wait-ready: --admin-port {port} is out of range 1-65535", file=sys.stderr)
        return 2
    if timeout < 0:
        print(f"sc-proxy wait-ready: --timeout {timeout} must not be negative", file=sys.stderr)
        return 2
    started = time.monotonic()
    if wait_ready(args.address, port, timeout):
        print(f"proxy ready after {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 0
    print(
        f"sc-proxy wait-ready: the proxy on {args.address}:{port} was not ready within {timeout:g} s",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sc-proxy wait-ready", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
