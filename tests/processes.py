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
_handed_out: set[int] = set()
# settings of a launcher this test run may itself be under: the processes started here must not see them
LAUNCHER_VARS = ("MIGM_", "SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def free_port() -> int:
    """A port free now and not handed out before in this test run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


class Processes:
    """`python argv... <launch flags>` started N times (a context manager); output goes to files in `logs`.
    `ids`: start only these process ids (the others never come); `procs[k]`, `out(k)` and `err(k)` are the
    k-th started."""

    def __init__(self, argv: Sequence[str], n: int, logs: Path, env: Optional[dict] = None,
                 ids: Optional[Sequence[int]] = None):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        coordinator = f"127.0.0.1:{free_port()}" if n > 1 else None
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
        full_env.update({"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **(env or {})})
        self.procs, self.ids = [], list(range(n) if ids is None else ids)
        try:
            for i in self.ids:
                launch = [] if n == 1 else ["--coordinator", coordinator, "--num-processes", str(n),
                                            "--process-id", str(i)]
                with open(self.logs / f"{i}.out", "w") as out, open(self.logs / f"{i}.err", "w") as err:
                    self.procs.append(subprocess.Popen([sys.executable, *argv, *launch], env=full_env, cwd=ROOT,
                                                       stdout=out, stderr=err))
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()

    def out(self, k: int) -> str:
        return (self.logs / f"{self.ids[k]}.out").read_text()

    def err(self, k: int) -> str:
        return (self.logs / f"{self.ids[k]}.err").read_text()

    def tails(self) -> str:
        return "\n".join(f"--- process {i} stderr:\n{self.err(k)[-2000:]}" for k, i in enumerate(self.ids))

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
