"""Orbax checkpoints of the whole train state (params, EMA, optimizer state, step, RNG key) plus a
JSON item with the data position and the config.

Saves are asynchronous and atomic (orbax writes a temporary directory and renames it when complete),
so after a kill at any moment the latest listed step is a complete checkpoint; the oldest are
deleted beyond `keep`. A checkpoint damaged afterwards (a file deleted or cut off on disk) is
skipped with a warning naming its folder, which is moved aside to `<step>.damaged` (kept, never
deleted); the run resumes from the newest checkpoint that reads back. When none reads back, one
line names the damaged folders and nothing is moved.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from migm_jax.weights import first_line, out_of_memory, silence_closed_loop_callbacks

DAMAGED_SUFFIX = ".damaged"


class CheckpointDamagedError(ValueError):
    """No checkpoint of a run can be read back, though some exist."""


class Checkpoints:
    def __init__(self, directory: str, keep: int, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def restore(self, abstract_state: Any) -> Optional[tuple[Any, dict]]:
        """(state, meta) of the newest checkpoint that reads back, arrays laid out as `abstract_state`
        (a tree of jax.ShapeDtypeStruct with shardings), or None when there is none. Damaged newer
        checkpoints are moved aside with a warning (`set_aside`); CheckpointDamagedError when none reads."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        out = self._newest_readable(args)
        return None if out is None else (out["state"], out["meta"])

    def latest_meta(self) -> tuple[Optional[int], dict]:
        """(step, JSON item) of the newest checkpoint whose JSON item (data position, config) reads back;
        (None, {}) when there is none. No array is read; damaged checkpoints are moved aside."""
        out = self._newest_readable(ocp.args.Composite(meta=ocp.args.JsonRestore()), with_step=True)
        return (None, {}) if out is None else (out[0], out[1]["meta"])

    def restore_meta(self, step: int) -> dict:
        """The small JSON item of checkpoint `step` alone (data position, config); no array is read."""
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def _newest_readable(self, args, with_step: bool = False):
        """The newest checkpoint that `args` restores; damaged newer ones are set aside once an older one
        reads back. CheckpointDamagedError (one line naming the folders) when none does."""
        damaged = []
        silence_closed_loop_callbacks()  # a failed read leaves tensorstore callbacks behind
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                out = self.manager.restore(step, args=args)
            except Exception as e:  # noqa: BLE001  orbax and tensorstore raise many types for damaged files
                if out_of_memory(e):
                    raise
                silence_closed_loop_callbacks(wait=True)
                damaged.append((step, e))
                continue
            for bad, error in damaged:
                self.set_aside(bad, error)
            if damaged:
                print(f"warning: resuming from checkpoint {step} instead", file=sys.stderr)
            return (step, out) if with_step else out
        if damaged:
            folders = ", ".join(f"{os.path.join(self.directory, str(step))} ({first_line(e, 120)})" for step, e in damaged)
            raise CheckpointDamagedError(f"no checkpoint in {self.directory} reads back: {folders}; delete the "
                                         "damaged folders to start over")
        return None

    def set_aside(self, step: int, error: BaseException) -> str:
        """Moves the damaged checkpoint `step` to `<step>.damaged` (process 0; the others wait), so that
        a new save of that step can be made; warns naming both folders. Returns the new folder."""
        folder = os.path.join(self.directory, str(step))
        aside = folder + DAMAGED_SUFFIX
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = f"{folder}{DAMAGED_SUFFIX}{n}"
        print(f"warning: checkpoint {folder} is damaged ({first_line(error)}); moved it to {aside}", file=sys.stderr)
        if jax.process_index() == 0:
            os.rename(folder, aside)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
        self.manager.reload()
        return aside

    def reached_preemption(self, step: int) -> bool:
        """orbax's preemption sync point: True on every process once JAX's preemption service saw a
        SIGTERM (multi-host runs after jax.distributed.initialize()); False without that service."""
        reached = getattr(self.manager, "reached_preemption", None)
        return bool(reached is not None and reached(step))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts saving (returns before the write completes when async)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs) carrying `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
