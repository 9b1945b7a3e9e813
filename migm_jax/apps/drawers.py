"""The interactive page's `Drawer` of each model family: a weights directory loaded once with sample.py's own
loaders and checks (migm_jax.apps.maskgit / dimoo), its condition read from the page's text field."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

import numpy as np

from migm_jax.apps import dimoo, maskgit
from migm_jax.apps.compare import Drawer, Request, whole_number
from migm_jax.images import check_finite, minmax_uint8
from migm_jax.sampling.dimoo_prompts import load_tokenizer
from migm_jax.sampling.maskgit import check_labels
from migm_jax.sampling.schedules import step_kinds
from migm_jax.weights import TOKENIZER_DIR, load_weights, read_config

PROMPT_BUCKET = 16  # sequences are padded to a multiple of this many tokens: one compiled sampler serves many prompts


def default_budget(recommended: Optional[int], steps: int) -> int:
    """The page's initial budget: the weights' recommended one, else a quarter of the steps (at least 2)."""
    return recommended if recommended is not None else max(2, steps // 4)


class MaskGITDrawer(Drawer):
    """Class-conditional MaskGIT weights; the condition is a class id, a class name (the weights' 'classes'
    config) or an entry of `choices` ('3 cross')."""

    family, task = maskgit.FAMILY, "class to image"

    def __init__(self, weights: str, dtype: str, attention: Optional[str]):
        super().__init__()
        _, self.configs = read_config(weights)
        maskgit.require_transformer(weights, self.configs)
        maskgit.models_of(weights, maskgit.sampling_for("vanilla", {}, self.configs), [0])  # decoder, shapes
        models, self.params, _ = maskgit.load_pipeline(weights)
        self.weights, self.models = weights, dataclasses.replace(models, dtype=dtype, attention_impl=attention)
        self.nclass = models.transformer.nclass
        self.names = self.configs.get("classes", {}).get("names")
        self.choices = [f"{i} {self.names[i]}" if self.names else str(i) for i in range(self.nclass)]
        self.modes = (("shortcut",) if "shortcut" in self.configs else ()) + ("reuse", "fewer steps")
        used = maskgit.defaults(self.configs)
        self.defaults = {"steps": used["steps"], "budget": default_budget(used["budget"], used["steps"]),
                         "cfg": used["cfg"], "condition": self.choices[0]}

    def label(self, text) -> int:
        """The class id of the condition field: 'k', 'k name' (a choice) or a class name; ValueError (one line)."""
        text = str(text if text is not None else "").strip()
        if not text:
            raise ValueError(f"the class is empty; pick one of the {self.nclass} classes")
        if text in self.choices:
            return self.choices.index(text)
        if self.names and text in self.names:
            return self.names.index(text)
        if not re.fullmatch(r"[+-]?\d+", text):
            named = f" nor a class name ({', '.join(self.names[:5])}, ...)" if self.names else ""
            raise ValueError(f"class {text!r} is neither a whole-number class id (0..{self.nclass - 1}){named}")
        label = int(text)
        check_labels(np.asarray([label]), self.nclass)
        return label

    def sampling(self, mode: str, given: dict):
        return maskgit.sampling_for(mode, given, self.configs)

    def prepare(self, samplings: list, request: Request) -> np.ndarray:
        label = self.label(request.condition)
        for sampling in samplings:
            self.models.validate(sampling, decode=True)
        return np.asarray([label], np.int32)

    def sampler(self, sampling):
        return maskgit.build_sampler(self.models, sampling)

    def images(self, out: dict) -> np.ndarray:
        return minmax_uint8(check_finite(np.asarray(out["images"])))

    def kinds(self, sampling) -> np.ndarray:
        return step_kinds(sampling.mode, sampling.steps, sampling.budget)


class DiMOODrawer(Drawer):
    """Text-to-image (Lumina-DiMOO family) weights; the condition is a prompt in the tokenizer's vocabulary,
    the image size comes from the request."""

    family, task = dimoo.FAMILY, "text to image"

    def __init__(self, weights: str, dtype: str, attention: Optional[str]):
        super().__init__()
        _, self.configs = read_config(weights)
        self.weights = weights
        self.models = dimoo.models_of(weights, self.configs, dtype=dtype, attention_impl=attention)
        self.tokenizer = load_tokenizer(os.path.join(weights, TOKENIZER_DIR))
        _, _, params = load_weights(weights)
        self.params = self.models.prepare_params(params)
        self.modes = (("shortcut",) if "shortcut" in self.configs else ()) + ("reuse", "fewer steps", "cache")
        used = dimoo.defaults(self.configs)
        self.examples = list(used["prompts"] or [])
        self.defaults = {"steps": used["steps"], "budget": default_budget(used["budget"], used["steps"]),
                         "cfg": used["cfg"], "condition": self.examples[0] if self.examples else "",
                         "height": used["height"], "width": used["width"]}

    def sampling(self, mode: str, given: dict):
        return dimoo.sampling_for(mode, given, self.configs)

    def prepare(self, samplings: list, request: Request):
        height = whole_number(request.height, "height", 1)
        width = whole_number(request.width, "width", 1)
        dimoo.check_samplings(self.weights, self.configs, self.models, samplings, height, width)
        prompt = str(request.condition if request.condition is not None else "")
        if not prompt.strip():
            raise ValueError("the prompt is empty; type one" + (f", e.g. {self.examples[0]!r}" if self.examples else ""))
        batch = dimoo.prompt_batch(self.weights, self.tokenizer, self.models, [prompt], height, width)
        return batch.with_width_multiple(PROMPT_BUCKET)

    def sampler(self, sampling):
        return dimoo.build_sampler(self.models, sampling, decode=True)

    def images(self, out: dict) -> np.ndarray:
        return np.asarray(out["images"])

    def kinds(self, sampling) -> np.ndarray:
        return sampling.kinds()


DRAWERS = {MaskGITDrawer.family: MaskGITDrawer, DiMOODrawer.family: DiMOODrawer}


def open_drawer(weights: str, dtype: str, attention: Optional[str]) -> Drawer:
    """The `Drawer` of the weights dir `weights` by its family; one-line error for another family or a
    directory that is not a weights dir."""
    family, _ = read_config(weights)
    if family not in DRAWERS:
        raise ValueError(f"{weights} holds {family!r} weights; the page draws {' or '.join(DRAWERS)} weights")
    return DRAWERS[family](weights, dtype, attention)
