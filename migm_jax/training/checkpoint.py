"""Orbax checkpoints of the whole train state (params, EMA, optimizer state, step, RNG key) plus a
JSON item with the data position and the config.

Saves are asynchronous and atomic (orbax writes a temporary directory and renames it when complete),
so after a kill at any moment the latest listed step is a complete checkpoint; the oldest are
deleted beyond `keep`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str, keep: int, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=("state", "meta"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def restore(self, abstract_state: Any) -> Optional[tuple[Any, dict]]:
        """(state, meta) of the latest complete checkpoint, arrays laid out as `abstract_state`
        (a tree of jax.ShapeDtypeStruct with shardings), or None when there is none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                                 meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def restore_meta(self, step: int) -> dict:
        """The small JSON item of checkpoint `step` alone (data position, config); no array is read."""
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

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
