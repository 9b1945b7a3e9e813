import os

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_path(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


@pytest.fixture(scope="session")
def maskgit_small():
    """(config, params) of the MaskGIT transformer fixture (4 heads)."""
    from migm_jax.convert.maskgit import maskgit_transformer

    return maskgit_transformer(fixture_path("maskgit_transformer", "MaskGIT_small.pth"), heads=4)


@pytest.fixture(scope="session")
def maskgit_shortcut_small():
    from migm_jax.convert.maskgit import maskgit_shortcut

    return maskgit_shortcut(fixture_path("maskgit_shortcut", "shortcut.pth"), heads=4)


def load_npz(*parts: str) -> dict:
    with np.load(fixture_path(*parts)) as z:
        return {k: z[k] for k in z.files}
