"""The run of an evaluation: every configuration's batches sampled, decoded, timed and reduced to statistics, and
the results kept in a journal so that an interrupted run continues where it stopped.

Per configuration: its sampler and the decoder are compiled for the batch shape (`lower().compile()`: no batch
is sampled to warm them up; a program that needs more memory than a device has is refused in one line), then
for each seed every batch is sampled and decoded (timed, to completion) and reduced on the devices to feature
moments and per-image values (`stats`); the FID of a seed is taken against the reference statistics and the
metric network adds its per-image metric (accuracy or IS). With `fidelity`, each image is also compared with
the vanilla image of the same seed, condition and noise (equal tokens, PSNR): the vanilla configuration runs
first and its codes are kept (by the journal) for the others.

A `Journal` sees every finished (configuration, seed) and, every SAVE_EVERY batches, the running state of an
unfinished one. `FileJournal`: `<out>` holds {"results": rows so far, "settings", "complete": false until the
last row, plus what the caller adds (e.g. "reference")}; `<out>.partial.npz` the moments, per-image values,
fidelity, codes and seconds of the (configuration, seed) in progress after its last save, so a killed run loses
at most SAVE_EVERY batches; `<out>.codes.npz` the vanilla codes of the finished seeds. All are replaced
atomically and checked against the settings of the run that continues them; the two sidecars go when the run
is complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import jax
import numpy as np
from tqdm import tqdm

from migm_jax.eval.features import Extractor
from migm_jax.eval.plan import Configuration, Plan
from migm_jax.eval.stats import Accumulator, Reference, batch_moments, fidelity_metrics, fidelity_program, pad_rows
from migm_jax.files import write_files_atomically
from migm_jax.memory import check_fits
from migm_jax.sampling.noise import image_keys

BATCH_HINT = "use a smaller --batch-size"
SAVE_EVERY = 10  # batches between two saves of an unfinished (configuration, seed)
VOLATILE = ("date",)  # settings that may differ between a run and its continuation


@dataclasses.dataclass
class Progress:
    """The running state of one (configuration, seed): statistics of the batches done, their sampling and
    decoding seconds, their per-image fidelity [equal tokens, mse] (n, 2) and, for vanilla, their codes."""

    acc: Accumulator
    seconds: float = 0.0
    done: int = 0
    fidelity: list = dataclasses.field(default_factory=list)
    codes: list = dataclasses.field(default_factory=list)


class Journal:
    """Keeps the vanilla codes of this run in memory and nothing else: every (configuration, seed) runs."""

    def __init__(self):
        self.codes: dict[int, np.ndarray] = {}

    def finished(self, c: Configuration, seed: int) -> dict | None:
        return None

    def done_batches(self, c: Configuration, seed: int, batches: int) -> int:
        """Batches of (configuration, seed) that a resumed run need not sample again."""
        return batches if self.finished(c, seed) is not None else 0

    def resume(self, c: Configuration, seed: int, dim: int) -> Progress:
        """The state to continue (configuration, seed) from."""
        return Progress(Accumulator(dim))

    def save_partial(self, c: Configuration, seed: int, progress: Progress) -> None:
        pass

    def add_row(self, row: dict, codes: np.ndarray | None = None) -> None:
        """A finished row; `codes` (num_samples, ...): the vanilla codes of its seed."""
        if codes is not None:
            self.codes[row["seed"]] = codes

    def vanilla_codes(self, seed: int) -> np.ndarray:
        if seed not in self.codes:
            raise ValueError(f"no vanilla codes of seed {seed}: the fidelity columns need the vanilla configuration")
        return self.codes[seed]


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


def sidecar_path(out: str) -> str:
    return f"{out}.partial.npz"


def codes_path(out: str) -> str:
    return f"{out}.codes.npz"


class FileJournal(Journal):
    """Resumes from and writes to `out` (+ its sidecars); `settings` are this run's (JSON-serialisable);
    `extra` (e.g. {"reference": ...}) goes into every write of `out`."""

    def __init__(self, out: str, settings: dict):
        super().__init__()
        self.out, self.sidecar, self.codes_file = out, sidecar_path(out), codes_path(out)
        self.settings, self.rows, self.extra = settings, [], {}
        if os.path.exists(out):
            try:
                previous = json.loads(pathlib.Path(out).read_text())
                self.check(previous["settings"], out)
                self.rows, self.settings = previous["results"], previous["settings"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"--out {out} exists but is no results file of this command ({e}); use another --out")
        self.done = {row_id(r["mode"], r["steps"], r["budget"], r["seed"]): r for r in self.rows}
        self.partial = self.read_partial()
        if os.path.exists(self.codes_file):
            with np.load(self.codes_file) as z:
                self.check(json.loads(str(z["settings"])), self.codes_file)
                self.codes = {int(k[len("seed_"):]): z[k] for k in z.files if k.startswith("seed_")}

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

    def finished(self, c: Configuration, seed: int) -> dict | None:
        return self.done.get(row_id(c.mode, c.steps, c.budget, seed))

    def done_batches(self, c: Configuration, seed: int, batches: int) -> int:
        p = self.partial
        if p is not None and p["key"] == row_id(c.mode, c.steps, c.budget, seed):
            return int(p["batches_done"])
        return super().done_batches(c, seed, batches)

    def resume(self, c: Configuration, seed: int, dim: int) -> Progress:
        p = self.partial
        if p is None or p["key"] != row_id(c.mode, c.steps, c.budget, seed):
            return super().resume(c, seed, dim)
        acc = Accumulator(dim)
        acc.stats.count, acc.stats.sum, acc.stats.outer = int(p["count"]), p["sum"], p["outer"]
        acc.per_image = [p["per_image"]]
        return Progress(acc, float(p["seconds"]), int(p["batches_done"]), [p["fidelity"]],
                        [p["codes"]] if p["codes"].size else [])

    def save_partial(self, c: Configuration, seed: int, progress: Progress) -> None:
        s = progress.acc.stats
        fields = dict(settings=json.dumps(self.settings), mode=c.mode, steps=c.steps, budget=c.budget, seed=seed,
                      batches_done=progress.done, seconds=progress.seconds, count=s.count, sum=s.sum, outer=s.outer,
                      per_image=progress.acc.values(),
                      fidelity=np.concatenate(progress.fidelity) if progress.fidelity else np.zeros((0, 2), np.float32),
                      codes=np.concatenate(progress.codes) if progress.codes else np.zeros((0,), np.int32))
        write_files_atomically([(self.sidecar, lambda f: np.savez(f, **fields))])

    def add_row(self, row: dict, codes: np.ndarray | None = None) -> None:
        super().add_row(row, codes)
        if codes is not None:  # before the row: a row never outlives the codes the next configurations need
            fields = {"settings": json.dumps(self.settings), **{f"seed_{k}": v for k, v in self.codes.items()}}
            write_files_atomically([(self.codes_file, lambda f: np.savez(f, **fields))])
        self.rows.append(row)
        self.write(complete=False)
        if os.path.exists(self.sidecar):
            os.remove(self.sidecar)
        self.partial = None

    def vanilla_codes(self, seed: int) -> np.ndarray:
        if seed not in self.codes:
            raise ValueError(f"{self.out}: the vanilla codes of seed {seed} are missing ({self.codes_file} was "
                             "removed?); the fidelity columns need them: use another --out")
        return self.codes[seed]

    def write(self, complete: bool) -> dict:
        result = {"results": self.rows, "settings": self.settings, **self.extra, "complete": complete}
        write_files_atomically([(self.out, lambda f: f.write(json.dumps(result, indent=2).encode()))])
        return result

    def finish(self) -> dict:
        """Marks the results complete; the sidecars, if any are left, go."""
        for path in (self.sidecar, self.codes_file):
            if os.path.exists(path):
                os.remove(path)
        return self.write(complete=True)


def compile_programs(pipeline, c: Configuration, plan: Plan) -> tuple:
    """(sampler, decoder) of configuration `c`, compiled for the plan's batch without running them; ValueError
    (one line, `memory.check_fits`) when either needs more memory than a device has."""
    bs = plan.batch_size
    conditions, _ = pipeline.conditions.batch(0, bs)
    lowered = pipeline.sampler(c).lower(pipeline.params, conditions, image_keys(jax.random.PRNGKey(0), 0, bs))
    codes = lowered.out_info["codes"]
    decode = pipeline.decoder().lower(pipeline.decoder_params, jax.ShapeDtypeStruct(codes.shape, codes.dtype))
    programs = lowered.compile(), decode.compile()
    for program, what in zip(programs, (f"sampling {c.mode} N={c.steps} B={c.budget}", "decoding")):
        check_fits(program, f"{what} at batch {bs}", BATCH_HINT)
    return programs


def generate_batch(sample, decode, pipeline, conditions, keys: jax.Array) -> tuple[jax.Array, jax.Array, float]:
    """Samples and decodes one batch -> (codes (b, gh, gw), images (b, H, W, 3) on the devices, seconds taken)."""
    t0 = time.perf_counter()
    codes = sample(pipeline.params, conditions, keys)["codes"]
    images = jax.block_until_ready(decode(pipeline.decoder_params, codes))
    return codes, images, time.perf_counter() - t0


def run_batch(j: int, key: jax.Array, pipeline, programs: tuple, extractor: Extractor, plan: Plan,
              progress: Progress, fidelity: bool = False, vanilla_codes: np.ndarray | None = None) -> float:
    """Batch j of a seed's run (PRNG `key`): sampled, decoded, reduced to moments and per-image values added to
    `progress`; with `fidelity`, compared with `vanilla_codes` (num_samples, ...) and their decoded images, or,
    without them (the vanilla run), with itself, its codes kept. Returns the sampling and decoding seconds."""
    start, count, bs = j * plan.batch_size, plan.count(j), plan.batch_size
    conditions, labels = pipeline.conditions.batch(start, bs)
    codes, images, seconds = generate_batch(*programs, pipeline, conditions, image_keys(key, start, bs))
    progress.acc.add(*batch_moments(extractor, pipeline.mesh, images, labels, count))
    progress.seconds += seconds
    if fidelity:
        if vanilla_codes is None:
            ref_codes, ref_images = codes, images
            progress.codes.append(np.asarray(codes)[:count])
        else:
            ref_codes = pad_rows(vanilla_codes[start:start + count], bs)
            ref_images = programs[1](pipeline.decoder_params, ref_codes)
        values = fidelity_program(extractor.net, pipeline.mesh)(codes, ref_codes, images, ref_images)
        progress.fidelity.append(np.asarray(values)[:count])
    return seconds


def run_seed(c: Configuration, seed: int, pipeline, programs: tuple, extractor: Extractor, reference: Reference,
             plan: Plan, bar: tqdm, journal: Journal, fidelity: bool) -> dict:
    """The row of one (configuration, seed), continued from where the journal left it."""
    progress = journal.resume(c, seed, extractor.net.feature_dim)
    vanilla = None if not fidelity or c.mode == "vanilla" else journal.vanilla_codes(seed)
    key = jax.random.PRNGKey(seed)
    for j in range(progress.done, plan.batches):
        run_batch(j, key, pipeline, programs, extractor, plan, progress, fidelity, vanilla)
        progress.done = j + 1
        bar.update(c.budget)
        if progress.done % SAVE_EVERY == 0 and progress.done < plan.batches:
            journal.save_partial(c, seed, progress)
    row = {"mode": c.mode, "steps": c.steps, "budget": c.budget, "seed": seed,
           "fid": reference.distance(*progress.acc.stats.mean_cov()), **extractor.net.finish(progress.acc.values())}
    if fidelity:
        row.update(fidelity_metrics(np.concatenate(progress.fidelity)))
    row["seconds_per_image"] = progress.seconds / plan.num_samples
    journal.add_row(row, np.concatenate(progress.codes) if progress.codes else None)
    return row


def progress_bar(configs: list[Configuration], plan: Plan, journal: Journal, desc: str) -> tqdm:
    """The bar of a run: batches weighted by their full (base-model) steps, so that its ETA holds where the base
    model dominates the cost; work a continued run need not redo is counted as done before it starts."""
    total = sum(plan.batches * plan.seeds * c.budget for c in configs)
    done = sum(journal.done_batches(c, s, plan.batches) * c.budget for c in configs for s in range(plan.seeds))
    return tqdm(total=total, initial=done, desc=desc, unit="step")


def evaluate_configuration(c: Configuration, pipeline, extractor: Extractor, reference: Reference, plan: Plan,
                           bar: tqdm, journal: Journal | None = None, fidelity: bool = False) -> list[dict]:
    """One row {mode, steps, budget, seed, fid, <extractor metrics>[, equal_tokens, psnr], seconds_per_image} per
    seed. seconds_per_image = sampling and decoding time / num_samples (the padding rows of a partial last batch
    cost time but are no image). The programs are compiled only when some seed still has to run; the bar's clock
    stops meanwhile."""
    journal = Journal() if journal is None else journal
    name = f"{c.mode} N={c.steps} B={c.budget}"
    rows, programs = [], None
    for seed in range(plan.seeds):
        row = journal.finished(c, seed)
        if row is None:
            if programs is None:
                bar.set_postfix_str(f"compiling {name}")
                programs = compile_programs(pipeline, c, plan)
                bar.unpause()  # the compile time is no part of the sampling rate, hence of the ETA
                bar.set_postfix_str(name)
            row = run_seed(c, seed, pipeline, programs, extractor, reference, plan, bar, journal, fidelity)
        rows.append(row)
    return rows
