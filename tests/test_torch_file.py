"""The weights-only torch reader: a file that is not a readable checkpoint is a one-line ValueError."""

import zipfile

import numpy as np
import pytest

from conftest import fixture_path
from migm_jax.convert.torch_file import load_torch_file

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
