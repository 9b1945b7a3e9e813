"""The feature-classifier task: the CNN of the quality metric (migm_jax.models.classifier) trained with
cross-entropy on the train images' class labels; validated by its accuracy on the held-out images.
model.nclass may be left out: it is then the dataset's class count (its meta's class_names)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import optax

from migm_jax.models.classifier import ClassifierConfig, FeatureClassifier
from migm_jax.pretrain.images import dataset_meta
from migm_jax.pretrain.task import PretrainTask
from migm_jax.training.config import ConfigError
from migm_jax.weights import cast_floating, save_weights


class ClassifierTask(PretrainTask):
    def __init__(self, cfg, mesh, workdir=None):
        super().__init__(cfg, mesh, workdir)
        names = dataset_meta(cfg).get("class_names")
        if not names and "nclass" not in cfg.model:
            raise ConfigError("set model.nclass: the dataset's meta lists no class_names to count")
        model = {"nclass": len(names or ()), **cfg.model}
        if names and model["nclass"] != len(names):
            raise ConfigError(f"model.nclass {model['nclass']} does not fit the dataset's {len(names)} classes; "
                              f"leave it out (then it is {len(names)})")
        try:
            self.ccfg = ClassifierConfig.from_dict(model)
        except (TypeError, KeyError) as e:
            raise ConfigError(f"model: {e}") from None
        if cfg.objective:
            raise ConfigError(f"objective: the classifier task has no settings, got {sorted(cfg.objective)}")
        self.module = FeatureClassifier(self.ccfg)

    def init_params(self, key):
        r = self.ccfg.resolution
        return self.module.init(key, jnp.zeros((1, r, r, 3), jnp.uint8))["params"]

    def _metrics(self, params, batch):
        logits, _ = self.module.apply({"params": params}, batch["image"])
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))
        return {"loss": loss, "accuracy": jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))}

    def loss(self, params, batch, key):
        metrics = self._metrics(params, batch)
        return metrics["loss"], (metrics, None)

    def eval_metrics(self, params, batch):
        return self._metrics(params, batch)

    def export(self, state, out_dir):
        """<out_dir>/weights: a 'classifier' weights dir (migm_jax.models.classifier.load_classifier reads it),
        with the dataset's class names (configs 'classes': {'names': [...]}, logit i = class i)."""
        weights = os.path.join(out_dir, "weights")
        configs = {"classifier": self.ccfg.to_dict(), "classes": {"names": list(dataset_meta(self.cfg)["class_names"])}}
        save_weights(weights, "classifier", configs,
                     cast_floating({"classifier": jax.device_get(state.ema)}, self.cfg.export_dtype))
        return {"weights": weights}
