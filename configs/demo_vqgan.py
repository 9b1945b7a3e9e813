"""Embedded demo, part 1: the VQGAN tokenizer (taming architecture at small width) on the synthetic
64x64 images, f = 4 -> 16x16 codes from a 512-code book.

  python train.py --config configs/demo_vqgan.py --workdir runs/demo_vqgan
  python train.py --config configs/demo_vqgan.py --workdir runs/demo_vqgan --export   # -> runs/demo_vqgan/export/weights
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        task="vqgan",
        model={"embed_dim": 32, "n_embed": 512, "z_channels": 64, "ch": 64, "ch_mult": (1, 1, 2), "num_res_blocks": 1,
               "attn_resolutions": (), "resolution": 64},
        objective={"l1": 1.0, "l2": 1.0, "vq": 1.0, "restart_every": 20, "restart_until": 2400},
        compute_dtype="bfloat16",
        render_images=50_000,
        val_split="test",
        val_batches=8,
        batch_size=128,
        lr=3e-4,
        weight_decay=0.0,
        warmup_steps=100,
        decay_at=3200,
        decay_gamma=0.1,
        ema_decay=0.99,
        log_kl=False,
        total_steps=4000,
        ckpt_every=1000,
        val_every=1000,
        preview_images=10,
        export_dtype="bfloat16",
        seed=1,
    )
