"""The text-to-image task: the ported LLaDA (Lumina-DiMOO's backbone) trained from scratch to predict masked
image codes given a caption, on exactly the sequences the DiMOO sampler builds.

Once, up front: the word-level text tokenizer is built from the train split's captions
(text_tokenizer.py; kept in <workdir>/tokenizer, which a resumed run must rebuild identically); every
image is tokenized by the frozen VQModel of `tokenizer`; every caption becomes its cond sequence
(`build_sequences`: template prompt, then the image region; right padded to one width over the train and
validation captions, a multiple of 64 for cuDNN), and, when the dataset's meta lists `caption_styles`,
also the caption without its leading style word.
Per image and step: with probability style_drop (0.3) the caption without its style word; with
probability label_drop (0.1) the uncond prompt instead (classifier-free guidance); a masked fraction
from the cosine schedule (`cosine_mask`: the fractions the DiMOO sampler passes through), the masked
image cells holding the mask id. Loss: cross-entropy over the head's codebook columns at the masked
cells, averaged over all masked cells of the batch.
The model is LLaDAConfig(**cfg.model) with vocab_size = embedding_size = text vocabulary + codebook
(image code c has id text_vocab + c); it computes in cfg.compute_dtype (LLaDA's own default is bfloat16).
"""

from __future__ import annotations

import functools
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from migm_jax.images import save_images
from migm_jax.models.llada import LLaDA, LLaDAConfig
from migm_jax.models.vqmodel import VQModel, VQModelConfig
from migm_jax.pretrain import images
from migm_jax.pretrain.images import ImageSource, captions_of, read_captions
from migm_jax.pretrain.masking import cosine_mask, masked_cross_entropy
from migm_jax.pretrain.task import PretrainTask, shared
from migm_jax.pretrain.text_tokenizer import same_tokenizer, tokenizer_files, write_tokenizer
from migm_jax.sampling.dimoo import DiMOOModels, build_sampler, trajectory_sampling
from migm_jax.sampling.dimoo_prompts import (PAD_ID, TokenLayout, build_sequences, check_size, image_offsets,
                                             load_tokenizer, region_length)
from migm_jax.training.config import ConfigError
from migm_jax.weights import TOKENIZER_DIR, as_float32, cast_floating, load_weights, save_weights

DEFAULTS = {"label_drop": 0.1, "style_drop": 0.3}
CUDNN_MULTIPLE = 64  # cuDNN's fused attention trains only at some sequence lengths


def without_style(caption: str, styles) -> str:
    """`caption` without its leading style word (one of `styles`, then a space); unchanged otherwise."""
    for style in styles:
        rest = caption[len(style) + 1:]
        if caption.startswith(style + " ") and rest.strip():
            return rest
    return caption


