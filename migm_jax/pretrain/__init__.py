"""Training the base models from scratch on an image dataset (migm_jax.data; without data_dir, the synthetic
shapes rendered into memory), through train.py like the shortcut: the VQGAN tokenizer, the MaskGIT
transformer and the feature classifier of the quality metric. Each task is a module here; task.py holds
what they share.
"""


def build_pretrain_task(cfg, mesh):
    """The task object of `cfg.task` ('vqgan' | 'transformer' | 'classifier') on `mesh`."""
    if cfg.task == "vqgan":
        from migm_jax.pretrain.vqgan import VQGANTask
        return VQGANTask(cfg, mesh)
    if cfg.task == "transformer":
        from migm_jax.pretrain.transformer import TransformerTask
        return TransformerTask(cfg, mesh)
    from migm_jax.pretrain.classifier import ClassifierTask
    return ClassifierTask(cfg, mesh)
