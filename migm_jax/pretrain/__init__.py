"""Training the base models from scratch on an image dataset, through train.py like the shortcut:
the image tokenizers (VQGAN, VQModel), the masked base models (MaskGIT transformer, DiMOO text-to-image
LLaDA) and the feature classifier of the quality metric. Each task is a module here; task.py holds
what they share.
"""


def build_pretrain_task(cfg, mesh, workdir=None):
    """The task object of `cfg.task` ('vqgan' | 'vqmodel' | 'transformer' | 'text_to_image' | 'classifier') on
    `mesh`; `workdir`: the run's folder (tasks may keep files there), None outside a run."""
    if cfg.task in ("vqgan", "vqmodel"):
        from migm_jax.pretrain.vq import VQTask
        return VQTask(cfg, mesh, workdir)
    if cfg.task == "transformer":
        from migm_jax.pretrain.transformer import TransformerTask
        return TransformerTask(cfg, mesh, workdir)
    if cfg.task == "text_to_image":
        from migm_jax.pretrain.text_to_image import TextToImageTask
        return TextToImageTask(cfg, mesh, workdir)
    from migm_jax.pretrain.classifier import ClassifierTask
    return ClassifierTask(cfg, mesh, workdir)
