"""Launch settings of the entry points that run as several processes (one per host, or several on one machine).

Every such CLI calls `add_launch_args(parser)` and, after parsing and before any JAX computation,
`initialize(args)`. Where the processes come from, in this order:
  - explicit settings, all three or none: --coordinator HOST:PORT --num-processes N --process-id I, or the
    environment variables MIGM_COORDINATOR, MIGM_NUM_PROCESSES, MIGM_PROCESS_ID (a flag wins over its
    variable); process 0 serves the coordinator at HOST:PORT, the others connect to it;
  - a cluster launcher: SLURM or Open MPI with several tasks (jax.distributed.initialize() reads its
    variables), or --multihost (alias: MIGM_MULTIHOST=1) where JAX finds the settings itself, e.g. on a
    TPU pod slice;
  - otherwise a single process, and nothing is initialized.
CPU processes exchange data through the gloo collectives (unless JAX_CPU_COLLECTIVES_IMPLEMENTATION says
otherwise). The processes give up after INIT_TIMEOUT_S when not all of them connect.

When one process dies (killed, its host gone), the others must not wait for it forever: one waiting in
a collective sees the connection drop at once and stops with one line (`error_line`); one busy elsewhere
is stopped by JAX once the dead process has missed its heartbeats for HEARTBEAT_TIMEOUT_S ("Terminating
process because the JAX distributed service detected fatal errors"). MIGM_INIT_TIMEOUT and
MIGM_HEARTBEAT_TIMEOUT (seconds) change both limits. A process that fails leaves at once (`leave`, and
for an uncaught exception the hook `initialize` installs) rather than in JAX's shutdown barrier, which
would wait for the others (up to 5 minutes, then abort) while they wait for it in their next collective.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import threading
from typing import Mapping, NoReturn, Optional

INIT_TIMEOUT_S = 120
HEARTBEAT_TIMEOUT_S = 60  # JAX's default: 100
ENV = {"coordinator": "MIGM_COORDINATOR", "num_processes": "MIGM_NUM_PROCESSES", "process_id": "MIGM_PROCESS_ID"}
FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes", "process_id": "--process-id"}
LAUNCHER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")  # several tasks: jax.distributed finds the rest
# how a collective or the coordination service reports a process that is gone
LOST_PROCESS = re.compile(r"Gloo \w+ failed|Connection (reset|closed) by peer|heartbeat timeout|coordination service"
                          r"|tasks are unhealthy|Socket closed", re.IGNORECASE)


class LaunchError(ValueError):
    """Launch settings that cannot work together, or processes that could not connect (one line)."""


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Adds --coordinator, --num-processes, --process-id and --multihost (see the module docstring)."""
    g = parser.add_argument_group(
        "several processes", "run the same command once per process (per host), with all three settings or none\n"
        f"(or {', '.join(ENV.values())}); under SLURM or Open MPI they are found.")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, reachable from every process")
    g.add_argument("--num-processes", type=int, metavar="N", help="how many processes run this command")
    g.add_argument("--process-id", type=int, metavar="I", help="this process: 0 .. N-1 (0 serves the coordinator)")
    g.add_argument("--multihost", action="store_true",
                   help="call jax.distributed.initialize() and let JAX find the settings (e.g. a TPU pod slice)")


