"""kubectl (from hack/tools.sh) bound to one kubeconfig, with errors that show its output."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


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
