"""Child processes for tests: free loopback ports, start with a log file, stop for sure."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


#: Ports this process has handed out (see free_port).
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now, and that this process has not handed out
    before: the kernel can give two binds in a row the same ephemeral port, and a test that takes two
    ports for one config before anything binds them would then get the same one twice (seen in CI: an
    ingress port equal to the admin port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(1000):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no port on {host} that was not handed out already")


def _die_with_parent() -> None:
    # If pytest itself is killed, the kernel sends SIGTERM to the child: no stray servers.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A started child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        return f"{self.name} exited with {self.popen.returncode}; last log lines:\n{self.tail()}"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; always reaps the child."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)


def wait_until(
    what: str, check: Callable[[], object], timeout: float, proc: Proc | None = None, step: float = 0.2
) -> None:
    """Poll `check()` until it returns true; fail with `what` after `timeout` or if `proc` dies."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"waiting for {what}: {proc.describe_exit()}")
        try:
            if check():
                return
        except Exception as exc:  # keep polling; report the last error at the end
            last_error = exc
        time.sleep(step)
    detail = f" (last error: {last_error})" if last_error else ""
    tail = f"\n{proc.name} log:\n{proc.tail()}" if proc is not None else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s{detail}{tail}")


def env_without(*names: str) -> dict[str, str]:
    """The current environment minus `names` (e.g. proxies that must not see loopback traffic)."""
    return {k: v for k, v in os.environ.items() if k not in names}
