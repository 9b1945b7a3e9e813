"""Class-conditional demo (Fashion-MNIST), part 3: the MaskGIT-Shortcut of part 2's transformer, trained online
on its own N=16 trajectories (the teacher samples them on device; no dataset on disk). Its export is the
embedded model (migm_jax/assets/demo/maskgit): transformer + VQGAN + shortcut in bfloat16, with the teacher's
sampler settings and budget 6 (3N/8, the paper's 12 of 32) as sample.py's defaults.

  python train.py --config configs/fashion_shortcut.py --workdir runs/fashion_shortcut [--export]
"""

from configs.fashion_transformer import SAMPLING
from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="maskgit",
        teacher_weights="runs/fashion_transformer/export/weights",
        shortcut={"heads": 4, "n_block": 1, "bottleneck_ratio": 2, "embed_t": True},
        sampling={**SAMPLING, "budget": 6},
        compute_dtype="bfloat16",
        teacher_dtype="bfloat16",
        attention_impl=None,  # exact attention: cuDNN's fused kernel does not take the shortcut's T = 257 in training
        online_images=64,
        online_reuse=8,
        val_images=16,
        batch_size=32,
        lr=3e-4,
        weight_decay=1e-2,
        warmup_steps=100,
        decay_at=2500,
        decay_gamma=0.1,
        ema_decay=0.999,
        mse_weight=1.0,
        kl_weight=0.0,
        total_steps=4000,
        ckpt_every=2000,
        val_every=2000,
        preview_budgets=(4, 6),
        preview_images=10,
        export_dtype="bfloat16",
        seed=3,
    )
