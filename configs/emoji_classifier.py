"""Text-to-image demo, part 4: the feature classifier of the quality metric over emoji identity (both
styles): FID in its penultimate feature space, prompt accuracy by its top-1. Trained on the train split,
validated on the held-out style (the noto drawings of the held-out emoji). model.nclass is left out: it is
the dataset's emoji count. 1.05 M params with ~3,700 classes (2.1 MB in bfloat16).

  python train.py --config configs/emoji_classifier.py --workdir runs/emoji_classifier [--export]
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="dimoo",
        task="classifier",
        model={"widths": (64, 128, 128), "feature_dim": 128, "resolution": 64},
        data_dir="data/emoji",
        val_split="heldout",
        val_batches=1,
        batch_size=256,
        lr=1e-3,
        weight_decay=1e-4,
        warmup_steps=100,
        decay_at=4500,
        decay_gamma=0.1,
        ema_decay=0.99,
        total_steps=2525,  # the shipped weights: a 5000-step run stopped here by a device time limit (decay_at not reached)
        ckpt_every=1000,
        val_every=1000,
        export_dtype="bfloat16",
        seed=4,
    )
