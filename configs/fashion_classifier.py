"""Class-conditional demo (Fashion-MNIST), part 4: the feature classifier of the quality metric (FID in its
penultimate feature space, accuracy of the requested class), trained on the train split and validated on the
official test split.

  python train.py --config configs/fashion_classifier.py --workdir runs/fashion_classifier [--export]
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        task="classifier",
        model={"nclass": 10, "widths": (32, 64, 128), "feature_dim": 128, "resolution": 32},
        data_dir="data/fashion",
        val_split="test",
        val_batches=8,
        batch_size=256,
        lr=1e-3,
        weight_decay=1e-4,
        warmup_steps=100,
        decay_at=1200,
        decay_gamma=0.1,
        ema_decay=0.99,
        total_steps=1500,
        ckpt_every=750,
        val_every=750,
        export_dtype="bfloat16",
        seed=4,
    )
