"""Smoke test: a tiny random MaskGIT teacher (4x4 tokens, 6 steps) and shortcut, online trajectories.

20 steps run on one CPU core in well under a minute (most of it compilation).
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="maskgit",
        teacher={"hidden": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "codebook_size": 16, "nclass": 10, "grid": 4},
        shortcut={"heads": 2, "n_block": 1, "bottleneck_ratio": 2},
        sampling={"steps": 6},
        compute_dtype="float32",
        teacher_dtype="float32",
        online_images=2,
        online_reuse=4,
        val_images=2,
        batch_size=4,
        lr=1e-3,
        ema_decay=0.9,
        total_steps=20,
        ckpt_every=10,
        val_every=10,
        async_ckpt=False,
        log_kl=False,  # fewer ops to compile; kl_weight is 0
    )
