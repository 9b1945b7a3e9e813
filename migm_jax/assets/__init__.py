"""Weights that ship inside the package: the embedded demo MaskGIT-Shortcut and its feature classifier.

Both are weights directories (`config.json` + `params/`, see migm_jax.weights), trained from scratch
on the synthetic dataset (migm_jax.synthetic) with `train.py` and the `configs/demo_*.py` files.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_MASKGIT = os.path.join(HERE, "demo", "maskgit")  # transformer + vqgan + shortcut (family 'maskgit')
DEMO_CLASSIFIER = os.path.join(HERE, "demo", "classifier")  # feature classifier (family 'classifier')
DEMO_EMOJI_CLASSIFIER = os.path.join(HERE, "demo", "emoji_classifier")  # the text-to-image demo's (emoji identity)