class TextToImageTask(PretrainTask):
    def __init__(self, cfg, mesh, workdir=None):
        super().__init__(cfg, mesh, workdir)
        self.obj = {**DEFAULTS, **cfg.objective}
        if set(self.obj) - set(DEFAULTS):
            raise ConfigError(f"objective: unknown keys {sorted(set(self.obj) - set(DEFAULTS))} (known: {sorted(DEFAULTS)})")
        _, configs, params = load_weights(cfg.tokenizer)
        if "vq" not in configs:
            raise ConfigError(f"tokenizer {cfg.tokenizer} holds no VQModel ({', '.join(configs)}); export a vqmodel "
                              "run: train.py --config configs/emoji_vq.py --workdir W --export")
        self.vcfg, self.vq_params = VQModelConfig.from_dict(configs["vq"]), as_float32(params["vq"])
        train, val = images.open_split(cfg.data_dir, cfg.train_split), images.open_split(cfg.data_dir, cfg.val_split)
        self.meta, self.styles = train.meta, tuple(train.meta.get("caption_styles", ()))
        self.captions = {"train": read_captions(train), "val": read_captions(val)}
        self.tokenizer_files = tokenizer_files(self.captions["train"])
        self.tokenizer = self._load_tokenizer()
        n_codes = self.vcfg.num_vq_embeddings
        vocab = len(self.tokenizer) + n_codes
        self.layout = TokenLayout.from_tokenizer(self.tokenizer, vocab, n_codes, "the text tokenizer")
        if {"vocab_size", "embedding_size"} & set(cfg.model):
            raise ConfigError("model: leave out vocab_size and embedding_size; they are the text vocabulary (from the "
                              "captions) plus the VQ codebook")
        try:
            self.lcfg = LLaDAConfig(**{**cfg.model, "vocab_size": vocab, "embedding_size": vocab})
            self.sampling = trajectory_sampling(cfg.sampling)
            self.sampling.validate()
            self.size = int(self.meta["resolution"])
            self.grid = check_size(self.size, self.size, self.vcfg.scale_factor)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"model/sampling/data: {e}") from None
        self.module = LLaDA(self.lcfg, jnp.dtype(cfg.compute_dtype), cfg.attention_impl)
        self.vq = VQModel(self.vcfg, jnp.dtype(cfg.teacher_dtype))

    def _load_tokenizer(self):
        """The text tokenizer as `load_tokenizer` reads it, from <workdir>/tokenizer (written on the first
        run; a resumed run refuses other captions) or, outside a run, from a temporary folder."""
        if self.workdir is None:
            with tempfile.TemporaryDirectory() as folder:
                return load_tokenizer(write_tokenizer(self.tokenizer_files, folder))
        folder = os.path.join(self.workdir, TOKENIZER_DIR)
        if not same_tokenizer(self.tokenizer_files, folder):
            if os.path.isdir(folder):
                raise ConfigError(f"{folder} was built from other captions than those of {self.cfg.data_dir} "
                                  f"({self.cfg.train_split}); a run keeps its text tokenizer: use its dataset or a "
                                  "new --workdir")
            write_tokenizer(self.tokenizer_files, folder)
        return load_tokenizer(folder)

    def _forms(self, caption: str) -> tuple[str, str]:
        return caption, without_style(caption, self.styles)

    @functools.cached_property
    def _table(self):
        """(row of each prompt, cond ids (p, L), prompt lengths (p,), uncond ids (L,), uncond length): every
        caption of both splits in both forms as the sampler's right-padded cond sequences (one width L)."""
        prompts = sorted({form for split in self.captions.values() for c in split for form in self._forms(c)})
        batch = build_sequences(self.tokenizer, prompts, self.size, self.size, self.layout, self.vcfg.scale_factor)
        if self.cfg.attention_impl == "cudnn":
            batch = batch.with_width_multiple(CUDNN_MULTIPLE)
        ids = np.asarray(batch.cond_ids)
        uncond = np.full(ids.shape[1], PAD_ID, np.int32)
        uncond[:batch.uncond_ids.shape[1]] = np.asarray(batch.uncond_ids[0])
        return ({p: i for i, p in enumerate(prompts)}, ids, np.asarray(batch.prompt_len),
                uncond, int(batch.uncond_len[0]))

    def _prepare(self, encode, records: dict) -> dict:
        """Codes and both sequences of each record (see `ImageSource`)."""
        rows, ids, lens, _, _ = self._table
        forms = [self._forms(c) for c in captions_of(records, self.meta.get("class_names"))]
        full, short = (np.asarray([rows[f[j]] for f in forms]) for j in (0, 1))
        return {"code": encode(records["image"]), "ids": ids[full], "prompt_len": lens[full],
                "ids_short": ids[short], "prompt_len_short": lens[short]}

    @functools.cached_property
    def source(self) -> ImageSource:
        """Batches {code (b,gh,gw), ids / ids_short (b,L), prompt_len / prompt_len_short (b,)}."""
        encode = shared(self, "encode", lambda: jax.jit(
            lambda p, x: self.vq.apply({"params": p}, x.astype(jnp.float32) / 255.0, method=VQModel.encode)))
        return ImageSource(self.cfg, self.mesh, functools.partial(self._prepare, functools.partial(encode, self.vq_params)))

    def init_params(self, key):
        return LLaDA(self.lcfg, jnp.float32).init(key, jnp.zeros((1, 4), jnp.int32))["params"]

    def _sequences(self, batch: dict, key: jax.Array, label_drop: float, style_drop: float):
        """The step's sequences: (ids (b,L), key lengths (b,), image columns (b,n), codes (b,n), masked (b,n))."""
        _, _, _, uncond, uncond_len = self._table
        codes = batch["code"].reshape(batch["code"].shape[0], -1)
        b = codes.shape[0]
        k_mask, k_drop, k_style = jax.random.split(key, 3)
        short = jax.random.uniform(k_style, (b,)) < style_drop
        drop = jax.random.uniform(k_drop, (b,)) < label_drop
        ids = jnp.where(drop[:, None], uncond[None], jnp.where(short[:, None], batch["ids_short"], batch["ids"]))
        plen = jnp.where(drop, uncond_len, jnp.where(short, batch["prompt_len_short"], batch["prompt_len"]))
        mask = cosine_mask(k_mask, codes.shape)
        cols = plen[:, None] + image_offsets(self.grid)[None]
        cells = jnp.where(mask, self.layout.mask, codes + self.layout.text_vocab_size)
        ids = ids.at[jnp.arange(b)[:, None], cols].set(cells)
        return ids, plen + region_length(self.grid), cols, codes, mask

    def _loss(self, params, batch, key, label_drop: float, style_drop: float):
        ids, lengths, cols, codes, mask = self._sequences(batch, key, label_drop, style_drop)
        lay, p = self.layout, {"params": params}
        feat = self.module.apply(p, ids, None, None, lengths, method=LLaDA.features)
        feat = jnp.take_along_axis(feat, cols[..., None], axis=1)
        logits = self.module.apply(p, feat, lay.text_vocab_size, lay.codebook_size, method=LLaDA.image_logits)
        loss, acc = masked_cross_entropy(logits.astype(jnp.float32), codes, mask)
        return loss, {"loss": loss, "masked_acc": acc, "mask_ratio": jnp.mean(mask.astype(jnp.float32))}

    def loss(self, params, batch, key):
        loss, metrics = self._loss(params, batch, key, self.obj["label_drop"], self.obj["style_drop"])
        return loss, (metrics, None)

    def eval_metrics(self, params, batch):
        """The same loss with a fixed masking key, the full captions and no prompt drop (comparable across
        validations)."""
        return self._loss(params, batch, jax.random.PRNGKey(self.cfg.seed + 5), 0.0, 0.0)[1]

    def preview_prompts(self) -> list[str]:
        """The first preview_images distinct validation captions, then as many train captions."""
        n = self.cfg.preview_images
        return [p for split in ("val", "train") for p in list(dict.fromkeys(self.captions[split]))[:n]]

    @functools.cached_property
    def models(self) -> DiMOOModels:
        return DiMOOModels(self.lcfg, self.layout, vq=self.vcfg, dtype=self.cfg.compute_dtype,
                           attention_impl=self.cfg.attention_impl)

    @functools.cached_property
    def _sampler(self):
        """The previews' vanilla sampler, built (and compiled) once per task, not at every validation."""
        return build_sampler(self.models, self.sampling)

    def preview(self, state, path):
        """Vanilla DiMOO samples (cfg.sampling, fixed key) of `preview_prompts`: validation row(s), then train."""
        prompts = self.preview_prompts()
        batch = build_sequences(self.tokenizer, prompts, self.size, self.size, self.layout, self.vcfg.scale_factor)
        out = self._sampler({"llada": state.ema, "vq": self.vq_params}, batch, jax.random.PRNGKey(self.cfg.seed + 4))
        save_images(np.asarray(out["images"]), path, nrow=self.cfg.preview_images)
        return path

    def export(self, state, out_dir):
        """<out_dir>/weights: a 'dimoo' weights dir (LLaDA, layout, the tokenizer's VQModel, the sampler settings
        of cfg.sampling as sample.py's recommendation) with the text tokenizer in its tokenizer/ folder."""
        weights = os.path.join(out_dir, "weights")
        configs = {"llada": self.lcfg.to_dict(), "layout": self.layout.to_dict(), "vq": self.vcfg.to_dict(),
                   "sampling": dict(self.cfg.sampling)}
        params = {"llada": jax.device_get(state.ema), "vq": self.vq_params}
        save_weights(weights, "dimoo", configs, cast_floating(params, self.cfg.export_dtype))
        write_tokenizer(self.tokenizer_files, os.path.join(weights, TOKENIZER_DIR))
        return {"weights": weights}
