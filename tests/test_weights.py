"""Weights directory: round trip, and loading on other devices than the ones it was written from."""

import numpy as np
import pytest

from conftest import run_on_fake_devices
from migm_jax.weights import load_weights, read_config


def test_weights_written_on_other_devices_load_here(tmp_path):
    run_on_fake_devices(f"""
import jax, jax.numpy as jnp, numpy as np
from migm_jax.weights import save_weights
on_second = jax.device_put(jnp.arange(8.0), jax.devices()[1])
save_weights({str(tmp_path / 'w')!r}, "maskgit", {{"transformer": {{"hidden": 8}}}},
             {{"a": on_second, "b": {{"c": np.ones((2, 3), np.int32)}}}})
print("SAVED")
""", "SAVED", n=2)
    family, configs, params = load_weights(tmp_path / "w")
    assert family == "maskgit" and configs == {"transformer": {"hidden": 8}}
    np.testing.assert_array_equal(params["a"], np.arange(8.0))
    assert params["b"]["c"].dtype == np.int32 and params["b"]["c"].shape == (2, 3)


def test_not_a_weights_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="run convert_weights.py first"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a weights config"):
        read_config(tmp_path)
