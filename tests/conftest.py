import os
import subprocess
import sys

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_path(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


@pytest.fixture(scope="session")
def maskgit_small():
    """(config, params) of the MaskGIT transformer fixture (4 heads)."""
    from migm_jax.convert import maskgit_transformer

    return maskgit_transformer(fixture_path("maskgit_transformer", "MaskGIT_small.pth"), heads=4)


@pytest.fixture(scope="session")
def maskgit_shortcut_small():
    from migm_jax.convert import maskgit_shortcut

    return maskgit_shortcut(fixture_path("maskgit_shortcut", "shortcut.pth"), heads=4)


def load_npz(*parts: str) -> dict:
    with np.load(fixture_path(*parts)) as z:
        return {k: z[k] for k in z.files}


def run_on_fake_devices(script: str, marker: str, n: int = 8, xla_flags: str = "") -> None:
    """Runs `script` in a fresh Python with `n` fake CPU devices (plus `xla_flags`); asserts it printed `marker`."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n} {xla_flags}".strip(), JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert marker in res.stdout, res.stderr[-3000:]


class BatchKiller:
    """Counts the harness's batch generations (one journal save after each) and raises RuntimeError('killed')
    at the `kill_at`-th; `resume()` lets every later call through and clears the count."""

    def __init__(self, monkeypatch, kill_at: int):
        from migm_jax.eval import run

        self.calls, self.kill_at, self.generate = [], kill_at, run.generate_batch
        monkeypatch.setattr(run, "SAVE_EVERY", 1)
        monkeypatch.setattr(run, "generate_batch", self)

    def __call__(self, *args):
        self.calls.append(1)
        if len(self.calls) == self.kill_at:
            raise RuntimeError("killed")
        return self.generate(*args)

    def resume(self) -> None:
        self.kill_at = None
        self.calls.clear()
