"""Sample grids during training: what a person looks at to judge a shortcut.

One PNG per validation, `<workdir>/samples/step_<N>.png`: row 0 is the teacher alone (vanilla, every
step runs the base model), then one row per budget with the EMA shortcut. The conditions and the key
are fixed for the whole run, so grids of successive validations compare the same images.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np

from migm_jax.images import save_images


def write_preview(family, base_configs: dict, base_params: dict, teacher, shortcut, budgets, n: int,
                  seed: int, path: str) -> Optional[str]:
    """Renders the grid to `path`; returns it, or None when the teacher weights hold no decoder."""
    key = jax.random.PRNGKey(seed)
    conditions = family.random_conditions(jax.random.fold_in(key, 1), n)
    rows = []
    for budget in (None, *budgets):
        images = family.preview(base_configs, base_params, teacher, shortcut, conditions, key, budget)
        if images is None:
            return None
        rows.append(images)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_images(np.concatenate(rows), path, nrow=n)
    return path
