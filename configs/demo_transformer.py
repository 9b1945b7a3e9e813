"""Embedded demo, part 2: the MaskGIT transformer (the ported MaskTransformer, 6 x 256) trained from
scratch with the MaskGIT objective on the codes of the demo VQGAN (part 1's export).

  python train.py --config configs/demo_transformer.py --workdir runs/demo_transformer [--export]
"""

from migm_jax.training.config import TrainConfig

SAMPLING = {"steps": 16, "cfg_w": 2.0, "r_temp": 4.5, "sm_temp": 1.0, "sched_mode": "arccos", "randomize": "linear"}


def get_config() -> TrainConfig:
    return TrainConfig(
        task="transformer",
        model={"hidden": 256, "depth": 6, "heads": 8, "mlp_dim": 1024, "codebook_size": 512, "nclass": 10, "grid": 16},
        tokenizer="runs/demo_vqgan/export/weights",
        objective={"label_drop": 0.1, "label_smoothing": 0.1},
        sampling=SAMPLING,  # the previews' sampler
        compute_dtype="bfloat16",
        teacher_dtype="float32",  # the tokenizer's encoder
        render_images=50_000,
        val_split="test",
        val_batches=8,
        batch_size=256,
        lr=5e-4,
        b2=0.99,
        weight_decay=1e-2,
        warmup_steps=500,
        decay_at=10_000,
        decay_gamma=0.1,
        ema_decay=0.999,
        # the shipped weights: this run length (its GPU time ended a planned 12,000-step run there, before the
        # decay at 10,000; masked-token accuracy 0.42 and rising): longer runs give a stronger teacher
        total_steps=5010,
        ckpt_every=2000,
        val_every=2000,
        export_dtype="bfloat16",
        seed=2,
    )
