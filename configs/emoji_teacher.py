"""Text-to-image demo, part 2: the teacher, the ported LLaDA (12 x 192) trained from scratch on the emoji
codes of part 1's VQModel given their captions, in the DiMOO sampler's sequence layout; its word-level text
tokenizer is built from the train captions (kept in the workdir and the export). 6.8-7.8 M params for a
text vocabulary of 2,000-4,000 words (13.6-15.6 MB in bfloat16; the head and wte are untied).

  python train.py --config configs/emoji_teacher.py --workdir runs/emoji_teacher [--export]
  python sample.py --weights runs/emoji_teacher/export/weights --prompt "twemoji grinning face" \
      --height 64 --width 64 --steps 16
"""

from migm_jax.training.config import TrainConfig

SAMPLING = {"steps": 16, "cfg_scale": 4.0, "temperature": 1.0}


def get_config() -> TrainConfig:
    return TrainConfig(
        family="dimoo",
        task="text_to_image",
        model={"d_model": 192, "n_layers": 12, "n_heads": 6, "n_kv_heads": 6, "mlp_hidden_size": 512},
        tokenizer="runs/emoji_vq/export/weights",
        objective={"label_drop": 0.1, "style_drop": 0.3},
        sampling=SAMPLING,  # the previews' sampler and the export's recommended settings (not used in training)
        compute_dtype="bfloat16",
        attention_impl="cudnn",  # fused attention (GPU; sequences padded to a multiple of 64)
        teacher_dtype="float32",  # the VQModel encoder that tokenizes the images once
        data_dir="data/emoji",
        val_split="heldout",
        val_batches=1,
        batch_size=256,
        lr=5e-4,
        b2=0.99,
        weight_decay=1e-2,
        warmup_steps=500,
        decay_at=7200,
        decay_gamma=0.1,
        ema_decay=0.999,
        total_steps=8000,
        ckpt_every=2000,
        val_every=2000,
        preview_images=8,
        export_dtype="bfloat16",
        seed=2,
    )
