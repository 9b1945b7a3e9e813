"""The training driver behind train.py: set up models, mesh, state, data; resume; train; export.

One loop iteration is one optimizer step of `accum_steps` micro-batches; micro-batch m reads the
data position m and the RNG key fold_in(key, m), so a resumed run repeats an uninterrupted one exactly.
A resume refuses a checkpoint saved with a different config (config.config_differences); SIGTERM and
SIGINT stop `train` after the step in progress, with a checkpoint of that step.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
import threading
import time
from typing import Any, Optional

import jax
import numpy as np
from tqdm import tqdm

from migm_jax.sharding import make_mesh
from migm_jax.training.checkpoint import Checkpoints, abstract_like
from migm_jax.training.config import ConfigError, TrainConfig, config_differences
from migm_jax.training.metrics import MetricsLog
from migm_jax.training.shortcut_task import ShortcutTask, build_family  # noqa: F401  build_family: public API


def build_task(cfg: TrainConfig, mesh, workdir: Optional[str] = None):
    """The task object `train` drives (see shortcut_task.py for the methods every task offers); `workdir`:
    the run's folder (a base-model task may keep files there, e.g. the text tokenizer it builds)."""
    if cfg.task == "shortcut":
        return ShortcutTask(cfg, mesh)
    from migm_jax.pretrain import build_pretrain_task
    return build_pretrain_task(cfg, mesh, workdir)


def check_workdir(workdir: str) -> None:
    """Creates `workdir`; ConfigError if that or writing into it fails."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None


@dataclasses.dataclass
class Run:
    """Everything built from a config before the first step (shared by training and export)."""

    cfg: TrainConfig
    task: Any  # ShortcutTask or a migm_jax.pretrain task
    mesh: Any
    state: Any
    position: int
    checkpoints: Checkpoints


def check_resumable(checkpoints: Checkpoints, cfg: TrainConfig, workdir: str) -> None:
    """ConfigError (one line) when the latest checkpoint was saved with a config that differs from
    `cfg` in a field a resumed run may not change; reads only the checkpoint's small JSON item."""
    step, meta = checkpoints.latest_meta()
    if step is None:
        return
    diffs = config_differences(meta["config"], cfg) if "config" in meta else []
    if diffs:
        raise ConfigError(f"cannot resume {workdir}: its checkpoint (step {step}) was trained with a different config: "
                          f"{'; '.join(diffs)}; use a new --workdir or the saved settings")


