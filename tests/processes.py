"""Runs one command as N real processes on 127.0.0.1, as a user on one machine would: process i gets
`--coordinator 127.0.0.1:<free port> --num-processes N --process-id i` (nothing for N = 1), JAX on CPU.

Every wait is bounded, and processes still running when the `Processes` block ends (an assertion
failed, a wait timed out) are killed and reaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


class Processes:
    """`python argv... <launch flags>` started N times (a context manager); output goes to files in `logs`."""

    def __init__(self, argv: Sequence[str], n: int, logs: Path, env: Optional[dict] = None):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        full_env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **(env or {})}
        self.procs = []
        for i in range(n):
            launch = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i)] if n > 1 else []
            with open(self.logs / f"{i}.out", "w") as out, open(self.logs / f"{i}.err", "w") as err:
                self.procs.append(subprocess.Popen([sys.executable, *argv, *launch], env=full_env, cwd=ROOT,
                                                   stdout=out, stderr=err))

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()

    def out(self, i: int) -> str:
        return (self.logs / f"{i}.out").read_text()

    def err(self, i: int) -> str:
        return (self.logs / f"{i}.err").read_text()

    def tails(self) -> str:
        return "\n".join(f"--- process {i} stderr:\n{self.err(i)[-2000:]}" for i in range(len(self.procs)))

    def wait(self, timeout: float) -> list[Result]:
        """Every process's exit status and output; AssertionError (with their stderr) after `timeout` s."""
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running after {timeout} s\n{self.tails()}") from None
        return [Result(p.returncode, self.out(i), self.err(i)) for i, p in enumerate(self.procs)]

    def wait_for(self, ready, timeout: float, what: str) -> None:
        """Polls `ready()` until true; AssertionError when a process exits first or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not ready():
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise AssertionError(f"no {what}\n{self.tails()}")
            time.sleep(0.02)


def run_together(commands: dict[str, tuple[Sequence[str], int]], logs: Path, env: Optional[dict] = None,
                 timeout: float = 300) -> dict[str, list[Result]]:
    """{name: (argv, process count)} all started at once (side by side they keep both cores busy), each
    run to the end -> {name: results}; asserts that every process exits with 0."""
    with contextlib.ExitStack() as stack:
        groups = {name: stack.enter_context(Processes(argv, n, Path(logs) / str(name), env))
                  for name, (argv, n) in commands.items()}
        out = {name: procs.wait(timeout) for name, procs in groups.items()}
        for name, results in out.items():
            codes = [r.code for r in results]
            assert codes == [0] * len(codes), f"{name}: exit codes {codes}\n{groups[name].tails()}"
    return out
