"""The two model families as the quality harness runs them: the weights' family decides the sampler, the
conditions the images are drawn from, and the real images they are judged against.

MaskGIT (class-conditional): image i has class i % nclass (the classifier's classes); its real counterpart is
image i of the 'test' split of --data (default data/fashion; the synthetic shapes, rendered on the fly, when
data is None), and the 'train' split gives the real-vs-real floor.
DiMOO (text-to-image): image i is drawn from caption i % n of a dataset split's n captions (in order of first
appearance, or the lines of a prompt file, each a caption of the split), all tokenized once with the weights'
tokenizer into one right-padded prompt batch (one compiled shape). Its label is the class of the caption's
records (the emoji id), and its real counterpart a record of that caption (the caption's records in turn), so
the real images are those of the same prompts, each as often as it is drawn. Images are made at the
classifier's resolution, which must be the dataset's.

A `Pipeline` holds a family's models with their params on the mesh and gives the run loop its programs: the
sampler of a configuration (codes only) and the image decoder (MaskGIT: the VQGAN's output in ~[-1, 1], made
uint8 by the metric network; DiMOO: uint8 as `codes_to_uint8` makes it, what sample.py saves).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from migm_jax.apps import dimoo as dimoo_app
from migm_jax.apps import maskgit as maskgit_app
from migm_jax.assets import DEMO_CLASSIFIER, DEMO_EMOJI_CLASSIFIER
from migm_jax.eval.plan import MODES, Configuration
from migm_jax.files import read_text_lines
from migm_jax.models.classifier import ClassifierConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.models.vqmodel import VQModel, VQModelConfig
from migm_jax.sampling import dimoo as dimoo_sampling
from migm_jax.sampling import maskgit as maskgit_sampling
from migm_jax.sampling.dimoo_image import codes_to_uint8
from migm_jax.sampling.dimoo_prompts import PromptBatch, build_sequences, check_size, load_tokenizer
from migm_jax.sharding import batch_sharding, replicated
from migm_jax.data import ImageReader, render_batch
from migm_jax.weights import TOKENIZER_DIR, load_weights


# The harness's one access to real images: these two functions.
@functools.lru_cache(maxsize=None)
def open_split(data_dir: str, split: str):
    """The reader of a dataset split (`len`, `read`), opened once."""
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data: no dataset at {data_dir}; build it first (python -m migm_jax.data ... --out {data_dir})")
    return ImageReader(data_dir, split)


def read_split(data_dir: str | None, split: str, indices=None) -> dict:
    """Records `indices` (default: all) of a dataset split: {"image": (n, R, R, 3) uint8, "label": (n,) int32
    [, "caption": (n,) str]}; without `data_dir`, images of the synthetic shapes rendered on the fly."""
    if data_dir is None:
        images, labels = render_batch(np.asarray(indices), split)
        return {"image": images, "label": labels}
    reader = open_split(data_dir, split)
    return reader.read(np.arange(len(reader)) if indices is None else np.asarray(indices))


@dataclasses.dataclass(frozen=True)
class Classes:
    """MaskGIT's conditions: image i has class i % nclass; real images from `data` (None: rendered shapes)."""

    nclass: int
    data: str | None = None

    def batch(self, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(sampler input, judged labels) of images start .. start + size - 1: both the (size,) int32 classes."""
        labels = np.arange(start, start + size, dtype=np.int32) % self.nclass
        return labels, labels

    def real_sets(self) -> list[tuple[str, Callable]]:
        """[(name, fn(start, size) -> (uint8 images, labels))]: the reference real images, then the floor's."""
        def records(split):
            def fn(start, size):
                r = read_split(self.data, split, np.arange(start, start + size))
                return r["image"], r["label"]
            return fn
        return [("test", records("test")), ("train", records("train"))]

    def describe(self) -> dict:
        return {"labels": "i % nclass", "nclass": self.nclass,
                "real_images": f"{self.data or 'synthetic shapes'} test split (train: the real-vs-real floor)"}


@dataclasses.dataclass(frozen=True, eq=False)
class Prompts:
    """DiMOO's conditions: image i is drawn from captions[i % n] (`sequences`: all n tokenized, (n, L) host
    arrays) and judged by labels[i % n]; its real counterpart is images[records[i % n][(i // n) % k]] for a
    caption with k records."""

    captions: tuple[str, ...]
    labels: np.ndarray  # (n,) int32
    sequences: PromptBatch
    images: np.ndarray  # (m, R, R, 3) uint8: the split's records
    records: tuple[np.ndarray, ...]  # per caption, the indices of its records

    def batch(self, start: int, size: int) -> tuple[PromptBatch, np.ndarray]:
        rows = np.arange(start, start + size) % len(self.captions)
        return jax.tree_util.tree_map(lambda a: a[rows], self.sequences), self.labels[rows]

    def real_sets(self) -> list[tuple[str, Callable]]:
        def fn(start, size):
            i, n = np.arange(start, start + size), len(self.captions)
            picks = [self.records[c][k % len(self.records[c])] for c, k in zip(i % n, i // n)]
            return self.images[picks], self.labels[i % n]
        return [("prompts", fn)]

    def describe(self) -> dict:
        return {"labels": "the class of caption i % n", "prompts": len(self.captions)}


def prompts_of(records: dict, prompt_file: str | None, where: str) -> tuple[tuple[str, ...], np.ndarray, tuple]:
    """(captions, their labels (n,) int32, their record indices) of a split's records: its captions in order of
    first appearance, or the lines of `prompt_file`, each one of them. One-line ValueError otherwise."""
    if "caption" not in records:
        raise ValueError(f"{where} holds no captions; a text-to-image evaluation needs a captioned dataset "
                         "(python -m migm_jax.data emoji)")
    by_caption: dict[str, list[int]] = {}
    for i, caption in enumerate(records["caption"]):
        if str(caption).strip():
            by_caption.setdefault(str(caption), []).append(i)
    captions = tuple(by_caption)
    if prompt_file:
        wanted = [line.strip() for line in read_text_lines(prompt_file, "--prompt-file") if line.strip()]
        unknown = [p for p in wanted if p not in by_caption]
        if not wanted or unknown:
            raise ValueError(f"--prompt-file {prompt_file}: " + (f"{unknown[0]!r} is no caption of {where} "
                             f"({len(unknown)} such line(s)); the FID needs each prompt's real images"
                             if unknown else "no prompt in it"))
        captions = tuple(dict.fromkeys(wanted))
    if not captions:
        raise ValueError(f"{where} holds no captions")
    labels = []
    for caption in captions:
        classes = np.unique(records["label"][by_caption[caption]])
        if len(classes) > 1:
            raise ValueError(f"{where}: the caption {caption!r} has records of classes {classes[0]} and {classes[1]}; "
                             "its prompt accuracy is undefined")
        labels.append(classes[0])
    return captions, np.asarray(labels, np.int32), tuple(np.asarray(by_caption[c]) for c in captions)


@dataclasses.dataclass(frozen=True, eq=False)
class Pipeline:
    """A family's models, their params replicated on `mesh`, and the conditions of its images."""

    models: object
    params: dict
    mesh: Mesh
    conditions: Classes | Prompts


class MaskGITPipeline(Pipeline):
    def sampler(self, c: Configuration):
        """jitted fn(params, labels (b,), keys (b, 2)) -> {'codes': (b, g, g), ...}."""
        return maskgit_sampling.build_sampler(self.models, c.sampling, decode=False, mesh=self.mesh)

    def decoder(self):
        return vqgan_decoder(self.models.vqgan, self.models.vqgan_dtype, self.mesh)

    @property
    def decoder_params(self) -> dict:
        return self.params["vqgan"]


class DiMOOPipeline(Pipeline):
    def sampler(self, c: Configuration):
        """jitted fn(params, prompts: PromptBatch (b, L), keys (b, 2)) -> {'codes': (b, gh, gw), ...}."""
        return dimoo_sampling.build_sampler(self.models, c.sampling, decode=False, mesh=self.mesh)

    def decoder(self):
        return vqmodel_decoder(self.models.vq, self.models.vq_dtype, self.mesh)

    @property
    def decoder_params(self) -> dict:
        return self.params["vq"]


@functools.lru_cache(maxsize=None)
def vqgan_decoder(vqgan: VQGANConfig, dtype: str, mesh: Mesh):
    """jitted fn(VQGAN params, codes (b, g, g)) -> (b, H, W, 3) float in ~[-1, 1], batch-sharded."""
    vq = VQGAN(vqgan, jnp.dtype(dtype))
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(lambda p, codes: vq.apply({"params": p}, codes, method=VQGAN.decode_code),
                   in_shardings=(rep, data), out_shardings=data)


@functools.lru_cache(maxsize=None)
def vqmodel_decoder(vq: VQModelConfig, dtype: str, mesh: Mesh):
    """jitted fn(VQModel params, codes (b, gh, gw)) -> (b, H, W, 3) uint8 (`codes_to_uint8`), batch-sharded."""
    model = VQModel(vq, jnp.dtype(dtype))
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(lambda p, codes: codes_to_uint8(model.apply({"params": p}, codes, method=VQModel.decode_code)),
                   in_shardings=(rep, data), out_shardings=data)


def no_shortcut(weights: str) -> ValueError:
    return ValueError(f"{weights} holds no shortcut; the evaluation compares the shortcut with the other samplers at "
                      "each budget: give weights with a shortcut (train.py --export of a shortcut, or "
                      "convert_weights.py --shortcut)")


def check_resolution(size: int, clf: ClassifierConfig) -> None:
    if size != clf.resolution:
        raise ValueError(f"the generator makes {size}px images, the classifier takes {clf.resolution}px")


def maskgit_setup(s, configs: dict, configurations: list[Configuration], clf: ClassifierConfig):
    """(models with the settings' dtype and attention, classes), after checking every configuration against the
    models (the schedule fits the grid, a shortcut and a VQGAN are there) and the classifier against them."""
    if "shortcut" not in configs:
        raise no_shortcut(s.weights)
    for c in configurations:
        maskgit_app.models_of(s.weights, c.sampling, [0])
    models = dataclasses.replace(maskgit_app.models_from_configs(configs), dtype=s.dtype, attention_impl=s.attention)
    check_resolution(models.transformer.grid * models.vqgan.downsample_factor, clf)  # the decoded images' side
    if clf.nclass > models.transformer.nclass:
        raise ValueError(f"the classifier has {clf.nclass} classes, the generator only {models.transformer.nclass}")
    needs = {"test": ("--reference-samples", s.reference_samples or s.num_samples), "train": ("--num-samples", s.num_samples)}
    for split, (flag, count) in needs.items() if s.data else ():
        if len(open_split(s.data, split)) < count:
            raise ValueError(f"--data {s.data} split {split} holds {len(open_split(s.data, split))} images, fewer "
                             f"than {flag} {count}")
    return models, Classes(clf.nclass, s.data)


def dimoo_setup(s, configs: dict, configurations: list[Configuration], clf: ClassifierConfig):
    """(models with the settings' dtype, attention and matmul, prompts), after checking every configuration against
    the models (steps for the image's tokens, shortcut, decoder), the dataset split and the tokenizer."""
    models = dimoo_app.models_of(s.weights, configs, dtype=s.dtype, attention_impl=s.attention, matmul=s.matmul)
    if models.shortcut is None:
        raise no_shortcut(s.weights)
    tokenizer_dir = os.path.join(s.weights, TOKENIZER_DIR)
    if not os.path.isdir(tokenizer_dir):
        raise ValueError(f"{s.weights} holds no {TOKENIZER_DIR}/ folder: the prompts need the weights' tokenizer")
    size = clf.resolution
    gh, gw = check_size(size, size, models.vq.scale_factor)
    if s.sampling.steps > gh * gw:
        raise ValueError(f"--steps {s.sampling.steps}: a {size}px image has {gh * gw} tokens; give at most {gh * gw} "
                         "steps (a step that fixes no token is a base-model call for nothing)")
    for c in configurations:
        models.validate(c.sampling, decode=True)
    where = f"--data {s.data} split {s.split}"
    records = read_split(s.data, s.split)
    if records["image"].shape[1:3] != (size, size):
        raise ValueError(f"{where} holds {records['image'].shape[2]}x{records['image'].shape[1]} images, the "
                         f"classifier takes {size}px")
    captions, labels, rows = prompts_of(records, s.prompt_file, where)
    if labels.max() >= clf.nclass:
        raise ValueError(f"{where} has class {labels.max()}, the classifier only {clf.nclass} classes")
    sequences = build_sequences(load_tokenizer(tokenizer_dir), list(captions), size, size, models.layout,
                                models.vq.scale_factor, models.llada.max_sequence_length)
    return models, Prompts(captions, labels, sequences, records["image"], rows)


def maskgit_load(s, models, conditions: Classes, mesh: Mesh) -> Pipeline:
    _, params, _ = maskgit_app.load_pipeline(s.weights)  # float32
    return MaskGITPipeline(models, jax.device_put(params, replicated(mesh)), mesh, conditions)


def dimoo_load(s, models, conditions: Prompts, mesh: Mesh) -> Pipeline:
    params = models.prepare_params(load_weights(s.weights)[2])  # as stored (LLaDA in bf16, as released)
    return DiMOOPipeline(models, jax.device_put(params, replicated(mesh)), mesh, conditions)


@dataclasses.dataclass(frozen=True)
class Family:
    """What the harness knows of a model family before any weights are read, and how it sets one up."""

    name: str
    sampling: type  # the sampler settings class
    default_steps: int  # N when neither the weights' sampling config nor the caller gives one
    modes: tuple[str, ...]
    flags: dict  # CLI option (argparse dest) -> sampler field
    dtype: str  # default compute dtype of the base model and the shortcut
    image_conversion: str  # how decoded images become the uint8 the classifier sees
    classifier: str  # default metric network
    data: str  # default dataset
    split: str | None  # default real split
    budgets: Callable[[int], tuple[int, ...]]  # default budgets for N steps
    setup: Callable  # (settings, configs, configurations, classifier config) -> (models, conditions)
    load: Callable  # (settings, models, conditions, mesh) -> Pipeline


FAMILIES = {
    "maskgit": Family(
        name="maskgit", sampling=maskgit_sampling.MaskGITSampling, default_steps=16,
        modes=("vanilla", "fewer_steps", "reuse", "shortcut"),
        flags={"cfg": "cfg_w", "sm_temp": "sm_temp", "r_temp": "r_temp"}, dtype="float32",
        image_conversion="clip_uint8", classifier=DEMO_CLASSIFIER, data=os.path.join("data", "fashion"), split=None,
        budgets=lambda n: (4, 6, 8), setup=maskgit_setup, load=maskgit_load),
    "dimoo": Family(
        name="dimoo", sampling=dimoo_sampling.DiMOOSampling, default_steps=dimoo_sampling.DiMOOSampling.steps,
        modes=MODES, flags={"cfg": "cfg_scale", "temperature": "temperature", "cache_ratio": "cache_ratio"},
        dtype="bfloat16",  # LLaDA computes in bfloat16 unless told otherwise, as the released 8B model does
        image_conversion="codes_to_uint8", classifier=DEMO_EMOJI_CLASSIFIER, data=os.path.join("data", "emoji"),
        split="train", budgets=lambda n: (n // 8, n // 4, n // 2), setup=dimoo_setup, load=dimoo_load),
}


def family_of(name: str, weights: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"{weights} holds {name} weights; the evaluation takes {' or '.join(FAMILIES)} weights")
    return FAMILIES[name]
