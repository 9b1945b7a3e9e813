"""The metric networks, i.e. the two feature spaces an evaluation can judge images in: a feature classifier
(`migm_jax.models.classifier`, the demos') and the FID Inception-v3.

A `FeatureNet` is a hashable description of the network (so compiled programs can be cached on it); an
`Extractor` pairs it with its params. Each net says how decoded images become uint8 (`to_uint8`), how uint8
images become its input (`prepare`), what it computes (`apply`: the features FID is taken on plus one value
per image) and what those per-image values add up to (`finish`: accuracy, or the Inception Score).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.eval.inception import load_inception
from migm_jax.eval.inception_net import POOL_FEATURES, InceptionV3
from migm_jax.eval.inception_preprocess import check_flavor, preprocess
from migm_jax.eval.inception_score import inception_score
from migm_jax.images import clip_uint8, minmax_uint8
from migm_jax.models.classifier import ClassifierConfig, FeatureClassifier, load_classifier

IS_SPLITS = 10  # torch-fidelity's default; fewer when there are fewer images


class FeatureNet(Protocol):
    feature_dim: int
    image_conversion: str  # what `to_uint8` does, as results record it

    def to_uint8(self, images: jax.Array) -> jax.Array:
        """decoded images (b, H, W, 3) float in ~[-1, 1] -> uint8 (traceable)."""

    def prepare(self, images: jax.Array) -> jax.Array:
        """uint8 images (b, H, W, 3) -> the network's input (traceable)."""

    def apply(self, params: Any, x: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(features (b, D) float32, per-image values (b, ...) float32) of prepared images (traceable)."""

    def finish(self, per_image: np.ndarray) -> dict:
        """The row's metrics from the per-image values of all n images (n, ...)."""


@dataclasses.dataclass(frozen=True)
class ClassifierNet:
    """A feature classifier: features = its penultimate layer, per image = 1.0 if it predicts the label."""

    cfg: ClassifierConfig
    image_conversion: str = clip_uint8.__name__

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def to_uint8(self, images):
        return clip_uint8(images)

    def prepare(self, images):
        return images  # the classifier takes uint8 itself

    def apply(self, params, x, labels):
        logits, features = FeatureClassifier(self.cfg).apply({"params": params}, x)
        return features, (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)

    def finish(self, per_image: np.ndarray) -> dict:
        return {"accuracy": float(np.mean(per_image))}


@dataclasses.dataclass(frozen=True)
class InceptionNet:
    """FID Inception-v3 with `flavor`'s preprocessing: features = the 2048-d pool, per image = the 1008 logits
    without the fc bias (what torch-fidelity's Inception Score is computed on)."""

    flavor: str
    image_conversion: str = minmax_uint8.__name__
    feature_dim: int = POOL_FEATURES

    def to_uint8(self, images):
        return minmax_uint8(images)

    def prepare(self, images):
        return preprocess(images, flavor=self.flavor)

    def apply(self, params, x, labels):
        pool, logits = InceptionV3().apply({"params": params}, x)
        return pool, logits - params["fc"]["bias"]

    def finish(self, per_image: np.ndarray) -> dict:
        mean, std = inception_score(per_image, splits=min(IS_SPLITS, len(per_image)))
        return {"is": mean, "is_std": std}


@dataclasses.dataclass(frozen=True)
class Extractor:
    net: FeatureNet
    params: Any


def classifier_extractor(weights_dir: str) -> Extractor:
    cfg, params = load_classifier(weights_dir)
    return Extractor(ClassifierNet(cfg), params)


def inception_extractor(path: str, flavor: str) -> Extractor:
    return Extractor(InceptionNet(check_flavor(flavor)), load_inception(path, flavor))