def setup(cfg: TrainConfig, workdir: str, training: bool = False) -> Run:
    """Builds models, mesh and optimizer; restores the latest checkpoint of `workdir` or initialises; when
    `training`, compiles the train steps still to run (`task.compile_steps`: one that needs more memory than
    a device has is refused in one line). A checkpoint saved with a different config is refused before
    anything is built. A start that fails leaves no empty folder that it created (the workdir, its
    checkpoints/)."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    created = [d for d in (ckpt_dir, workdir) if not os.path.exists(d)]  # innermost first
    check_workdir(workdir)
    checkpoints = Checkpoints(ckpt_dir, cfg.keep_ckpts, cfg.async_ckpt)
    try:
        return _build(cfg, workdir, checkpoints, training)
    except BaseException:
        checkpoints.close()
        for d in created:
            try:
                os.rmdir(d)  # only when still empty
            except OSError:
                pass
        raise


def _build(cfg: TrainConfig, workdir: str, checkpoints: Checkpoints, training: bool) -> Run:
    """`setup` once the checkpoints are open."""
    check_resumable(checkpoints, cfg, workdir)
    mesh = make_mesh(fsdp=cfg.mesh_fsdp)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if cfg.batch_size % shards or cfg.batch_size % jax.process_count():
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the {shards} batch shards "
                          f"and {jax.process_count()} processes")
    task = build_task(cfg, mesh, workdir)
    abstract, state_sharding = task.state_layout()
    restored = checkpoints.restore(abstract_like(abstract, state_sharding))
    if restored is None:
        state, position = task.init_state(jax.random.PRNGKey(cfg.seed)), 0
    else:
        state, meta = restored
        position = meta["position"]
    start = int(state.step)
    if training and position != start * cfg.accum_steps:
        raise ConfigError(f"checkpoint at step {start} has data position {position}; accum_steps changed?")
    if training and start < cfg.total_steps:
        task.compile_steps(state, range(position, cfg.total_steps * cfg.accum_steps))
    return Run(cfg, task, mesh, state, position, checkpoints)


class StopSignals:
    """While active (a context manager), SIGTERM and SIGINT only set `signum`; `train` polls it once per
    step. A second signal acts as if the handler were not there (SIGINT: KeyboardInterrupt, SIGTERM:
    the default kill), so a stuck step can still be interrupted. Handlers are installed only from the
    main thread (Python allows no other) and only over a default or Python handler (an ignored signal
    stays ignored); the previous ones are restored on exit. JAX's C++ preemption notifier (which
    catches SIGTERM after jax.distributed.initialize()) is invisible to Python's signal module: while
    `train` runs it is superseded by this handler, which the processes combine themselves (`stop_signal`)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum, self.previous = 0, {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                prev = signal.getsignal(sig)
                if prev is not None and prev is not signal.SIG_IGN:
                    self.previous[sig] = prev
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self.previous.items():
            signal.signal(sig, prev)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
            return
        prev = self.previous.get(signum, signal.SIG_DFL)
        self.__exit__()
        if callable(prev):
            prev(signum, frame)
        else:  # SIG_DFL
            os.kill(os.getpid(), signum)


def stop_signal(signals: StopSignals, checkpoints: Checkpoints, step: int) -> int:
    """The signal number that stops training before `step` (0: go on), the same on every process:
    with several processes the local flags are all-gathered (one small collective per step, which
    waits for the previous step), and orbax's preemption sync point (JAX's preemption service) counts
    as a SIGTERM."""
    signum = signals.signum
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        flags = np.asarray(multihost_utils.process_allgather(np.int32(signum))).ravel()
        signum = int(next((f for f in flags if f), 0))
    if not signum and checkpoints.reached_preemption(step):
        signum = int(signal.SIGTERM)
    return signum


def train(cfg: TrainConfig, workdir: str, progress: bool = True) -> Optional[int]:
    """Trains to cfg.total_steps, resuming from the latest checkpoint in `workdir`; one metrics line per step.

    Checkpoints are saved every cfg.ckpt_every steps and at the end. SIGTERM or SIGINT (on any process)
    stops the run after the step in progress: that step's metrics line is written, a checkpoint of
    it is saved and waited for, one line says so, and the signal number is returned (None when the
    run reached total_steps). The same command then resumes at that step, so a stop by signal loses
    nothing and a resumed run repeats the uninterrupted loss sequence. A second signal, SIGKILL or a
    crash ends the process at once: the run then resumes from the last periodic checkpoint, and the
    steps after it are run again.
    """
    if cfg.attention_impl == "cudnn" and jax.default_backend() != "gpu":
        raise ConfigError(f"attention_impl 'cudnn' (cuDNN's fused attention) needs a GPU, this backend is "
                          f"{jax.default_backend()}; run on a GPU or pass --set attention_impl=None (exact attention)")
    with StopSignals() as signals:
        return _train(cfg, workdir, progress, signals)


def _train(cfg: TrainConfig, workdir: str, progress: bool, signals: StopSignals) -> Optional[int]:
    run = setup(cfg, workdir, training=True)
    start = int(run.state.step)
    if start:
        print(f"resumed from step {start} in {workdir}")
    if start >= cfg.total_steps:
        print(f"nothing to train: the checkpoint is at step {start}, total_steps is {cfg.total_steps} "
              "(raise total_steps to train further)")
        run.checkpoints.close()
        return None
    log = MetricsLog(workdir, start)
    bar = tqdm(total=cfg.total_steps, initial=start, unit="step", disable=not progress or jax.process_index() != 0)
    last_fetch = time.perf_counter()  # when the previous step's metrics arrived (or the loop started)

    def finish(step: int, micro: list) -> None:
        """Fetches step `step`'s metrics (the only host sync of a step), validates if due, writes one line.
        samples_per_s: this step's samples over the time since the previous step's metrics arrived; with the
        next step already queued that interval is one step of the device, i.e. the throughput."""
        nonlocal last_fetch
        micro = jax.device_get(micro)
        now = time.perf_counter()
        rate = cfg.batch_size * cfg.accum_steps / (now - last_fetch)
        record = {"step": step + 1, **{k: float(np.mean([x[k] for x in micro])) for k in micro[0]}, "samples_per_s": rate}
        if cfg.val_every and (step + 1) % cfg.val_every == 0:
            record.update(run.task.validate(run.state))
            preview(step + 1)
        log.write(record)
        bar.set_postfix(loss=f"{record['loss']:.4g}", samples_s=f"{rate:.1f}")
        bar.update(1)
        last_fetch = time.perf_counter()  # validation and previews are not the next step's time

    def preview(done: int) -> None:
        """The sample grid of this validation (single process; the grid needs every image on this host)."""
        if jax.process_count() == 1:
            run.task.preview(run.state, os.path.join(workdir, "samples", f"step_{done:07d}.png"))

    def save(done: int) -> None:
        """Starts saving the state after `done` steps."""
        run.checkpoints.save(done, run.state, {"position": done * cfg.accum_steps, "config": cfg.to_dict()})

    pending = None  # the previous step, finished once the next one is queued on the device
    saved, stopped = start, 0  # the step of the latest checkpoint; the signal that stops the run
    for step in range(start, cfg.total_steps):
        stopped = stop_signal(signals, run.checkpoints, step)
        if stopped:
            break
        micro = []
        for a in range(cfg.accum_steps):
            m = step * cfg.accum_steps + a
            run.state, metrics = run.task.train_step(run.state, m)
            micro.append(metrics)
        if pending:
            finish(*pending)
        pending = (step, micro)
        due = (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.total_steps
        if due or (cfg.val_every and (step + 1) % cfg.val_every == 0):
            finish(*pending)  # validation and checkpoints see exactly this step's state
            pending = None
        if due:
            save(step + 1)
            saved = step + 1
    if pending:  # only after a stop: the last step run
        finish(*pending)
    done = int(run.state.step)
    if stopped and done > saved:
        save(done)
    bar.close()
    run.checkpoints.close()  # waits for the saves in flight
    log.close()
    if stopped:
        print(f"stopped by {signal.Signals(stopped).name} after step {done}; the same command resumes")
        return stopped
    return None


def export(cfg: TrainConfig, workdir: str, out_dir: str) -> dict[str, Any]:
    """Writes the EMA model of the latest checkpoint (the shortcut: a weights dir and a `.pth`; a base
    model: a weights dir) to `out_dir` (single process); returns {name: path}."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    latest = None
    if os.path.isdir(ckpt_dir):
        probe = Checkpoints(ckpt_dir, cfg.keep_ckpts, async_save=False)
        latest = probe.latest_step()
        probe.close()
    if latest is None:
        raise ConfigError(f"no checkpoint in {ckpt_dir} to export; train first")
    run = setup(cfg, workdir)  # builds the models (the teacher too) only once a checkpoint is known to exist
    run.checkpoints.close()
    return run.task.export(run.state, out_dir)
