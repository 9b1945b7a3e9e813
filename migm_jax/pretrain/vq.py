"""The VQ tokenizer tasks: a VQ autoencoder trained on images, one task over two architectures.

  vqgan:   the ported taming VQGAN (MaskGIT's tokenizer), exported as a 'maskgit' weights dir {'vqgan'};
  vqmodel: the ported diffusers VQModel (Lumina-DiMOO's tokenizer), exported as a 'dimoo' weights dir {'vq'}.
An architecture adaptor gives `reconstruct` in the task's pixel space [-1, 1] (the VQModel's own is
[0, 1]) and says where its codebook is; the rest is shared.

Loss (objective keys, defaults): l1 * |x - x_hat| + l2 * (x - x_hat)^2 + vq * quantizer loss (codebook +
commitment with beta 0.25 in the legacy placement both originals use, `quantizer_loss`; straight-through
gradient to the encoder), means over pixels. No discriminator, no perceptual loss.
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
from migm_jax.models.vqgan import VQGAN, VQGANConfig, quantizer_loss
from migm_jax.models.vqmodel import VQModel, VQModelConfig
from migm_jax.pretrain.task import PretrainTask, shared
from migm_jax.training.config import ConfigError
from migm_jax.weights import cast_floating, save_weights

DEFAULTS = {"l1": 1.0, "l2": 1.0, "vq": 1.0, "restart_every": 20, "restart_until": 2000}


def reconstruct_vqgan(vq: VQGAN, x: jax.Array):
    """x (b,H,W,3) in [-1,1] -> (x_hat (b,H,W,3) float32, z_e (b,h,w,e) float32, codes (b,h,w), vq loss)."""
    z_e = vq.quant_conv(vq.encoder(x)).astype(jnp.float32)
    z_q, vq_loss, codes = vq.quantize(z_e)
    x_hat = vq.decoder(vq.post_quant_conv(z_q.astype(vq.dtype))).astype(jnp.float32)
    return x_hat, z_e, codes, vq_loss


def reconstruct_vqmodel(vq: VQModel, x: jax.Array):
    """`reconstruct_vqgan` for the diffusers VQModel, whose images are in [0, 1]: the same outputs, x and
    x_hat in [-1, 1]."""
    z_e = vq.encode_latents((x + 1.0) / 2.0)
    codes = vq.quantize.nearest(z_e)
    z_q = vq.quantize.lookup(codes)
    z_st = z_e + jax.lax.stop_gradient(z_q - z_e)
    x_hat = vq.decoder(vq.post_quant_conv(z_st.astype(vq.dtype)))
    return 2.0 * x_hat - 1.0, z_e, codes, quantizer_loss(z_e, z_q)


class VQGANArch:
    family, key, codebook = "maskgit", "vqgan", ("quantize", "embedding")
    reconstruct = staticmethod(reconstruct_vqgan)

    def __init__(self, model: dict):
        self.cfg = VQGANConfig.from_dict(model)
        self.n_codes = self.cfg.n_embed

    def module(self, dtype=jnp.float32) -> VQGAN:
        return VQGAN(self.cfg, dtype)

    def init(self, key: jax.Array) -> dict:
        r = self.cfg.resolution
        return self.module().init(key, jnp.zeros((1, r, r, 3)))["params"]


class VQModelArch:
    family, key, codebook = "dimoo", "vq", ("quantize", "embedding", "embedding")
    reconstruct = staticmethod(reconstruct_vqmodel)

    def __init__(self, model: dict):
        self.cfg = VQModelConfig.from_dict(model)
        self.n_codes = self.cfg.num_vq_embeddings

    def module(self, dtype=jnp.float32) -> VQModel:
        return VQModel(self.cfg, dtype)

    def init(self, key: jax.Array) -> dict:
        f = self.cfg.scale_factor  # the convs' params do not depend on the image size
        return self.module().init(key, jnp.zeros((1, f, f, 3)))["params"]


ARCHS = {"vqgan": VQGANArch, "vqmodel": VQModelArch}


def psnr(mse: jax.Array) -> jax.Array:
    """PSNR in dB of a mean squared error on [-1,1] images (peak-to-peak 2)."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))


