"""Training configuration: a frozen dataclass, Python config files, `--set key=value` overrides.

A config file is a Python file defining `get_config() -> TrainConfig`. Overrides name a field
(`lr=3e-4`) or a key inside a dict field (`teacher.hidden=64`); values are Python literals, anything
that is not a literal is taken as a string. Every problem raises ConfigError with a one-line message.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import math
import os
from typing import Any, Optional, Sequence

FAMILIES = ("maskgit", "dimoo")
# What a run trains: the shortcut of a base model (default), or one of the base models themselves
# from scratch on an image dataset (migm_jax.pretrain): per family its image tokenizer and its masked
# base model (MaskGIT: vqgan, transformer; DiMOO: vqmodel, text_to_image), and the feature classifier of
# the quality metric (either family).
TASKS = ("shortcut", "vqgan", "transformer", "vqmodel", "text_to_image", "classifier")
TASK_FAMILIES = {"vqgan": ("maskgit",), "transformer": ("maskgit",), "vqmodel": ("dimoo",),
                 "text_to_image": ("dimoo",), "classifier": FAMILIES}


class ConfigError(ValueError):
    """A config file, override or workdir that cannot be used."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Defaults are the original MaskGIT recipe (README command)."""

    family: str = "maskgit"
    task: str = "shortcut"
    # Base-model tasks: `model` = the module config's fields (VQGANConfig, VQModelConfig, MaskTransformerConfig,
    # LLaDAConfig, ClassifierConfig); `objective` = the task's loss settings (see migm_jax/pretrain/<task>.py);
    # tokenizer = weights dir of a trained VQ model (transformer: a VQGAN, text_to_image: a VQModel; it
    # encodes the images once and decodes previews).
    model: dict = dataclasses.field(default_factory=dict)
    objective: dict = dataclasses.field(default_factory=dict)
    tokenizer: Optional[str] = None
    # Models. teacher_weights: a weights dir (convert_weights.py); None = randomly initialised teacher
    # built from `teacher` (module config fields). `shortcut`: shortcut module config fields (its
    # feature width is taken from the teacher). init_shortcut: weights dir whose shortcut starts training.
    teacher_weights: Optional[str] = None
    teacher: dict = dataclasses.field(default_factory=dict)
    shortcut: dict = dataclasses.field(default_factory=dict)  # {} = the released shortcut's settings
    init_shortcut: Optional[str] = None
    sampling: dict = dataclasses.field(default_factory=dict)  # sampler settings of the trajectories (steps, cfg_w, ...)
    compute_dtype: str = "bfloat16"  # shortcut compute; params stay float32
    teacher_dtype: str = "bfloat16"  # teacher compute (online trajectories, rollout targets)
    attention_impl: Optional[str] = None  # None: exact XLA attention; 'cudnn' (GPU flash) | 'xla'
    # Data. data_dir: TFDS trajectories written by `python -m migm_jax.training.makedata`; None = online.
    # Base-model tasks: an image dataset written by `python -m migm_jax.data`; None = shapes rendered in memory.
    data_dir: Optional[str] = None
    train_split: str = "train"
    val_split: str = "val"
    online_images: int = 8  # images per online pool (2 trajectories each: cond, uncond)
    online_reuse: int = 4  # micro-batches drawn from one pool before the teacher makes the next
    val_images: int = 4  # online mode: images of the fixed validation pool
    val_batches: int = 8  # disk mode: validation batches (from the start of the val split)
    render_images: int = 50_000  # base-model tasks without data_dir: synthetic train images rendered into memory
    # Optimisation (original: AdamW 1e-4, wd 1e-2, EMA 0.9999, global batch 4, step decay at 1000).
    batch_size: int = 4  # global samples per micro-batch
    accum_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-2
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    step_decay: bool = True
    decay_at: int = 1000
    decay_gamma: float = 0.1
    warmup_steps: int = 0  # linear learning-rate warm-up over the first updates
    ema_decay: float = 0.9999
    mse_weight: float = 1.0
    kl_weight: float = 0.0
    temperature: float = 1.0
    log_kl: bool = True  # compute the KL terms for logging even when kl_weight == 0 (as the original)
    max_rollout_step: int = 1
    rollout_switch_interval: int = 1000
    total_steps: int = 100_000
    seed: int = 42
    # Devices, checkpoints, logging.
    mesh_fsdp: int = 1  # params, optimizer state and teacher sharded over this many devices
    ckpt_every: int = 1000
    keep_ckpts: int = 3
    async_ckpt: bool = True
    val_every: int = 0  # 0: no validation during training
    # At each validation: a PNG grid <workdir>/samples/step_<N>.png, one row per mode (vanilla, then the
    # EMA shortcut at each budget) of preview_images images; needs a VQ decoder in the teacher weights.
    preview_budgets: tuple = ()
    preview_images: int = 4
    export_dtype: str = "float32"  # floating params of an export are stored in this dtype (bfloat16: half the size)

    def validate(self) -> None:
        """Raises ConfigError for values that cannot work."""
        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)

        need(self.family in FAMILIES, f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        need(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "shortcut":
            need(self.teacher_weights is not None or bool(self.teacher),
                 "set teacher_weights (a converted weights dir) or teacher (a random teacher's module config)")
        else:
            families = TASK_FAMILIES[self.task]
            need(self.family in families, f"task {self.task} trains a model of family {' or '.join(families)}, "
                                          f"got family {self.family!r}")
            need(bool(self.model), f"task {self.task} needs model (the module config's fields)")
        need(self.task != "transformer" or self.tokenizer is not None,
             "task transformer needs tokenizer (the weights dir of a trained VQGAN: train.py --export of a vqgan run)")
        need(self.task != "text_to_image" or self.tokenizer is not None,
             "task text_to_image needs tokenizer (the weights dir of a trained VQModel: train.py --export of a "
             "vqmodel run)")
        need(self.task != "text_to_image" or self.data_dir is not None,
             "task text_to_image needs data_dir (an image dataset with captions, e.g. python -m migm_jax.data emoji)")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.render_images >= 1, f"render_images must be >= 1, got {self.render_images}")
        for name in ("batch_size", "accum_steps", "online_images", "online_reuse", "val_images", "val_batches",
                     "max_rollout_step", "rollout_switch_interval", "total_steps", "mesh_fsdp", "ckpt_every", "keep_ckpts"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.val_every >= 0, f"val_every must be >= 0, got {self.val_every}")
        need(self.preview_images >= 1, f"preview_images must be >= 1, got {self.preview_images}")
        need(all(isinstance(b, int) and b >= 2 for b in self.preview_budgets),
             f"preview_budgets must be budgets >= 2, got {self.preview_budgets}")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("lr", "weight_decay", "decay_gamma", "mse_weight", "kl_weight"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0,
                 f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(self.attention_impl in (None, "cudnn", "xla"), "attention_impl must be None, cudnn or xla")
        need(not (self.task == "shortcut" and self.family == "maskgit" and self.attention_impl == "cudnn"),
             "attention_impl 'cudnn' cannot train the MaskGIT shortcut: cuDNN's fused attention takes no gradient at "
             "its grid^2 + 1 tokens (never a multiple of 64); use attention_impl=None (exact) or 'xla'")
        for name in ("compute_dtype", "teacher_dtype", "export_dtype"):
            need(getattr(self, name) in ("float32", "bfloat16"), f"{name} must be float32 or bfloat16")
        for name in ("data_dir", "teacher_weights", "init_shortcut", "tokenizer"):
            path = getattr(self, name)
            need(path is None or os.path.isdir(path), f"{name}: no such directory: {path}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __hash__(self) -> int:  # dict fields: hash the JSON form (compiled programs are cached per config)
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def load_config(path: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """Runs the config file's `get_config()`, applies `key=value` overrides, validates."""
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a directory; give a Python file defining get_config()")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if not path.endswith(".py"):
        raise ConfigError(f"{path} is not a Python config file (a .py file defining get_config()); give one such "
                          "as configs/smoke.py")
    spec = importlib.util.spec_from_file_location(f"migm_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  a broken config file is a user error: report it on one line
        raise ConfigError(f"{path}: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"{path} defines no get_config() function")
    cfg = module.get_config()
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"{path}: get_config() returned {type(cfg).__name__}, expected TrainConfig")
    cfg = apply_overrides(cfg, overrides)
    cfg.validate()
    return cfg


def parse_value(text: str) -> Any:
    """A Python literal if `text` is one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _typed(item: str, label: str, current: Any, value: Any) -> Any:
    """`value` checked against the type of the value it replaces (bools stay bools, numbers numbers)."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"--set {item}: {label} must be True or False")
    elif isinstance(current, (dict, tuple, list)) and not isinstance(value, type(current)):
        kinds = {dict: "a dict, e.g. {'hidden': 64}", tuple: "a tuple, e.g. (4, 8)", list: "a list, e.g. [4, 8]"}
        if not (isinstance(current, tuple) and isinstance(value, list)):
            raise ConfigError(f"--set {item}: {label} must be {kinds[type(current)]}, got {value!r}")
        value = tuple(value)
    elif isinstance(current, (int, float)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"--set {item}: {label} must be a number")
        if isinstance(current, int) and value != int(value):
            raise ConfigError(f"--set {item}: {label} must be an integer")
        value = type(current)(value)
    return value


def apply_overrides(cfg: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Returns `cfg` with `field=value` / `dictfield.key=value` overrides applied; a value replacing a
    bool or a number (a field, or a key already in the dict) must be one too."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        name, _, sub = key.strip().partition(".")
        if name not in fields:
            raise ConfigError(f"unknown config key {name!r} in --set {item}")
        value = parse_value(text)
        current = getattr(cfg, name)
        if sub:
            if not isinstance(current, dict):
                raise ConfigError(f"config key {name!r} is not a dict; use --set {name}=value")
            if sub in current:
                value = _typed(item, f"{name}.{sub}", current[sub], value)
            value = {**current, sub: value}
        else:
            value = _typed(item, name, current, value)
        cfg = dataclasses.replace(cfg, **{name: value})
    return cfg


# Fields a resumed run may change: how long it runs, how it saves, what it validates and logs. The
# checkpoint's config must match the current one in every other field (config_differences).
RESUME_MAY_CHANGE = frozenset({"total_steps", "ckpt_every", "keep_ckpts", "async_ckpt", "val_every", "val_batches",
                               "val_images", "val_split", "log_kl", "preview_budgets", "preview_images",
                               "export_dtype"})
_UNSET = object()


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """'field: saved X, now Y' for every field (dict fields: every key) in which the config `saved` with
    a checkpoint (TrainConfig.to_dict()) differs from `cfg`, except RESUME_MAY_CHANGE."""
    now = json.loads(json.dumps(cfg.to_dict()))  # the saved form: tuples as lists
    saved = json.loads(json.dumps(saved))
    show = lambda v: "unset" if v is _UNSET else repr(v)
    out = []
    for name in [*now, *sorted(set(saved) - set(now))]:  # field order, then fields this version lacks
        if name in RESUME_MAY_CHANGE:
            continue
        a, b = saved.get(name, _UNSET), now.get(name, _UNSET)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{name}.{k}: saved {show(a.get(k, _UNSET))}, now {show(b.get(k, _UNSET))}"
                    for k in sorted(set(a) | set(b)) if a.get(k, _UNSET) != b.get(k, _UNSET)]
        elif a != b:
            out.append(f"{name}: saved {show(a)}, now {show(b)}")
    return out
