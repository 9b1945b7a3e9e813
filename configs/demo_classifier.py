"""Embedded demo, part 4: the feature classifier of the quality metric (FID in its penultimate
feature space, accuracy of the requested class), trained on the synthetic train split and validated
on the held-out test split.

  python train.py --config configs/demo_classifier.py --workdir runs/demo_classifier [--export]
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        task="classifier",
        model={"nclass": 10, "widths": (32, 64, 128), "feature_dim": 128, "resolution": 64},
        render_images=50_000,
        val_split="test",
        val_batches=8,
        batch_size=256,
        lr=1e-3,
        weight_decay=1e-4,
        warmup_steps=100,
        decay_at=2400,
        decay_gamma=0.1,
        ema_decay=0.99,
        total_steps=3000,
        ckpt_every=1000,
        val_every=1000,
        export_dtype="bfloat16",
        seed=4,
    )
