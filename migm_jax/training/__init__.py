"""Shortcut training: trajectory capture and expansion, TFDS trajectory datasets, losses, train state,
the jitted (sharded) train step, checkpoints, metrics, export, and the training driver used by train.py."""
