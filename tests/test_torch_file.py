"""The weights-only torch reader: a file that is not a readable checkpoint is a one-line ValueError."""

import zipfile

import numpy as np
import pytest

from conftest import fixture_path
from migm_jax.convert.torch_file import load_torch_file, save_torch_file

PTH = fixture_path("maskgit_shortcut", "shortcut.pth")


def test_reads_the_fixture_as_numpy():
    sd = dict(load_torch_file(PTH))
    assert sd and all(isinstance(v, np.ndarray) for v in sd.values())


def test_other_file_formats_are_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden": 768}')
    with pytest.raises(ValueError, match="config.json is not a PyTorch checkpoint"):
        load_torch_file(path)


def test_truncated_checkpoint_is_damaged(tmp_path):
    path = tmp_path / "cut.pth"
    data = open(PTH, "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.pth is a damaged torch checkpoint \(truncated zip archive\)"):
        load_torch_file(path)


def test_missing_storage_is_damaged(tmp_path):
    path = tmp_path / "gap.pth"
    with zipfile.ZipFile(PTH) as src, zipfile.ZipFile(path, "w") as dst:
        names = src.namelist()
        dropped = next(n for n in names if "/data/" in n and not n.endswith(".pkl"))
        for n in names:
            if n != dropped:
                dst.writestr(n, src.read(n))
    with pytest.raises(ValueError, match="gap.pth is a damaged torch checkpoint"):
        load_torch_file(path)


def written_state_dict():
    import ml_dtypes

    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 5)).astype(np.float32).T,  # not contiguous: written as its values
            "ids": np.arange(4, dtype=np.int64), "half": rng.standard_normal(6).astype(ml_dtypes.bfloat16),
            "scalar": np.asarray(2.5, np.float32), "flags": np.array([True, False])}


def test_written_file_reads_back_exactly(tmp_path):
    sd = written_state_dict()
    save_torch_file(tmp_path / "out.pth", sd)
    back = load_torch_file(tmp_path / "out.pth")
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and np.shape(back[k]) == v.shape, k
        np.testing.assert_array_equal(back[k], v)
    fixture = dict(load_torch_file(PTH))  # a real torch.save file, rewritten: same tensors
    save_torch_file(tmp_path / "again.pth", fixture)
    for k, v in load_torch_file(tmp_path / "again.pth").items():
        np.testing.assert_array_equal(v, fixture[k])


def test_written_file_loads_in_torch(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {k: v for k, v in written_state_dict().items() if k != "half"}
    save_torch_file(tmp_path / "out.pth", sd)
    back = torch.load(tmp_path / "out.pth", weights_only=True)
    assert list(back) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k].numpy(), v)
