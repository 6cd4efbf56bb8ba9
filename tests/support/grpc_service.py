"""A tiny real gRPC service for the proxy's tests, with no generated code.

Methods of ``test.Echo`` use raw bytes (identity serializers), registered with grpcio's generic handlers:

- ``Unary``: answers the request bytes. Request metadata: ``x-sleep-ms`` (sleep first), ``x-status`` (abort
  with that gRPC code), ``x-fail-on: <name>[,<name>…]`` (the servers named abort with UNAVAILABLE).
  Trailing metadata: ``x-served-by: <name>`` and ``x-trailer: intact``.
- ``ServerStream``: the request is ``b"<count> <size> <delay_ms>"``; streams ``count`` messages of ``size``
  bytes (byte value = index mod 256), ``delay_ms`` apart.
- ``ClientStream``: answers ``b"<messages> <total bytes>"``.
- ``Bidi``: echoes every message.

Run as a process (``python grpc_service.py --address A --port P --name N``; prints ``ready`` when serving) so
a test can kill it like a task that dies; :func:`channel_call` helpers build the client side.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "test.Echo"
#: Large enough for the 4 MiB messages the tests send (grpcio's default receive limit is 4 MiB).
MAX_MESSAGE = 16 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]


def _ident(b: bytes) -> bytes:
    return b


def _handlers(name: str) -> grpc.GenericRpcHandler:
    trailers = (("x-served-by", name), ("x-trailer", "intact"))

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        meta = dict(context.invocation_metadata())
        if "x-sleep-ms" in meta:
            time.sleep(int(meta["x-sleep-ms"]) / 1000)
        context.set_trailing_metadata(trailers)
        if name in meta.get("x-fail-on", "").split(","):
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} fails on purpose")
        if "x-status" in meta:
            context.abort(grpc.StatusCode(_code(int(meta["x-status"]))), f"asked for {meta['x-status']}")
        return request

    def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count, size, delay_ms = (int(x) for x in request.split())
        context.send_initial_metadata((("x-served-by", name),))
        context.set_trailing_metadata(trailers)
        for i in range(count):
            if delay_ms and i:
                time.sleep(delay_ms / 1000)
            yield bytes([i % 256]) * size

    def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        n = total = 0
        for msg in requests:
            n += 1
            total += len(msg)
        context.set_trailing_metadata(trailers)
        return f"{n} {total}".encode()

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        context.set_trailing_metadata(trailers)
        yield from requests

    kw: dict[str, Any] = {"request_deserializer": _ident, "response_serializer": _ident}
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **kw),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **kw),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **kw),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, **kw),
        },
    )


def _code(value: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.value  # type: ignore[no-any-return]
    raise ValueError(f"x-status: {value} is not a gRPC status code")


def serve(address: str, port: int, name: str) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    server.add_generic_rpc_handlers((_handlers(name),))
    server.add_insecure_port(f"{address}:{port}")
    server.start()
    return server


class Client:
    """Client stubs for ``test.Echo`` over one channel to ``target`` (``host:port``)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target, options=OPTIONS)
        kw: dict[str, Any] = {"request_serializer": _ident, "response_deserializer": _ident}
        path = f"/{SERVICE}/"
        self.unary = self.channel.unary_unary(path + "Unary", **kw)
        self.server_stream = self.channel.unary_stream(path + "ServerStream", **kw)
        self.client_stream = self.channel.stream_unary(path + "ClientStream", **kw)
        self.bidi = self.channel.stream_stream(path + "Bidi", **kw)

    def close(self) -> None:
        self.channel.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="grpc")
    args = parser.parse_args()
    server = serve(args.address, args.port, args.name)
    print("ready", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
