"""FID Inception-v3: features against pytorch-fid's and torch-fidelity's own models (random weights, see
fixtures/make_inception_fixtures.py), each flavor's preprocessing, the Inception Score, one-line errors.

One params tree and one batch size serve every parity case, so the network compiles once for the file."""

import numpy as np
import pytest

from conftest import load_npz
from inception_random import random_state_dict
from migm_jax.convert.state_dict import CheckpointError
from migm_jax.convert.torch_file import save_torch_file
from migm_jax.eval.inception import from_state_dict, inception_features, load_inception
from migm_jax.eval.inception_preprocess import preprocess
from migm_jax.eval.inception_score import inception_score

FLAVORS = {"pytorch-fid": "pytorch_fid", "torch-fidelity": "torch_fidelity"}  # flavor -> fixture name
SIZES = ("small", "large")  # 64x80 (upsampled) and 320x304 (downsampled) inputs
CONV = "Mixed_5b.branch1x1.conv.weight"


@pytest.fixture(scope="module")
def fx():
    return load_npz("inception", "parity.npz")


@pytest.fixture(scope="module")
def state_dict(fx):
    shapes = {str(k): [d for d in s if d >= 0] for k, s in zip(fx["aux_keys"], fx["aux_shapes"])}
    return random_state_dict(shapes, int(fx["aux_seed"]))


@pytest.fixture(scope="module")
def params(state_dict, tmp_path_factory):
    """Through the file path: the random weights written as a .pth and read back by load_inception."""
    path = tmp_path_factory.mktemp("inception") / "weights.pth"
    save_torch_file(path, {**state_dict, "fc.num_batches_tracked": np.int64(0)})
    return load_inception(path, flavor="torch-fidelity")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_features_match_the_package(params, fx, flavor, size):
    pool, logits = inception_features(params, fx[f"in_images_{size}"], flavor=flavor)
    ref = f"out_{FLAVORS[flavor]}_{size}"
    assert pool.shape == (3, 2048) and logits.shape == (3, 1008) and pool.dtype == logits.dtype == np.float32
    np.testing.assert_allclose(pool, fx[f"{ref}_pool"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits, fx[f"{ref}_logits"], rtol=0, atol=1e-4)
    if flavor == "torch-fidelity":  # what its IS scores: the fc output without the bias
        np.testing.assert_allclose(logits - params["fc"]["bias"], fx[f"{ref}_logits_unbiased"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_preprocessing_matches_the_package(fx, flavor, size):
    x = np.asarray(preprocess(fx[f"in_images_{size}"], flavor=flavor))
    assert x.shape == (3, 299, 299, 3) and x.dtype == np.float32
    grid = fx["aux_prep_grid"]
    np.testing.assert_allclose(x[:, grid][:, :, grid], fx[f"out_{FLAVORS[flavor]}_{size}_prep"], rtol=0, atol=1e-6)


def test_mapping_is_one_to_one(state_dict, params):
    direct = from_state_dict(state_dict)
    conv = params["Mixed_5b"]["branch1x1"]["conv"]["kernel"]
    np.testing.assert_array_equal(conv, state_dict[CONV].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["fc"]["kernel"], state_dict["fc.weight"].T)
    np.testing.assert_array_equal(direct["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                  state_dict["Mixed_7c.branch_pool.bn.running_var"])


def reference_is(logits, splits):
    """Plain IS without shuffling: exp(mean KL(p(y|x) || p(y))) per consecutive split."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = [np.exp(np.mean(np.sum(c * np.log(c / c.mean(0)), axis=1))) for c in np.array_split(p, splits)]
    return np.mean(scores), np.std(scores)


def test_inception_score(fx):
    logits = fx["in_is_logits"].astype(np.float64)
    mean, std = inception_score(logits, splits=int(fx["aux_is_splits"]))
    assert mean == pytest.approx(float(fx["out_is_mean"]), rel=1e-12)
    assert std == pytest.approx(float(fx["out_is_std"]), rel=1e-9)
    np.testing.assert_allclose(inception_score(logits, splits=4, shuffle=False), reference_is(logits, 4), rtol=1e-12)
    perm = np.random.RandomState(7).permutation(len(logits))
    assert inception_score(logits, 4, seed=7) == pytest.approx(inception_score(logits[perm], 4, shuffle=False))
    assert inception_score(np.zeros((6, 1008)), splits=2) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="cannot split 40 samples into 41 groups"):
        inception_score(logits, splits=41)


def test_missing_and_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.pth not found: .*pt_inception-2015-12-05-6726825d.pth"):
        load_inception(tmp_path / "nope.pth")
    text = tmp_path / "weights.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"weights.pth is not a PyTorch checkpoint.*weights-inception-2015"):
        load_inception(text, flavor="torch-fidelity")
    tiny = tmp_path / "tiny.pth"
    save_torch_file(tiny, {"conv.weight": np.zeros((2, 3, 1, 1), np.float32)})
    with pytest.raises(CheckpointError, match=r"tiny.pth: checkpoint does not match.*unexpected keys \(1\): conv.weight"
                                              r".*the FID Inception needs"):
        load_inception(tiny)
    with pytest.raises(ValueError, match="unknown Inception flavor 'tf'"):
        load_inception(tiny, flavor="tf")


def test_wrong_state_dicts_are_named(state_dict):
    torchvision = {**state_dict, "AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): AuxLogits.fc.weight.*torchvision"):
        from_state_dict(torchvision, "tv.pth")
    missing = {k: v for k, v in state_dict.items() if k != "fc.bias"}
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc.bias.*pt_inception-2015-12-05-6726825d.pth"):
        from_state_dict(missing)
    reshaped = {**state_dict, CONV: np.zeros((64, 192, 3, 3), np.float32)}
    with pytest.raises(CheckpointError, match=rf"checkpoint key {CONV}, stored shape \(64, 192, 3, 3\)"):
        from_state_dict(reshaped)
    broken = {**state_dict, "fc.bias": np.full(1008, np.nan, np.float32)}
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) hold NaN or infinite values: fc.bias"):
        from_state_dict(broken)


def test_bad_images_are_refused(params):
    with pytest.raises(ValueError, match=r"expected uint8 RGB images of shape \(b, H, W, 3\), got float32"):
        inception_features(params, np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="unknown Inception flavor"):
        inception_features(params, np.zeros((1, 8, 8, 3), np.uint8), flavor="clean-fid")
