"""Class-conditional demo (Fashion-MNIST), part 2: the MaskGIT transformer (the ported MaskTransformer) trained
from scratch with the MaskGIT objective on the codes of part 1's VQGAN. Deep and narrow (32 layers x 128,
6.6 M params, 13 MB in bfloat16) so that, as in MaskGIT-512, a base-model step costs over ten shortcut steps
on a GPU (11.7x for the shipped weights at batch 500 on an H100: benchmarks/bench_step_ratio.py, README).

  python train.py --config configs/fashion_transformer.py --workdir runs/fashion_transformer [--export]
"""

from migm_jax.training.config import TrainConfig

# the sampler of the previews, of the shortcut's trajectories and of sample.py (cfg and r_temp as the earlier demo's)
SAMPLING = {"steps": 16, "cfg_w": 4.0, "r_temp": 4.5, "sm_temp": 1.0, "sched_mode": "arccos", "randomize": "linear"}


def get_config() -> TrainConfig:
    return TrainConfig(
        task="transformer",
        model={"hidden": 128, "depth": 32, "heads": 4, "mlp_dim": 512, "codebook_size": 512, "nclass": 10, "grid": 16},
        tokenizer="runs/fashion_vqgan/export/weights",
        objective={"label_drop": 0.1, "label_smoothing": 0.1},
        data_dir="data/fashion",
        val_split="test",
        sampling=SAMPLING,
        compute_dtype="bfloat16",
        attention_impl="cudnn",  # fused attention (GPU)
        teacher_dtype="float32",  # the tokenizer's encoder
        val_batches=8,
        batch_size=256,
        lr=5e-4,
        b2=0.99,
        weight_decay=1e-2,
        warmup_steps=500,
        decay_at=5000,
        decay_gamma=0.1,
        ema_decay=0.999,
        total_steps=2634,  # the shipped weights: a 7000-step run stopped here by a device time limit (decay_at not reached)
        ckpt_every=2500,
        val_every=2500,
        export_dtype="bfloat16",
        seed=2,
    )
