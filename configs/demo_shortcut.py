"""Embedded demo, part 3: the MaskGIT-Shortcut of the demo transformer (part 2's export), trained
online on its own N=16 trajectories (the teacher samples them on device; no dataset on disk).
Its export is the embedded model (migm_jax/assets/demo/maskgit): transformer + VQGAN + shortcut in
bfloat16, with these sampler settings (and budget 8) as sample.py's defaults; cfg_w 4 is the guidance that
scored best among those tried on the teacher alone (README).

  python train.py --config configs/demo_shortcut.py --workdir runs/demo_shortcut [--export]
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="maskgit",
        teacher_weights="runs/demo_transformer/export/weights",
        shortcut={"heads": 8, "n_block": 1, "bottleneck_ratio": 2, "embed_t": True},
        # the trajectories' sampler (as configs/demo_transformer.py) + the default budget of sample.py
        sampling={"steps": 16, "cfg_w": 4.0, "r_temp": 4.5, "sm_temp": 1.0, "sched_mode": "arccos",
                  "randomize": "linear", "budget": 8},
        compute_dtype="bfloat16",
        teacher_dtype="bfloat16",
        online_images=64,
        online_reuse=8,
        val_images=16,
        batch_size=32,
        lr=3e-4,
        weight_decay=1e-2,
        warmup_steps=100,
        decay_at=7800,
        decay_gamma=0.1,
        ema_decay=0.999,
        mse_weight=1.0,
        kl_weight=0.0,
        total_steps=9000,
        ckpt_every=3000,
        val_every=3000,
        preview_budgets=(4, 6),
        preview_images=10,
        export_dtype="bfloat16",
        seed=3,
    )
