"""Class-conditional demo (Fashion-MNIST), part 1: the VQGAN tokenizer (taming architecture at small width) on
the 32x32 images (28x28 padded), f = 2 -> 16x16 codes from a 512-code book.

  python -m migm_jax.data fashion --out data/fashion
  python train.py --config configs/fashion_vqgan.py --workdir runs/fashion_vqgan
  python train.py --config configs/fashion_vqgan.py --workdir runs/fashion_vqgan --export   # -> runs/fashion_vqgan/export/weights
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        task="vqgan",
        model={"embed_dim": 32, "n_embed": 512, "z_channels": 64, "ch": 64, "ch_mult": (1, 2), "num_res_blocks": 1,
               "attn_resolutions": (), "resolution": 32},
        objective={"l1": 1.0, "l2": 1.0, "vq": 1.0, "restart_every": 20, "restart_until": 1500},
        data_dir="data/fashion",
        val_split="test",
        compute_dtype="bfloat16",
        val_batches=8,
        batch_size=128,
        lr=3e-4,
        weight_decay=0.0,
        warmup_steps=100,
        decay_at=1700,
        decay_gamma=0.1,
        ema_decay=0.99,
        log_kl=False,
        total_steps=2000,
        ckpt_every=1000,
        val_every=1000,
        preview_images=10,
        export_dtype="bfloat16",
        seed=1,
    )
