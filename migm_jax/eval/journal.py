"""Resumable results: the rows written after every finished (configuration, seed), the running state of an
unfinished one in a sidecar file, both checked against the settings of the run that continues them.

`<out>` holds {"results": rows so far, "settings": ..., "complete": false until the last row}; `<out>.partial.npz`
holds the moments, per-image values and seconds of the (configuration, seed) in progress after its last
save, so a killed run loses at most `loop.SAVE_EVERY` batches. Both are replaced atomically.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from migm_jax.eval.batch_stats import Accumulator
from migm_jax.eval.loop import Journal
from migm_jax.files import write_files_atomically

VOLATILE = ("date",)  # settings that may differ between a run and its continuation


def sidecar_path(out: str) -> str:
    return f"{out}.partial.npz"


def first_mismatch(old: dict, new: dict, prefix: str = "") -> str | None:
    """The first setting (dotted name, in the order of `new`) whose value differs between `old` and `new`,
    None if all agree."""
    for key in list(new) + [k for k in old if k not in new]:
        if key in VOLATILE and not prefix:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_mismatch(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key} ({a!r} there, {b!r} now)"
    return None


def row_id(mode: str, steps: int, budget: int, seed: int) -> tuple:
    return mode, steps, budget, seed


class FileJournal(Journal):
    """Resumes from and writes to `out` (+ its sidecar); `settings` are this run's (JSON-serialisable)."""

    def __init__(self, out: str, settings: dict):
        self.out, self.sidecar = out, sidecar_path(out)
        self.settings, self.rows = settings, []
        if os.path.exists(out):
            try:
                previous = json.loads(pathlib.Path(out).read_text())
                self.check(previous["settings"], out)
                self.rows, self.settings = previous["results"], previous["settings"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"--out {out} exists but is no results file of this command ({e}); use another --out")
        self.done = {row_id(r["mode"], r["steps"], r["budget"], r["seed"]): r for r in self.rows}
        self.partial = self.read_partial()

    def check(self, previous: dict, path: str) -> None:
        mismatch = first_mismatch(previous, self.settings)
        if mismatch:
            raise ValueError(f"{path} was written with other settings: {mismatch}; rerun with the same arguments "
                             "to continue it, or use another --out")

    def read_partial(self) -> dict | None:
        """The sidecar's content if it continues an unfinished (configuration, seed) of this run."""
        if not os.path.exists(self.sidecar):
            return None
        with np.load(self.sidecar) as z:
            partial = {k: z[k] for k in z.files}
        self.check(json.loads(str(partial["settings"])), self.sidecar)
        key = row_id(str(partial["mode"]), int(partial["steps"]), int(partial["budget"]), int(partial["seed"]))
        return None if key in self.done else dict(partial, key=key)

    def finished(self, c, seed: int) -> dict | None:
        return self.done.get(row_id(c.mode, c.steps, c.budget, seed))

    def resume(self, c, seed: int, dim: int) -> tuple[Accumulator, float, int]:
        p = self.partial
        if p is None or p["key"] != row_id(c.mode, c.steps, c.budget, seed):
            return super().resume(c, seed, dim)
        acc = Accumulator(dim)
        acc.stats.count, acc.stats.sum, acc.stats.outer = int(p["count"]), p["sum"], p["outer"]
        acc.per_image = [p["per_image"]]
        return acc, float(p["seconds"]), int(p["batches_done"])

    def save_partial(self, c, seed: int, batches_done: int, acc: Accumulator, seconds: float) -> None:
        s = acc.stats
        fields = dict(settings=json.dumps(self.settings), mode=c.mode, steps=c.steps, budget=c.budget, seed=seed,
                      batches_done=batches_done, seconds=seconds, count=s.count, sum=s.sum, outer=s.outer,
                      per_image=acc.values())
        write_files_atomically([(self.sidecar, lambda f: np.savez(f, **fields))])

    def add_row(self, row: dict) -> None:
        self.rows.append(row)
        self.write(complete=False)
        if os.path.exists(self.sidecar):
            os.remove(self.sidecar)
        self.partial = None

    def write(self, complete: bool) -> dict:
        result = {"results": self.rows, "settings": self.settings, "complete": complete}
        write_files_atomically([(self.out, lambda f: f.write(json.dumps(result, indent=2).encode()))])
        return result

    def finish(self) -> dict:
        """Marks the results complete; the sidecar, if any is left, goes."""
        if os.path.exists(self.sidecar):
            os.remove(self.sidecar)
        return self.write(complete=True)
