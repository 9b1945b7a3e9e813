"""Per-step metrics: one JSON object per optimizer step in `<workdir>/metrics.jsonl` (plus TensorBoard
when `tensorboardX` is installed). Only process 0 writes.

On resume the file is cut back to the steps the restored checkpoint had reached (lines of steps that
were run after it, or a line cut by a kill, are dropped), so the file always reads like one
uninterrupted run.
"""

from __future__ import annotations

import json
import os

import jax

METRICS_FILE = "metrics.jsonl"


def _kept_lines(path: str, last_step: int) -> list[str]:
    kept = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= last_step:
                kept.append(json.dumps(record) + "\n")
    return kept


class MetricsLog:
    def __init__(self, workdir: str, resumed_step: int):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, METRICS_FILE)
        self.tb = None
        if not self.active:
            return
        if os.path.exists(self.path):
            kept = _kept_lines(self.path, resumed_step)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, self.path)
        try:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, record: dict) -> None:
        """Appends `record` (must hold 'step'), flushed at once."""
        if not self.active:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