def _int_setting(name: str, value, source: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{source} must be an integer, got {value!r}") from None


def launch_settings(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Optional[dict]:
    """The keyword arguments for jax.distributed.initialize(): {} to let JAX find them (a cluster launcher,
    --multihost), {coordinator_address, num_processes, process_id} when given, None for a single process.
    LaunchError (one line) for inconsistent settings."""
    given, source = {}, {}
    for key, var in ENV.items():
        value = getattr(args, key, None)
        source[key] = FLAGS[key] if value is not None else var
        if value is None and env.get(var, "") != "":
            value = env[var]
        if value is not None:
            given[key] = value
    if given:
        missing = [f"{FLAGS[k]} (or {ENV[k]})" for k in ENV if k not in given]
        if missing:
            have = ", ".join(f"{source[k]}" for k in ENV if k in given)
            raise LaunchError(f"{have} given without {' and '.join(missing)}: give all three launch settings or none")
        n = _int_setting("num_processes", given["num_processes"], source["num_processes"])
        i = _int_setting("process_id", given["process_id"], source["process_id"])
        coordinator = str(given["coordinator"])
        if n < 1:
            raise LaunchError(f"{source['num_processes']} must be >= 1, got {n}")
        if not 0 <= i < n:
            raise LaunchError(f"{source['process_id']} {i} is out of range for {n} processes: use 0 .. {n - 1}")
        m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d+)", coordinator)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise LaunchError(f"{source['coordinator']} must be HOST:PORT (e.g. 127.0.0.1:12355), got {coordinator!r}")
        if n == 1:
            return None
        return {"coordinator_address": coordinator, "num_processes": n, "process_id": i}
    if getattr(args, "multihost", False) or env.get("MIGM_MULTIHOST", "") not in ("", "0"):
        return {}
    if any(_int_setting(var, env.get(var, "1"), var) > 1 for var in LAUNCHER_SIZES):
        return {}
    if env.get("JAX_COORDINATOR_ADDRESS"):
        raise LaunchError("JAX_COORDINATOR_ADDRESS is set but no launcher gives the process count and id: pass "
                          "--num-processes and --process-id (or MIGM_NUM_PROCESSES, MIGM_PROCESS_ID), "
                          "or --multihost where JAX finds them (TPU)")
    return None


def _timeout(env: Mapping[str, str], var: str, default: int) -> int:
    value = _int_setting(var, env.get(var, default), var)
    if value < 1:
        raise LaunchError(f"{var} must be >= 1 second, got {value}")
    return value


def initialize(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Joins the processes the launch settings describe (see the module docstring); returns the process
    count (1: nothing was initialized). Call before any JAX computation. LaunchError (one line) for bad
    settings, or when the processes do not all connect within the timeout."""
    settings = launch_settings(args, env)
    if settings is None:
        return 1
    import jax

    if not env.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes need it (older JAX: none)
    init_timeout = _timeout(env, "MIGM_INIT_TIMEOUT", INIT_TIMEOUT_S)
    options = {"initialization_timeout": init_timeout + 10, "heartbeat_timeout_seconds":
               _timeout(env, "MIGM_HEARTBEAT_TIMEOUT", HEARTBEAT_TIMEOUT_S)}
    accepted = inspect.signature(jax.distributed.initialize).parameters
    options = {k: v for k, v in options.items() if k in accepted}  # older JAX: its own heartbeat defaults
    if settings:
        options["cluster_detection_method"] = "deactivate"  # explicit settings: no launcher's guess on top
    where = (f"process {settings['process_id']} of {settings['num_processes']} (coordinator "
             f"{settings['coordinator_address']})" if settings else "jax.distributed.initialize()")
    # JAX ends a process whose connection times out with a fatal log (stack trace, SIGABRT): a clear line first
    watchdog = threading.Timer(init_timeout, _not_connected, (where, init_timeout))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**settings, **options)
    except Exception as e:  # noqa: BLE001  JAX raises runtime errors of several types here
        raise LaunchError(f"{where}: cannot start ({_first_line(e)}); start every process with the same coordinator "
                          "and count, each with its own id, at a free port") from None
    finally:
        watchdog.cancel()
    if jax.process_count() > 1:
        previous = sys.excepthook
        sys.excepthook = lambda kind, e, tb: _uncaught(previous, kind, e, tb)
    return jax.process_count()


def _not_connected(where: str, seconds: int) -> None:
    print(f"error: {where}: not every process connected within {seconds} s; start all of them (the same "
          "--coordinator and --num-processes, each its own --process-id), process 0 reachable at that address",
          file=sys.stderr)
    _exit_at_once(2)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _several() -> bool:
    """True after a multi-process initialize (JAX is not imported here before one)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized() and jax.process_count() > 1


def error_line(e: BaseException) -> str:
    """The one line an entry point prints for `e`: for an error of a lost process, which process saw
    what, and how to go on; otherwise str(e)."""
    if not (_several() and LOST_PROCESS.search(str(e))):
        return str(e)
    import jax

    return (f"process {jax.process_index()} of {jax.process_count()}: another process of this run stopped or "
            f"cannot be reached ({_first_line(e)}); see its output; every process stops, and the same command "
            "on every process resumes")


def _exit_at_once(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C (128 + SIGINT)


def leave_at_once(code: int) -> NoReturn:
    """Exits with `code` skipping the interpreter's teardown: for a run interrupted while a device call
    runs on in a thread it abandoned (migm_jax.apps.rows.interruptible), on which the teardown would abort."""
    _exit_at_once(code)


def leave(code: int) -> NoReturn:
    """sys.exit(code) for an entry point's main(); with several processes a failed one (status 1..127)
    exits at once, skipping JAX's shutdown barrier (see the module docstring). A run stopped by a signal
    (128 + its number) stops on every process together and leaves as a finished one does."""
    if 0 < code < 128 and _several():
        _exit_at_once(code)
    sys.exit(code)


def _uncaught(previous, kind, e, tb) -> None:
    """sys.excepthook with several processes: one line for a lost process, the usual traceback otherwise;
    then exits at once (1; 130 for KeyboardInterrupt)."""
    if issubclass(kind, Exception) and LOST_PROCESS.search(str(e)):
        print(f"error: {error_line(e)}", file=sys.stderr)
    else:
        previous(kind, e, tb)
    _exit_at_once(130 if issubclass(kind, KeyboardInterrupt) else 1)
