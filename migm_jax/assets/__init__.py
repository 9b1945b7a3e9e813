"""Weights that ship inside the package: the embedded demos and their feature classifier.

Each is a weights directory (`config.json` + `params/`, see migm_jax.weights), trained from scratch with
`train.py` and the `configs/` files: the text-to-image demo (Lumina-DiMOO family) on emoji drawn from their
names, the MaskGIT-Shortcut demo and its classifier on Fashion-MNIST (migm_jax.data.fashion).
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_EMOJI = os.path.join(HERE, "demo", "emoji")  # llada + vq + shortcut + tokenizer/ (family 'dimoo'): sample.py's default
DEMO_MASKGIT = os.path.join(HERE, "demo", "maskgit")  # transformer + vqgan + shortcut (family 'maskgit')
DEMO_CLASSIFIER = os.path.join(HERE, "demo", "classifier")  # feature classifier (family 'classifier')
DEMO_EMOJI_CLASSIFIER = os.path.join(HERE, "demo", "emoji_classifier")  # the text-to-image demo's (emoji identity)
