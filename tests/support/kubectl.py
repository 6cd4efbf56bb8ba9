"""kubectl (from hack/tools.sh) bound to one kubeconfig, with errors that show its output."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kubectl:
    """Runs `kubectl --kubeconfig=... ARGS`; never the kubectl that happens to be on PATH."""

    binary: Path
    kubeconfig: Path

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
        """Run and return stdout; fail the test with kubectl's output if it exits non-zero."""
        return self.run(*args, input=input, timeout=timeout).stdout

    @contextmanager
    def watch(self, *args: str) -> Iterator[Watch]:
        """`kubectl get ARGS --watch -o json --output-watch-events`, read in the background.

        A watch sees every version the API server stores; polling with `get` can miss a short-lived one
        (a pod's final status is stored moments before the kubelet removes the pod)."""
        proc = subprocess.Popen(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", "get", *args,
             "--watch", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        watch = Watch()
        reader = threading.Thread(target=watch.read, args=(proc,), daemon=True)
        reader.start()
        try:
            yield watch
        finally:
            proc.kill()
            proc.wait(timeout=10)
            reader.join(timeout=10)


@dataclass
class Watch:
    """The events of one `kubectl get --watch`, as (type, object) in the order they came."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break  # an event split across lines: wait for the rest
                buffer = buffer.lstrip()[end:]
                with self._lock:
                    self.events.append((event["type"], event["object"]))

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.events)

    def wait_for(
        self, what: str, done: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """Wait until ``done(events)`` holds; fail naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.snapshot()
            if done(events):
                return events
            time.sleep(0.1)
        seen = len(self.snapshot())
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} ({seen} events seen)")
