"""The feature classifier of the demos' quality metric (`migm_jax.eval`): a small CNN over a dataset's classes
(shapes, or emoji identities for the text-to-image demo), trained by the `classifier` task (`migm_jax.pretrain`).

Its penultimate feature (after global average pooling) is the space in which FID is computed (the
role Inception-v3's pool feature plays on ImageNet); its logits give the class (or prompt) accuracy of samples.
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from migm_jax.images import unit_range
from migm_jax.weights import CONFIG_FILE, load_weights, read_config

FAMILY = "classifier"  # the family name of a classifier weights directory


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """widths: channels of each stage (two 3x3 convs, then 2x2 average pooling between stages)."""

    nclass: int = 10
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128
    resolution: int = 64

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        return cls(**{**d, "widths": tuple(d["widths"])})


class FeatureClassifier(nn.Module):
    """apply({'params': p}, images (b,H,W,3) uint8 or float in [-1,1]) -> (logits (b,nclass), feature (b,feature_dim)),
    both float32. GroupNorm (no batch statistics), so an image's output does not depend on its batch."""

    cfg: ClassifierConfig

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = unit_range(images) if images.dtype == jnp.uint8 else images.astype(jnp.float32)
        for i, width in enumerate(self.cfg.widths):
            if i:
                x = nn.avg_pool(x, (2, 2), (2, 2))
            for j in range(2):
                x = nn.Conv(width, (3, 3), name=f"conv_{i}_{j}")(x)
                x = nn.swish(nn.GroupNorm(num_groups=min(8, width), name=f"norm_{i}_{j}")(x))
        feature = nn.Dense(self.cfg.feature_dim, name="feature")(jnp.mean(x, axis=(1, 2)))
        feature = nn.swish(feature)
        return nn.Dense(self.cfg.nclass, name="logits")(feature), feature


def classifier_config(weights_dir: str) -> ClassifierConfig:
    """The config of a classifier weights directory (family 'classifier'), its params unread; one-line errors otherwise."""
    if not os.path.isfile(os.path.join(weights_dir, CONFIG_FILE)):
        raise FileNotFoundError(f"no classifier weights at {weights_dir} ({CONFIG_FILE} missing)")
    family, configs = read_config(weights_dir)
    if family != FAMILY:
        raise ValueError(f"{weights_dir} holds {family} weights, not a feature classifier (family '{FAMILY}')")
    return ClassifierConfig.from_dict(configs["classifier"])


def load_classifier(weights_dir: str) -> tuple[ClassifierConfig, dict]:
    """(config, params) of a classifier weights directory (family 'classifier'); one-line errors otherwise."""
    cfg = classifier_config(weights_dir)
    return cfg, load_weights(weights_dir)[2]["classifier"]


def class_names(weights_dir: str) -> list[str]:
    """The class names a classifier weights directory was trained on (logit i = class i); ValueError when its
    export recorded none."""
    names = read_config(weights_dir)[1].get("classes", {}).get("names")
    if names is None:
        raise ValueError(f"{weights_dir} records no class names (configs 'classes'); re-export it with train.py --export")
    return list(names)
