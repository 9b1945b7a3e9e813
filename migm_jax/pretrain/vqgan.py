"""The VQGAN tokenizer task: the ported taming VQGAN trained as an autoencoder with a vector quantizer.

Loss (objective keys, defaults): l1 * |x - x_hat| + l2 * (x - x_hat)^2 + vq * (codebook + 0.25
commitment loss, taming's legacy placement), means over pixels. No discriminator, no perceptual loss.
Dead codes are restarted: every `restart_every` updates before `restart_until`, each code that no
position of the batch chose is set to a random encoder output of that batch (params and EMA alike),
which keeps the whole codebook in use. Reported: PSNR, code usage (fraction of the codebook chosen
by the validation images) and code perplexity.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.images import clip_uint8, make_grid, save_png, unit_range
from migm_jax.models.vqgan import VQGAN, VQGANConfig
from migm_jax.pretrain.task import PretrainTask
from migm_jax.training.config import ConfigError
from migm_jax.weights import cast_floating, save_weights

DEFAULTS = {"l1": 1.0, "l2": 1.0, "vq": 1.0, "restart_every": 20, "restart_until": 2000}


def reconstruct(vq: VQGAN, x: jax.Array):
    """x (b,H,W,3) in [-1,1] -> (x_hat (b,H,W,3) float32, z_e (b,h,w,e) float32, codes (b,h,w), vq loss)."""
    z_e = vq.quant_conv(vq.encoder(x)).astype(jnp.float32)
    z_q, vq_loss, codes = vq.quantize(z_e)
    x_hat = vq.decoder(vq.post_quant_conv(z_q.astype(vq.dtype))).astype(jnp.float32)
    return x_hat, z_e, codes, vq_loss


def psnr(mse: jax.Array) -> jax.Array:
    """PSNR in dB of a mean squared error on [-1,1] images (peak-to-peak 2)."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))


class VQGANTask(PretrainTask):
    def __init__(self, cfg, mesh):
        super().__init__(cfg, mesh)
        try:
            self.vcfg = VQGANConfig.from_dict(cfg.model)
        except (TypeError, KeyError) as e:
            raise ConfigError(f"model: {e}") from None
        self.obj = {**DEFAULTS, **cfg.objective}
        if set(self.obj) - set(DEFAULTS):
            raise ConfigError(f"objective: unknown keys {sorted(set(self.obj) - set(DEFAULTS))} (known: {sorted(DEFAULTS)})")
        self.module = VQGAN(self.vcfg, jnp.dtype(cfg.compute_dtype))

    def init_params(self, key):
        r = self.vcfg.resolution
        return VQGAN(self.vcfg).init(key, jnp.zeros((1, r, r, 3)))["params"]

    def _forward(self, params, batch):
        x = unit_range(batch["image"])
        x_hat, z_e, codes, vq_loss = self.module.apply({"params": params}, x, method=reconstruct)
        l1, l2 = jnp.mean(jnp.abs(x - x_hat)), jnp.mean((x - x_hat) ** 2)
        loss = self.obj["l1"] * l1 + self.obj["l2"] * l2 + self.obj["vq"] * vq_loss
        counts = jnp.bincount(codes.ravel(), length=self.vcfg.n_embed)
        metrics = {"loss": loss, "l1": l1, "psnr": psnr(l2), "vq_loss": vq_loss,
                   "usage": jnp.mean((counts > 0).astype(jnp.float32))}
        return loss, metrics, (z_e, counts)

    def loss(self, params, batch, key):
        loss, metrics, aux = self._forward(params, batch)
        return loss, (metrics, aux)

    def after_update(self, state, aux, key):
        """Dead-code restart (see the module docstring); `state.step` counts the updates done."""
        z_e, counts = aux
        flat = z_e.reshape(-1, z_e.shape[-1])
        picks = jax.random.randint(key, (self.vcfg.n_embed,), 0, flat.shape[0])
        due = (state.step % self.obj["restart_every"] == 0) & (state.step <= self.obj["restart_until"])
        restart = due & (counts == 0)

        def restarted(params):
            emb = jnp.where(restart[:, None], flat[picks], params["quantize"]["embedding"])
            return {**params, "quantize": {**params["quantize"], "embedding": emb}}

        return state.replace(params=restarted(state.params), ema=restarted(state.ema))

    def eval_metrics(self, params, batch):
        _, metrics, (_, counts) = self._forward(params, batch)
        return {**{k: v for k, v in metrics.items() if k != "usage"}, "code_counts": counts}

    def summarize(self, sums):
        """Codebook usage and perplexity over all validation images."""
        p = sums["code_counts"] / max(sums["code_counts"].sum(), 1)
        nz = p[p > 0]
        return {"usage": float(np.mean(sums["code_counts"] > 0)), "perplexity": float(np.exp(-np.sum(nz * np.log(nz))))}

    @functools.cached_property
    def _reconstruct(self):
        return jax.jit(lambda p, x: self.module.apply({"params": p}, unit_range(x), method=reconstruct)[0])

    def preview(self, state, path):
        """Row of validation images, then their reconstructions by the EMA model."""
        images = self.source.val_images(self.cfg.preview_images)["image"]
        x_hat = self._reconstruct(state.ema, images)
        save_png(make_grid(np.concatenate([images, clip_uint8(np.asarray(x_hat))]), nrow=len(images)), path)
        return path

    def export(self, state, out_dir):
        """<out_dir>/weights: a weights dir with the VQGAN alone (the tokenizer of a transformer run)."""
        weights = os.path.join(out_dir, "weights")
        save_weights(weights, "maskgit", {"vqgan": self.vcfg.to_dict()},
                     cast_floating({"vqgan": jax.device_get(state.ema)}, self.cfg.export_dtype))
        return {"weights": weights}
