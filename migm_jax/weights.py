"""A converted-weights directory: `config.json` (model family + module configs), `params/` (orbax) and,
for DiMOO, `tokenizer/` (and optionally `prompts.txt`, the prompts it was trained on).

Written by `convert_weights.py` and by training export, read by `sample.py`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from migm_jax.files import read_json, write_files_atomically

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"  # DiMOO: the tokenizer files
PROMPTS_FILE = "prompts.txt"  # DiMOO, optional: the prompts the model knows (trained on), one per line
REMAKE = "re-run convert_weights.py, or train.py --export for an exported shortcut"


class DamagedWeightsError(ValueError):
    """A weights directory whose files cannot be read back (damaged, incomplete, non-finite values)."""


def save_weights(out_dir: str | os.PathLike, family: str, configs: dict[str, dict], params: dict[str, Any]) -> None:
    """Writes `configs` (JSON-able dicts, one per module) and the params tree (arrays keep their dtype).

    The params write is atomic (orbax finalises a temporary directory); an existing directory is replaced.
    After an error (e.g. a full disk) no temporary folder is left, nor `out_dir` if this call created it.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    created = not os.path.exists(out_dir)
    text = json.dumps({"family": family, "configs": configs}, indent=2).encode()
    try:
        os.makedirs(out_dir, exist_ok=True)
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(os.path.join(out_dir, PARAMS_DIR), params, force=True)
            ckpt.wait_until_finished()
        forget_save_location(os.path.join(out_dir, PARAMS_DIR))
        write_files_atomically([(os.path.join(out_dir, CONFIG_FILE), lambda f: f.write(text))])
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            for tmp in glob.glob(os.path.join(glob.escape(out_dir), f"{PARAMS_DIR}*.orbax-checkpoint-tmp*")):
                shutil.rmtree(tmp, ignore_errors=True)
        raise


COMMIT_NOTE = "commit_success.txt"


def forget_save_location(params_dir: str) -> None:
    """orbax's commit note names the absolute folder it saved to; a weights dir moves (and ships), so the
    note keeps only the folder's own name (orbax reads the note's presence, not its text)."""
    note = os.path.join(params_dir, COMMIT_NOTE)
    if os.path.isfile(note):
        write_files_atomically([(note, lambda f: f.write(f"Checkpoint commit was successful to {PARAMS_DIR}".encode()))])


def cast_floating(params: Any, dtype: str) -> Any:
    """`params` (a tree of arrays) as numpy arrays, every floating one in `dtype` (e.g. 'bfloat16':
    half the bytes of float32); integer arrays unchanged."""
    import jax.numpy as jnp
    import numpy as np

    target = jnp.dtype(dtype)
    return jax.tree.map(lambda x: np.asarray(x).astype(target) if jnp.issubdtype(x.dtype, jnp.floating)
                        else np.asarray(x), params)


def as_float32(params: Any) -> Any:
    """`params` with every floating array in float32 (for weights stored in bfloat16 / float16)."""
    import jax.numpy as jnp

    return jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def read_config(weights_dir: str | os.PathLike) -> tuple[str, dict[str, dict]]:
    """Returns (family, configs) without touching the params; one-line error if the directory is not a weights dir."""
    weights_dir = os.fspath(weights_dir)
    path = os.path.join(weights_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(not_a_weights_dir(weights_dir))
    meta = read_json(path, REMAKE)
    if not isinstance(meta, dict) or "family" not in meta or not isinstance(meta.get("configs"), dict):
        raise ValueError(f"{path} is not a weights config (needs 'family' and 'configs'); {REMAKE}")
    return meta["family"], meta["configs"]


def not_a_weights_dir(path: str) -> str:
    """What to do with a `path` that holds no config.json: the message names the right command."""
    if os.path.isfile(path):
        return f"{path} is a file; a weights directory (config.json + params/) is expected"
    if os.path.isfile(os.path.join(path, "weights", CONFIG_FILE)):
        return f"{path} is a train.py export folder; its weights directory is {os.path.join(path, 'weights')}"
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return (f"{path} is a training workdir, not a weights directory; export it with train.py --config CONFIG "
                f"--workdir {path} --export, then use {os.path.join(path, 'export', 'weights')}")
    if os.path.isdir(path) and os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE)):
        return f"{path} holds no {CONFIG_FILE}; its parent {os.path.dirname(os.path.abspath(path))} may be the weights directory"
    return f"no converted weights at {path} ({CONFIG_FILE} missing); run convert_weights.py first"


