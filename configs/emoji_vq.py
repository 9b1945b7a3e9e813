"""Text-to-image demo, part 1: the image tokenizer, the ported diffusers VQModel (Lumina-DiMOO's tokenizer
architecture) at small width on the 64x64 emoji, f = 4 -> 16x16 codes from a 1024-code book.
2.94 M params (decoder 1.78 M): 5.9 MB in bfloat16 (widths (64, 128, 128) would be 7.7 MB; the embedded
demos share a 40 MB budget).

  python -m migm_jax.data emoji --out data/emoji       # the dataset (see README)
  python train.py --config configs/emoji_vq.py --workdir runs/emoji_vq
  python train.py --config configs/emoji_vq.py --workdir runs/emoji_vq --export   # -> runs/emoji_vq/export/weights
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="dimoo",
        task="vqmodel",
        model={"block_out_channels": (64, 64, 128), "layers_per_block": 1, "latent_channels": 64,
               "vq_embed_dim": 32, "num_vq_embeddings": 1024, "norm_num_groups": 32},
        objective={"l1": 1.0, "l2": 1.0, "vq": 1.0, "restart_every": 20, "restart_until": 2400},
        compute_dtype="bfloat16",
        data_dir="data/emoji",
        val_split="heldout",  # the noto drawings of the held-out emoji
        val_batches=2,
        batch_size=128,
        lr=3e-4,
        weight_decay=0.0,
        warmup_steps=100,
        decay_at=2600,
        decay_gamma=0.1,
        ema_decay=0.99,
        log_kl=False,
        total_steps=3000,
        ckpt_every=1000,
        val_every=1000,
        preview_images=10,
        export_dtype="bfloat16",
        seed=1,
    )
