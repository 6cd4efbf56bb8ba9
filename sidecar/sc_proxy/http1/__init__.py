"""HTTP/1.1 (appProtocol ``http``): the downstream connection (a sans-IO state machine and the asyncio
Protocol driving it), the upstream pool, and the sans-IO parsing and rendering they share. The listeners'
handler registry uses :func:`http1_protocol_factory`."""

from sc_proxy.http1.server import http1_protocol_factory

__all__ = ["http1_protocol_factory"]
