"""The MaskGIT transformer task: the ported MaskTransformer trained with the MaskGIT objective.

Each image is tokenized once, before training, by the frozen VQGAN of `tokenizer`; a mask ratio arccos(r) / (pi/2), r ~ U(0,1),
is drawn per image (the arccos sampling schedule) and each code is masked with that probability; the
class token is replaced by the dropped-class token with probability `label_drop` (0.1, for
classifier-free guidance). Loss: cross-entropy over the codebook at the masked positions, with label
smoothing (objective `label_smoothing`, 0.1), averaged over all masked positions of the batch.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.images import make_grid, minmax_uint8, save_png, unit_range
from migm_jax.models.maskgit import MaskTransformer, MaskTransformerConfig
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.pretrain.images import ImageSource, dataset_meta
from migm_jax.pretrain.masking import arccos_mask, masked_cross_entropy
from migm_jax.pretrain.task import PretrainTask, shared
from migm_jax.sampling.maskgit import MaskGITModels, build_sampler, trajectory_sampling
from migm_jax.training.config import ConfigError
from migm_jax.weights import as_float32, cast_floating, load_weights, save_weights

DEFAULTS = {"label_drop": 0.1, "label_smoothing": 0.1}


class TransformerTask(PretrainTask):
    def __init__(self, cfg, mesh, workdir=None):
        super().__init__(cfg, mesh, workdir)
        family, configs, params = load_weights(cfg.tokenizer)
        if "vqgan" not in configs:
            raise ConfigError(f"tokenizer {cfg.tokenizer} holds no VQGAN ({', '.join(configs)}); "
                              "export a vqgan run: train.py --config configs/fashion_vqgan.py --workdir W --export")
        self.vcfg = VQGANConfig.from_dict(configs["vqgan"])
        try:
            self.tcfg = MaskTransformerConfig(**cfg.model)
            self.sampling = trajectory_sampling(cfg.sampling)
            self.sampling.validate()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model/sampling: {e}") from None
        grid = self.vcfg.resolution // self.vcfg.downsample_factor
        if self.tcfg.codebook_size != self.vcfg.n_embed or self.tcfg.grid != grid:
            raise ConfigError(f"model codebook_size {self.tcfg.codebook_size} / grid {self.tcfg.grid} do not fit the "
                              f"tokenizer (n_embed {self.vcfg.n_embed}, grid {grid})")
        self.obj = {**DEFAULTS, **cfg.objective}
        if set(self.obj) - set(DEFAULTS):
            raise ConfigError(f"objective: unknown keys {sorted(set(self.obj) - set(DEFAULTS))} (known: {sorted(DEFAULTS)})")
        self.vq_params = as_float32(params["vqgan"])
        # cuDNN's fused attention trains only at some sequence lengths (not T = 257): pad to a multiple of 64
        pad = 64 if cfg.attention_impl == "cudnn" else 1
        self.module = MaskTransformer(self.tcfg, jnp.dtype(cfg.compute_dtype), cfg.attention_impl, seq_multiple=pad)
        self.vq = VQGAN(self.vcfg, jnp.dtype(cfg.teacher_dtype))

    @functools.cached_property
    def source(self) -> ImageSource:
        """Batches of codes: the images tokenized once by the frozen VQGAN."""
        encode = shared(self, "encode", lambda: jax.jit(
            lambda p, x: self.vq.apply({"params": p}, unit_range(x), method=VQGAN.encode)))
        return ImageSource(self.cfg, self.mesh,
                           lambda records: {"code": encode(self.vq_params, records["image"]), "label": records["label"]})

    def init_params(self, key):
        g = self.tcfg.grid
        codes, labels = jnp.zeros((1, g, g), jnp.int32), jnp.zeros((1,), jnp.int32)
        return MaskTransformer(self.tcfg).init(key, codes, labels, labels > 0)["params"]

    def _loss(self, params, batch, key, label_drop: float):
        codes = batch["code"]
        b = codes.shape[0]
        flat = codes.reshape(b, -1)
        k_mask, k_drop = jax.random.split(key)
        mask = arccos_mask(k_mask, flat.shape)
        drop = jax.random.uniform(k_drop, (b,)) < label_drop
        masked = jnp.where(mask, self.tcfg.mask_id, flat).reshape(codes.shape)
        logits, _ = self.module.apply({"params": params}, masked, batch["label"], drop)
        loss, acc = masked_cross_entropy(logits, flat, mask, self.obj["label_smoothing"])
        return loss, {"loss": loss, "masked_acc": acc, "mask_ratio": jnp.mean(mask.astype(jnp.float32))}

    def loss(self, params, batch, key):
        loss, metrics = self._loss(params, batch, key, self.obj["label_drop"])
        return loss, (metrics, None)

    def eval_metrics(self, params, batch):
        """The same loss with a fixed masking key and no label drop (comparable across validations)."""
        return self._loss(params, batch, jax.random.PRNGKey(self.cfg.seed + 5), 0.0)[1]

    @functools.cached_property
    def _sampler(self):
        return build_sampler(MaskGITModels(self.tcfg, None, self.vcfg, self.cfg.compute_dtype), self.sampling)

    def preview(self, state, path):
        """Two images per class (a column each), vanilla sampler of cfg.sampling, fixed key."""
        labels = jnp.asarray(np.tile(np.arange(self.tcfg.nclass), 2), jnp.int32)
        out = self._sampler({"transformer": state.ema, "vqgan": self.vq_params}, labels, jax.random.PRNGKey(self.cfg.seed + 4))
        save_png(make_grid(minmax_uint8(np.asarray(out["images"])), nrow=self.tcfg.nclass), path)
        return path

    def export(self, state, out_dir):
        """<out_dir>/weights: transformer + the tokenizer's VQGAN (+ the class names), a MaskGIT weights dir."""
        weights = os.path.join(out_dir, "weights")
        configs = {"transformer": self.tcfg.to_dict(), "vqgan": self.vcfg.to_dict(),
                   "classes": {"names": list(dataset_meta(self.cfg)["class_names"])}}
        params = {"transformer": jax.device_get(state.ema), "vqgan": self.vq_params}
        save_weights(weights, "maskgit", configs, cast_floating(params, self.cfg.export_dtype))
        return {"weights": weights}
