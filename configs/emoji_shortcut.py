"""Text-to-image demo, part 3: the DiMOO-Shortcut of the emoji teacher (part 2's export), trained online on
its own N=16 trajectories of the train prompts (the teacher samples them on device; no dataset on disk).
Its export (LLaDA + VQModel + shortcut + tokenizer, bfloat16, with these sampler settings and budget 4 as
sample.py's defaults) is the embedded text-to-image demo.

  python train.py --config configs/emoji_shortcut.py --workdir runs/emoji_shortcut [--export]
"""

from migm_jax.training.config import TrainConfig

# sample.py's default prompts (train captions: each emoji was seen in this style)
PROMPTS = ["twemoji slice of pizza", "twemoji dog face", "noto rocket", "twemoji grinning face", "noto cat face",
           "twemoji rainbow", "noto hamburger", "twemoji snowman", "noto sunflower", "noto octopus"]


def get_config() -> TrainConfig:
    return TrainConfig(
        family="dimoo",
        teacher_weights="runs/emoji_teacher/export/weights",
        # seq_len: trajectories padded to 320 (a multiple of 64, for cuDNN's training kernels): prompts of up
        # to 44 tokens with the template, then the 16 x 17 + 4 image region
        teacher={"prompts": "data/emoji/migm_images/1.0.0/prompts_train.txt", "grid": [16, 16], "seq_len": 320},
        shortcut={"n_block": 1, "bottleneck_ratio": 2, "embed_t": True},
        # the trajectories' sampler (as configs/emoji_teacher.py) + the default budget of sample.py
        sampling={"steps": 16, "cfg_scale": 4.0, "temperature": 1.0, "budget": 4, "height": 64, "width": 64,
                  "prompts": PROMPTS},
        compute_dtype="bfloat16",
        teacher_dtype="bfloat16",
        attention_impl="cudnn",
        online_images=64,
        online_reuse=8,
        val_images=16,
        batch_size=32,
        lr=3e-4,
        weight_decay=1e-2,
        warmup_steps=100,
        decay_at=3600,
        decay_gamma=0.1,
        ema_decay=0.999,
        mse_weight=1.0,
        kl_weight=0.0,
        total_steps=3281,  # the shipped weights: a 4000-step run stopped here by a device time limit (decay_at not reached)
        ckpt_every=2000,
        val_every=2000,
        preview_budgets=(4, 8),
        preview_images=8,
        export_dtype="bfloat16",
        seed=3,
    )
