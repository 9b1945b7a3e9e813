"""MaskGIT-Shortcut on ImageNet 512 (the original README recipe).

Teacher: the converted MaskGIT_ImageNet_512 weights (convert_weights.py maskgit ... --out weights/maskgit).
Trajectories: N=15 arccos, cfg 2.8, r_temp 7 (makedata.sh): write them first with
  python -m migm_jax.training.makedata --config configs/maskgit_imagenet.py --out data/maskgit --split train --images 50000 --seed 1
  python -m migm_jax.training.makedata --config configs/maskgit_imagenet.py --out data/maskgit --split val --images 1000 --seed 1001
or train online with --set data_dir=None.
Shortcut: 1 block, 16 heads, bottleneck 2, embed_t. AdamW 1e-4, wd 1e-2, x0.1 at step 1000, EMA 0.9999,
pure masked-position MSE (kl_weight 0), rollout 1, global batch 4 (4 GPUs x 1). The original's
length (100 epochs x 100,000 iterations) and released iteration are unknown; total_steps is ours.
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="maskgit",
        teacher_weights="weights/maskgit",
        shortcut={"heads": 16, "n_block": 1, "bottleneck_ratio": 2, "embed_t": True},
        sampling={"steps": 15, "cfg_w": 2.8, "r_temp": 7.0, "sm_temp": 1.0, "sched_mode": "arccos", "randomize": "linear"},
        compute_dtype="bfloat16",
        teacher_dtype="bfloat16",
        data_dir="data/maskgit",
        online_images=16,
        online_reuse=8,
        batch_size=4,
        lr=1e-4,
        weight_decay=1e-2,
        step_decay=True,
        decay_at=1000,
        ema_decay=0.9999,
        mse_weight=1.0,
        kl_weight=0.0,
        temperature=1.0,
        max_rollout_step=1,
        total_steps=100_000,
        ckpt_every=5000,
        keep_ckpts=3,
        val_every=10_000,
        preview_budgets=(5, 8),  # sample grid at each validation: vanilla N=15, then B=5 and B=8
        val_batches=250,
    )