def stored_target(weights_dir: str | os.PathLike, shardings=None) -> Any:
    """Tree of jax.ShapeDtypeStruct with the stored shapes and dtypes, placed by `shardings` (a function
    of the metadata tree returning a sharding tree; default: everything on the first local device)."""
    path = os.path.join(os.path.abspath(os.fspath(weights_dir)), PARAMS_DIR)
    with reading_params(weights_dir), ocp.StandardCheckpointer() as ckpt:
        metadata = ckpt.metadata(path)
        if metadata is None or metadata.item_metadata is None:
            raise ValueError("its metadata cannot be read")
        meta = metadata.item_metadata.tree
    if shardings is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        placed = jax.tree_util.tree_map(lambda m: device, meta)
    else:
        placed = shardings(meta)
    return jax.tree_util.tree_map(lambda m, s: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=s), meta, placed)


def load_weights(weights_dir: str | os.PathLike, target: Optional[Any] = None) -> tuple[str, dict[str, dict], dict]:
    """Returns (family, configs, params). `target`: optional tree of jax.ShapeDtypeStruct with shardings
    (see `stored_target`) so that each device only reads its slice; default: the first local device,
    whatever devices the weights were written from."""
    family, configs = read_config(weights_dir)
    path = os.path.join(os.path.abspath(os.fspath(weights_dir)), PARAMS_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"params missing in {weights_dir}; {REMAKE}")
    target = target if target is not None else stored_target(weights_dir)
    with reading_params(weights_dir), ocp.StandardCheckpointer() as ckpt:
        params = ckpt.restore(path, target)
    bad = nonfinite_leaves(params)
    if bad:
        raise DamagedWeightsError(f"{os.fspath(weights_dir)}: {len(bad)} param(s) hold NaN or infinite values "
                                  f"({', '.join(bad[:5])}); {REMAKE} from finite checkpoints")
    return family, configs, params


@contextlib.contextmanager
def reading_params(weights_dir: str | os.PathLike):
    """Turns any error of reading `weights_dir`'s params into one DamagedWeightsError line (an out-of-memory
    error stays as it is), and keeps orbax's per-file warnings about damaged files off the console."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    silence_closed_loop_callbacks()  # orbax may swallow a failed read itself (e.g. of the metadata)
    try:
        yield
    except DamagedWeightsError:
        raise
    except Exception as e:  # noqa: BLE001  orbax and tensorstore raise many types for damaged files
        if out_of_memory(e):
            raise
        silence_closed_loop_callbacks(wait=True)
        raise DamagedWeightsError(f"{os.path.join(os.fspath(weights_dir), PARAMS_DIR)} is damaged or incomplete "
                                  f"({first_line(e)}); {REMAKE}") from None
    finally:
        absl.setLevel(level)


def nonfinite_leaves(params: Any) -> list[str]:
    """Paths ('transformer/blocks_0/attn/q/kernel') of the floating-point leaves holding NaN or Inf."""
    is_float = lambda x: getattr(x, "dtype", None) is not None and jnp.issubdtype(x.dtype, jnp.inexact)
    flat = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0] if is_float(x)]
    flags = jax.device_get([all_finite(x) for _, x in flat])  # one reduction per leaf, one fetch
    return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p) for (p, _), ok in zip(flat, flags)
            if not ok]


def all_finite(x):
    """Whether `x` holds no NaN / Inf: numpy for host memory (no compilation), else one reduction on device."""
    on_host = isinstance(x, np.ndarray) or (x.is_fully_addressable and all(d.platform == "cpu" for d in x.devices()))
    return np.isfinite(np.asarray(x)).all() if on_host else _device_all_finite(x)


@jax.jit
def _device_all_finite(x):
    return jnp.isfinite(x).all()


def first_line(e: BaseException, limit: int = 200) -> str:
    """'Type: first line of the message', cut to `limit` characters (library messages can span pages)."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)


def _no_unretrieved_tensorstore_error(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message.startswith(("Task exception was never retrieved", "Future exception was never retrieved"))
                and "tensorstore_spec" in message)


def silence_closed_loop_callbacks(wait: bool = False) -> None:
    """After a failed orbax restore, tensorstore reads still in flight call back into orbax's closed event
    loop, and Python prints each 'RuntimeError: Event loop is closed' as an ignored exception with its
    traceback (and asyncio logs their read errors as never retrieved); this drops exactly those (every
    other ignored exception and log record still gets through). wait: give those reads a moment to
    finish, so that their callbacks do not land in the interpreter's shutdown (where no hook applies)
    when the process exits right after the error."""
    logging.getLogger("asyncio").addFilter(_no_unretrieved_tensorstore_error)
    previous = sys.unraisablehook
    if not getattr(previous, "drops_closed_loop_callbacks", False):
        def hook(unraisable):
            e = unraisable.exc_value
            if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
                previous(unraisable)

        hook.drops_closed_loop_callbacks = True
        sys.unraisablehook = hook
    if wait:
        time.sleep(0.2)
