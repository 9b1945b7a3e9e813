"""Loss and metrics of the original run_step / loss_fn, batched with static shapes.

The original trains with batch 1 per device and averages over devices, so every quantity here is
computed per sample over its loss positions and then averaged over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from migm_jax.sampling.quantile import masked_quantile


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-sample mean over the True positions: x, mask (b, L) -> (b,)."""
    m = mask.astype(jnp.float32)
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def mse(est: jax.Array, tgt: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-sample mean of (est - tgt)^2 over the masked positions and all channels: (b,T,C),(b,T) -> (b,)."""
    err = jnp.mean(jnp.square(est.astype(jnp.float32) - tgt.astype(jnp.float32)), axis=-1)
    return _masked_mean(err, mask)


def kl(est_logits: jax.Array, tgt_logits: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """Per-sample batchmean KL(p_tgt || p_est) with p = softmax(logits / T): (b,L,K),(b,L) -> (b,)."""
    log_pt = jax.nn.log_softmax(tgt_logits / temperature, axis=-1)
    log_pe = jax.nn.log_softmax(est_logits / temperature, axis=-1)
    return _masked_mean(jnp.sum(jnp.exp(log_pt) * (log_pt - log_pe), axis=-1), mask)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity over channels (torch F.cosine_similarity, eps 1e-8): (b,T,C) -> (b,T)."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    norms = jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), 1e-8)
    return jnp.sum(a * b, axis=-1) / norms


def feature_metrics(prev, est, tgt, mask, logits=None, temperature: float = 1.0) -> dict:
    """The original's logged metrics, averaged over the batch.

    cos_{pred,orig}_{mean,min,p10}: cosine of est / prev (the "copy the previous feature" baseline)
    against tgt over the masked positions; mse_{pred,orig}; kl_{pred,orig} when `logits` =
    (head(prev), head(est), head(tgt)) is given; improvements: cos pred - orig, mse orig - pred,
    kl orig - pred.
    """
    out = {}
    for name, x in (("pred", est), ("orig", prev)):
        c = cosine(x, tgt)
        out[f"cos_{name}_mean"] = jnp.mean(_masked_mean(c, mask))
        out[f"cos_{name}_min"] = jnp.mean(jnp.min(jnp.where(mask, c, jnp.inf), axis=1))
        out[f"cos_{name}_p10"] = jnp.mean(masked_quantile(c, mask, 0.1))
        out[f"mse_{name}"] = jnp.mean(mse(x, tgt, mask))
    out["cos_improvement"] = out["cos_pred_mean"] - out["cos_orig_mean"]
    out["mse_improvement"] = out["mse_orig"] - out["mse_pred"]
    if logits is not None:
        l_prev, l_est, l_tgt = logits
        hm = mask[:, : l_tgt.shape[1]]
        out["kl_pred"] = jnp.mean(kl(l_est, l_tgt, hm, temperature))
        out["kl_orig"] = jnp.mean(kl(l_prev, l_tgt, hm, temperature))
        out["kl_improvement"] = out["kl_orig"] - out["kl_pred"]
    return out