def replace_at(tree: dict, path: tuple[str, ...], value) -> dict:
    """`tree` (nested dicts) with the leaf at `path` replaced, the rest shared."""
    if not path:
        return value
    return {**tree, path[0]: replace_at(tree[path[0]], path[1:], value)}


class VQTask(PretrainTask):
    def __init__(self, cfg, mesh, workdir=None):
        super().__init__(cfg, mesh, workdir)
        try:
            self.arch = ARCHS[cfg.task](cfg.model)
        except (TypeError, KeyError, ValueError) as e:
            raise ConfigError(f"model: {e}") from None
        self.obj = {**DEFAULTS, **cfg.objective}
        if set(self.obj) - set(DEFAULTS):
            raise ConfigError(f"objective: unknown keys {sorted(set(self.obj) - set(DEFAULTS))} (known: {sorted(DEFAULTS)})")
        self.module = self.arch.module(jnp.dtype(cfg.compute_dtype))

    def init_params(self, key):
        return self.arch.init(key)

    def _forward(self, params, batch):
        x = unit_range(batch["image"])
        x_hat, z_e, codes, vq_loss = self.module.apply({"params": params}, x, method=self.arch.reconstruct)
        l1, l2 = jnp.mean(jnp.abs(x - x_hat)), jnp.mean((x - x_hat) ** 2)
        loss = self.obj["l1"] * l1 + self.obj["l2"] * l2 + self.obj["vq"] * vq_loss
        counts = jnp.bincount(codes.ravel(), length=self.arch.n_codes)
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
        picks = jax.random.randint(key, (self.arch.n_codes,), 0, flat.shape[0])
        due = (state.step % self.obj["restart_every"] == 0) & (state.step <= self.obj["restart_until"])
        restart = due & (counts == 0)
        path = self.arch.codebook

        def restarted(params):
            codebook = functools.reduce(lambda tree, k: tree[k], path, params)
            return replace_at(params, path, jnp.where(restart[:, None], flat[picks], codebook))

        return state.replace(params=restarted(state.params), ema=restarted(state.ema))

    def eval_metrics(self, params, batch):
        _, metrics, (_, counts) = self._forward(params, batch)
        return {**{k: v for k, v in metrics.items() if k != "usage"}, "code_counts": counts}

    def summarize(self, sums):
        """Codebook usage and perplexity over all validation images."""
        p = sums["code_counts"] / max(sums["code_counts"].sum(), 1)
        nz = p[p > 0]
        return {"usage": float(np.mean(sums["code_counts"] > 0)), "perplexity": float(np.exp(-np.sum(nz * np.log(nz))))}

    @property
    def _reconstruct(self):
        """jit(params, uint8 images) -> reconstructions in [-1, 1], compiled once per equal task (a resumed run)."""
        return shared(self, "reconstruct", lambda: jax.jit(
            lambda p, x: self.module.apply({"params": p}, unit_range(x), method=self.arch.reconstruct)[0]))

    def preview(self, state, path):
        """Row of validation images, then their reconstructions by the EMA model."""
        images = self.source.val_images(self.cfg.preview_images)["image"]
        x_hat = self._reconstruct(state.ema, images)
        save_png(make_grid(np.concatenate([images, clip_uint8(np.asarray(x_hat))]), nrow=len(images)), path)
        return path

    def export(self, state, out_dir):
        """<out_dir>/weights: a weights dir with the VQ model alone (the tokenizer of a base-model run)."""
        weights = os.path.join(out_dir, "weights")
        save_weights(weights, self.arch.family, {self.arch.key: self.arch.cfg.to_dict()},
                     cast_floating({self.arch.key: jax.device_get(state.ema)}, self.cfg.export_dtype))
        return {"weights": weights}
