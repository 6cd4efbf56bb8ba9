"""Listening sockets bound the way the configuration means them.

asyncio's ``create_server`` sets ``IPV6_V6ONLY`` on every IPv6 socket, so an address of ``::`` would accept
IPv6 only. ``::`` in our configuration means "every address, IPv4 and IPv6" (dual stack, as it does for
most servers), so that socket is opened with ``IPV6_V6ONLY=0``: IPv4 peers arrive as ``::ffff:a.b.c.d``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A bound, listening, non-blocking TCP socket on ``host:port`` (``::`` = dual stack)."""
    ip = ipaddress.ip_address(host)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if ip.is_unspecified else 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock
