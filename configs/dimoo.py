"""Lumina-DiMOO shortcut (the original README recipe, 1024^2, N=64, cfg 4, temperature 1).

Teacher: a weights dir from convert_weights.py dimoo (LLaDA 8B + tokenizer). Prompts: one per line
(the original: blip3o_prompts.txt, train = the first 2000, val = the next 50); they are tokenized with
the weights dir's tokenizer (needs the [text] extra) and drawn at random per image from
teacher.prompt_lines. Trajectories are 2.2 GB per cond/uncond row (64 x ~4.2k x 4096 bf16): write a
dataset with
  python -m migm_jax.training.makedata --config configs/dimoo.py --out data/dimoo --split train --images 2000 --batch 1
  python -m migm_jax.training.makedata --config configs/dimoo.py --out data/dimoo --split val --images 50 --batch 1 \
      --seed 1001 --set "teacher.prompt_lines=[2000, 2050]"
or train online (--set data_dir=None: the teacher samples on device, nothing is stored).
Shortcut: 1 block, 4096 -> 2048, embed_t. AdamW 1e-4, wd 1e-2 on every param, x0.1 at step 1000,
EMA 0.9999, MSE over the whole sequence (kl_weight 0), rollout 1, global batch 4.
"""

from migm_jax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        family="dimoo",
        teacher_weights="weights/dimoo",
        teacher={"prompts": "dataset/blip3o_prompts.txt", "prompt_lines": [0, 2000], "grid": [64, 64]},
        shortcut={"n_block": 1, "bottleneck_ratio": 2, "embed_t": True},
        sampling={"steps": 64, "cfg_scale": 4.0, "temperature": 1.0},
        compute_dtype="bfloat16",
        teacher_dtype="bfloat16",
        attention_impl="cudnn",
        data_dir="data/dimoo",
        online_images=1,
        online_reuse=4,
        val_images=1,
        val_batches=25,
        batch_size=4,
        lr=1e-4,
        weight_decay=1e-2,
        step_decay=True,
        decay_at=1000,
        ema_decay=0.9999,
        mse_weight=1.0,
        kl_weight=0.0,
        max_rollout_step=1,
        total_steps=100_000,
        ckpt_every=2000,
        val_every=50_000,
        preview_budgets=(9, 14),  # sample grid at each validation: vanilla N=64, then B=9 and B=14
        preview_images=2,
    )
