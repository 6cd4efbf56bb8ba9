"""The running proxy says which build of its hot modules it loaded (compiled extensions or pure Python).

hack/test.sh runs this directory once from the source tree (pure) and once against the compiled wheel
(``SC_PROXY_EXPECT_BUILD=compiled``): the proxy process of each run must report that build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from support.proxy import ProxyProcess, free_port

EXPECTED = os.environ.get("SC_PROXY_EXPECT_BUILD", "pure")


def test_the_ready_line_names_the_build(admin_port: int, start_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = start_proxy(
        {
            "version": "build-1",
            "service": {"namespace": "shop", "name": "front"},
            "admin": {"address": "127.0.0.1", "port": admin_port, "localPort": free_port()},
        }
    )
    deadline = time.monotonic() + 10
    while "ready in" not in proxy.output() and time.monotonic() < deadline:
        time.sleep(0.02)
    ready = [line for line in proxy.output().splitlines() if "ready in" in line]
    assert ready, proxy.output()
    assert ready[0].endswith(f"modules: {EXPECTED}"), ready[0]
