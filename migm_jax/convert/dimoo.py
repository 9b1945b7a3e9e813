"""Lumina-DiMOO / LLaDA HF checkpoint (config.json + safetensors) and DiMOO shortcut `.pth` converters.

The backbone is read shard by shard: every key and shape is validated from the safetensors headers
before any tensor data is read, then each tensor is read in the checkpoint's own dtype (bf16 stays
bf16), transposed where PyTorch stores (out, in), optionally cast, and placed straight into its
sharding: each process reads from the files only the slices its own devices hold, and the host never
holds more than one tensor of the model.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from tqdm.auto import tqdm

from migm_jax.convert.state_dict import (CheckpointError, StateDict, check_shapes, count_indexed, shortcut_projections,
                                         shortcut_widths)
from migm_jax.convert.torch_file import load_torch_file
from migm_jax.files import read_json
from migm_jax.weights import all_finite, first_line
from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModelConfig
from migm_jax.sampling.dimoo_prompts import LAYOUT_TOKENS, TokenLayout, load_tokenizer

HF_PREFIX = "model.transformer."
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# tokenization*.py: a tokenizer with its own code (run only with trust_remote_code)
TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
                   "tokenization*.py")
_BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")

Path = tuple[str, ...]
Shardings = Union[Callable[[Path], Any], dict, None]


def llada_key_map(cfg: LLaDAConfig) -> dict[str, tuple[Path, bool]]:
    """HF key -> (Flax param path, transpose?) for every tensor of the backbone."""
    t = ("transformer",)
    m = {f"{HF_PREFIX}wte.weight": (t + ("wte", "embedding"), False),
         f"{HF_PREFIX}ln_f.weight": (t + ("ln_f", "scale"), False),
         f"{HF_PREFIX}ff_out.weight": (t + ("ff_out", "kernel"), True)}
    for i in range(cfg.n_layers):
        pre, blk = f"{HF_PREFIX}blocks.{i}.", t + (f"blocks_{i}",)
        for norm in ("attn_norm", "ff_norm"):
            m[f"{pre}{norm}.weight"] = (blk + (norm, "scale"), False)
        for lin in _BLOCK_LINEARS:
            m[f"{pre}{lin}.weight"] = (blk + (lin, "kernel"), True)
    return m


def llada_abstract_params(cfg: LLaDAConfig, param_dtype=jnp.float32) -> dict:
    """Param tree of jax.ShapeDtypeStruct for `cfg` (no memory allocated)."""
    ids = jnp.zeros((1, 2), jnp.int32)
    return jax.eval_shape(lambda: LLaDA(cfg, param_dtype=param_dtype).init(jax.random.PRNGKey(0), ids))["params"]


def _shard_files(model_dir: str) -> list[str]:
    index = os.path.join(model_dir, INDEX_FILE)
    if os.path.isfile(index):
        index_json = read_json(index, "download it again")
        weight_map = index_json.get("weight_map") if isinstance(index_json, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index} has no 'weight_map' of shard file names; download it again")
        return sorted(set(weight_map.values()))
    if os.path.isfile(os.path.join(model_dir, SINGLE_FILE)):
        return [SINGLE_FILE]
    raise FileNotFoundError(f"no {INDEX_FILE} or {SINGLE_FILE} in {model_dir}; is this a Lumina-DiMOO / LLaDA HF folder?")


def _tree_get(tree: Any, path: Path) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _tree_set(tree: dict, path: Path, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _validate(files: dict[str, dict[str, tuple]], key_map: dict, expected: dict, source: str) -> None:
    """Checks that the shards hold exactly the expected keys with the expected shapes; one error names all problems."""
    seen: dict[str, str] = {}
    dup = []
    for fname, shapes in files.items():
        for key in shapes:
            if key in seen:
                dup.append(f"{key} ({seen[key]}, {fname})")
            seen[key] = fname
    missing = sorted(set(key_map) - set(seen))
    unexpected = sorted(set(seen) - set(key_map))
    bad_shape = []
    for key, fname in sorted(seen.items()):
        if key in key_map:
            path, transpose = key_map[key]
            shape = tuple(files[fname][key])
            got = shape[::-1] if transpose else shape
            want = tuple(_tree_get(expected, path).shape)
            if got != want:
                bad_shape.append(f"{key}: {shape} != expected {want[::-1] if transpose else want}")
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", bad_shape), ("keys in several shards", dup)):
        if items:
            problems.append(f"{label} ({len(items)}): {', '.join(items[:20])}")
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match config.json; " + "; ".join(problems))


def llada_config(model_dir: str | os.PathLike) -> LLaDAConfig:
    """The LLaDAConfig of a Lumina-DiMOO / LLaDA HF folder, from its config.json alone (no weights read)."""
    model_dir = os.fspath(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"LLaDA checkpoint folder not found: {model_dir} (download Alpha-VLLM/Lumina-DiMOO first)")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"config.json missing in {model_dir}; is this a Lumina-DiMOO / LLaDA HF folder?")
    return LLaDAConfig.from_hf_config(read_json(config_path, "download it again"))


def tokenizer_files(model_dir: str) -> list[str]:
    """The tokenizer files of a model folder (the ones a weights directory keeps), sorted."""
    return sorted({f for pat in TOKENIZER_FILES for f in glob.glob(os.path.join(model_dir, pat))})


def tokenizer_file(model_dir: str) -> str:
    """The file that holds a folder's tokenizer vocabulary (for messages): tokenizer.json, else
    tokenizer_config.json, else the folder itself."""
    for name in ("tokenizer.json", "tokenizer_config.json", "added_tokens.json"):
        if os.path.isfile(os.path.join(model_dir, name)):
            return os.path.join(model_dir, name)
    return model_dir


def load_folder_tokenizer(model_dir: str, trust_remote_code: bool = False):
    """The tokenizer of a model folder as sample.py loads it from a weights directory: from a copy of its
    tokenizer files alone (the folder's config.json, a LLaDA one, is not the tokenizer's business)."""
    files = tokenizer_files(model_dir)
    if not files:
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json, tokenizer_config.json, ...) in {model_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy2(f, tmp)
        try:
            return load_tokenizer(tmp, trust_remote_code)
        except (OSError, ValueError) as e:
            hint = "" if trust_remote_code else "; if it ships its own code, allow it with --trust-remote-code"
            raise ValueError(f"the tokenizer in {model_dir} does not load ({first_line(e).replace(tmp, model_dir)})"
                             f"{hint}") from None


def dimoo_token_layout(model_dir: str | os.PathLike, codebook_size: Optional[int] = None, tokenizer=None,
                       trust_remote_code: bool = False) -> TokenLayout:
    """The token layout of a Lumina-DiMOO-style HF folder, read from the folder itself.

    Logit columns: config.json's embedding_size (the rows of wte and of the head; `llada` checks the
    checkpoint against it). Codebook: `codebook_size`, else num_vq_embeddings of vqvae/config.json. Special
    ids: the folder's tokenizer (`tokenizer`, else loaded from `model_dir`), see `TokenLayout.from_tokenizer`;
    the released folder gives `TokenLayout.real()`. A config.json mask_token_id must agree with the
    tokenizer's mask token. Raises ValueError / FileNotFoundError (one line, naming the file)."""
    model_dir = os.fspath(model_dir)
    cfg = llada_config(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    vq_config = os.path.join(model_dir, "vqvae", "config.json")
    if codebook_size is None:
        if not os.path.isfile(vq_config):
            raise FileNotFoundError(f"{vq_config} not found: the image codebook size comes from the VQ model config")
        codebook_size = VQModelConfig.from_diffusers_config(read_json(vq_config, "download it again")).num_vq_embeddings
    if not 0 < codebook_size < cfg.embedding_size:
        raise ValueError(f"{vq_config}: num_vq_embeddings {codebook_size} must be in 1..{cfg.embedding_size - 1}: "
                         f"the {cfg.embedding_size} logit columns of {config_path} hold the text ids, then the codes")
    if tokenizer is None:
        tokenizer = load_folder_tokenizer(model_dir, trust_remote_code)
    layout = TokenLayout.from_tokenizer(tokenizer, cfg.embedding_size, codebook_size, tokenizer_file(model_dir))
    hf = read_json(config_path, "download it again")
    mask_id = hf.get("mask_token_id") if isinstance(hf, dict) else None
    if mask_id is not None and mask_id != layout.mask:
        raise ValueError(f"{config_path}: mask_token_id {mask_id} differs from the tokenizer's "
                         f"{LAYOUT_TOKENS['mask']} id {layout.mask}")
    return layout


def llada(model_dir: str | os.PathLike, dtype: Optional[Any] = None,
          shardings: Shardings = None) -> tuple[LLaDAConfig, dict]:
    """Reads a Lumina-DiMOO / LLaDA HF folder -> (LLaDAConfig, params) for `LLaDA(cfg).apply({'params': params}, ...)`.

    model_dir: config.json plus `model.safetensors.index.json` + shards, or a single `model.safetensors`.
    dtype: cast every tensor to this dtype (None keeps the checkpoint's dtype, e.g. bf16).
    shardings: None (default device), a pytree shaped like params with a jax.sharding.Sharding per leaf,
    or a callable (param path tuple, e.g. ('transformer', 'blocks_0', 'q_proj', 'kernel')) -> Sharding.
    Raises FileNotFoundError for a missing folder/file, CheckpointError (naming every offending key) for
    missing/unexpected keys or wrong shapes, ValueError for an architecture this port does not implement.
    """
    model_dir = os.fspath(model_dir)
    cfg = llada_config(model_dir)
    fnames = _shard_files(model_dir)
    for fname in fnames:
        if not os.path.isfile(os.path.join(model_dir, fname)):
            raise FileNotFoundError(f"shard {fname} listed in {INDEX_FILE} is missing in {model_dir}")

    key_map = llada_key_map(cfg)
    headers = {}
    for fname in fnames:
        with open_safetensors(os.path.join(model_dir, fname)) as f:
            headers[fname] = {k: f.get_slice(k).get_shape() for k in f.keys()}
    _validate(headers, key_map, llada_abstract_params(cfg), model_dir)

    params: dict = {}
    finite: dict = {}  # (file, key) -> on-device flag, fetched once at the end
    for fname in tqdm(fnames, desc="LLaDA shards", unit="shard"):
        with open_safetensors(os.path.join(model_dir, fname)) as f:
            for key in headers[fname]:
                path, transpose = key_map[key]
                if shardings is None:
                    sharding = None
                elif callable(shardings):
                    sharding = shardings(path)
                else:
                    sharding = _tree_get(shardings, path)
                array = _place(f.get_slice(key), transpose, dtype, sharding)
                _tree_set(params, path, array)
                if jnp.issubdtype(array.dtype, jnp.inexact):
                    finite[(fname, key)] = all_finite(array)
    bad = [f"{key} ({fname})" for (fname, key), ok in zip(finite, jax.device_get(list(finite.values()))) if not ok]
    if bad:
        raise CheckpointError(f"{model_dir}: {len(bad)} tensor(s) hold NaN or infinite values: {', '.join(bad[:5])}; "
                              "the checkpoint is damaged, download it again")
    return cfg, params


def open_safetensors(path: str):
    """safe_open(path) with a one-line CheckpointError naming the file when it is damaged or cut off."""
    try:
        return safe_open(path, framework="numpy")
    except Exception as e:  # noqa: BLE001  SafetensorError is a bare Exception subclass
        if isinstance(e, OSError):
            raise
        raise CheckpointError(f"{path} is a damaged safetensors file ({e}); the download may be incomplete: "
                              "download it again") from None


def _place(tensor, transpose: bool, dtype: Optional[Any], sharding) -> jax.Array:
    """One safetensors tensor as a jax.Array: (transposed,) cast, and with a sharding built from the slices
    its addressable devices hold, so that each process reads only those bytes of the file."""
    shape = tuple(tensor.get_shape())
    shape = shape[::-1] if transpose else shape

    slices: dict = {}  # devices that hold the same slice (partial replication) share one read

    def read(index: tuple) -> np.ndarray:
        key = tuple((i.start, i.stop, i.step) for i in index)
        if key not in slices:
            arr = tensor[tuple(index)[::-1]].T if transpose else tensor[tuple(index)]
            slices[key] = np.ascontiguousarray(arr if dtype is None else arr.astype(dtype))
        return slices[key]

    whole = (slice(None),) * len(shape)
    if sharding is None:
        return jax.device_put(read(whole))
    return jax.make_array_from_callback(shape, sharding, read)


def shortcut_config_from_state_dict(tensors: dict, base: LLaDAConfig) -> DiMOOShortcutConfig:
    """Infers n_block, bottleneck ratio and embed_t from keys and shapes; the rest comes from `base`."""
    width, d_model = shortcut_widths(tensors, "blocks.0.cross_attn.attn_norm.weight", "DiMOO")
    if d_model != base.d_model:
        raise CheckpointError(f"shortcut expects features of width {d_model}, the backbone config has d_model {base.d_model}")
    if width % base.n_heads:
        raise CheckpointError(f"shortcut width {width} is not divisible by the backbone's n_heads {base.n_heads}")
    n_block = count_indexed(tensors, "blocks")
    return DiMOOShortcutConfig.from_llada(base, n_block=n_block, bottleneck_ratio=d_model / width,
                                          embed_t="adaLN_modulation.weight" in tensors)


def _llada_block(sd: StateDict, prefix: str) -> dict:
    p = {norm: sd.norm(f"{prefix}.{norm}", bias=False) for norm in ("attn_norm", "ff_norm")}
    p.update({lin: sd.linear(f"{prefix}.{lin}", bias=False) for lin in _BLOCK_LINEARS})
    return p


def shortcut_params(tensors: dict, cfg: DiMOOShortcutConfig, source: str) -> dict:
    """Maps the MDMShortcut state dict 1:1 to the Flax params tree and checks every key and shape."""
    sd = StateDict(tensors, source)
    p: dict[str, Any] = {"ln_f": sd.norm("ln_f", bias=False),
                         **shortcut_projections(sd, cfg.width != cfg.d_model, cfg.embed_t)}
    for i in range(cfg.n_block):
        p[f"blocks_{i}"] = {part: _llada_block(sd, f"blocks.{i}.{part}") for part in ("cross_attn", "self_attn")}
    sd.finish()
    feat = jnp.zeros((1, 2, cfg.d_model), jnp.float32)
    expected = jax.eval_shape(lambda: DiMOOShortcut(cfg).init(
        jax.random.PRNGKey(0), feat, feat, jnp.ones((1, 2), bool), jnp.ones((1,), jnp.float32)))["params"]
    check_shapes(p, expected, source, sd.origin_of)
    return p


def dimoo_shortcut(path: str | os.PathLike, base_cfg: LLaDAConfig) -> tuple[DiMOOShortcutConfig, dict]:
    """Reads a flat MDMShortcut state dict `.pth` (dimoo-shortcut.pth) -> (config, float32-as-stored params)."""
    tensors = load_torch_file(path)
    if not isinstance(tensors, dict) or not all(isinstance(v, np.ndarray) for v in tensors.values()):
        raise CheckpointError(f"{path}: expected a flat state dict of tensors")
    cfg = shortcut_config_from_state_dict(tensors, base_cfg)
    return cfg, shortcut_params(tensors, cfg, str(path))
