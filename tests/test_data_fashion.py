"""The Fashion-MNIST builder on a few images made here: IDX files (raw, gzipped, or inside a Debian package) to
records of the one schema (28x28 grey padded to 32x32 RGB, the dataset's labels, empty captions), the grid, and
one-line errors before anything is written."""

import gzip
import os

import numpy as np
import pytest
from PIL import Image

from debs import deb_with
from migm_jax.data.__main__ import main as run
from migm_jax.data.fashion import CLASS_NAMES, INSTALLED
from migm_jax.data.records import ImageReader


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0 0 8 ndim, the big-endian sizes, the data."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture
def idx_folder(tmp_path):
    """A folder of the four IDX files (train 12 images, t10k 10 images; the train ones gzipped), and the arrays."""
    folder = tmp_path / "idx"
    folder.mkdir()
    arrays = {"train": fake_split(12, 0), "t10k": fake_split(10, 1)}
    for prefix, (images, labels) in arrays.items():
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if prefix == "train":
                (folder / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(array)))
            else:
                (folder / name).write_bytes(idx_bytes(array))
    return folder, arrays


def test_records_are_the_padded_images_with_their_labels(idx_folder, tmp_path, capsys):
    folder, arrays = idx_folder
    out, grid = tmp_path / "fashion", tmp_path / "grid.png"
    assert run(["fashion", "--out", str(out), "--source", str(folder), "--grid", str(grid)]) == 0
    assert "train 12, test 10 images" in capsys.readouterr().out
    for split, prefix in (("train", "train"), ("test", "t10k")):
        reader = ImageReader(str(out), split)
        records = reader.read(np.arange(len(reader)))
        images, labels = arrays[prefix]
        assert records["image"].shape == (len(images), 32, 32, 3) and records["image"].dtype == np.uint8
        np.testing.assert_array_equal(records["image"][:, 2:30, 2:30, 1], images)  # grey in every channel
        assert (records["image"][:, :2] == 0).all() and (records["image"][:, :, 30:] == 0).all()  # black padding
        np.testing.assert_array_equal(records["label"], labels)
        assert list(records["caption"]) == [""] * len(images)
    meta = ImageReader(str(out), "test").meta
    assert meta["class_names"] == list(CLASS_NAMES) and meta["class_names"][9] == "ankle boot"
    assert set(meta["source"]["files"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    with Image.open(grid) as im:
        assert im.size[0] > im.size[1] > 32  # 10 columns (one per class) of the test images


def test_the_debian_package_is_read_in_python(idx_folder, tmp_path):
    folder, arrays = idx_folder
    members = {}
    for name in sorted(os.listdir(folder)):
        data = (folder / name).read_bytes()
        members[f"{INSTALLED.lstrip('/')}/{name.removesuffix('.gz')}.gz"] = data if name.endswith(".gz") else gzip.compress(data)
    deb = tmp_path / "fashion.deb"
    deb.write_bytes(deb_with(members))
    out = tmp_path / "fashion"
    assert run(["fashion", "--out", str(out), "--source", str(deb)]) == 0
    reader = ImageReader(str(out), "test")
    np.testing.assert_array_equal(reader.read(np.arange(10))["label"], arrays["t10k"][1])
    assert reader.meta["source"]["deb"]["file"] == "fashion.deb" and not reader.meta["source"]["deb"]["pinned"]


def test_bad_inputs_are_one_line_before_anything_is_written(idx_folder, tmp_path, capsys):
    folder, _ = idx_folder
    out = tmp_path / "fashion"
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9, np.uint8)))  # 10 images, 9 labels
    assert run(["fashion", "--out", str(out), "--source", str(folder)]) == 2
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not an idx file")
    assert run(["fashion", "--out", str(out), "--source", str(folder)]) == 2
    os.remove(folder / "t10k-labels-idx1-ubyte")
    assert run(["fashion", "--out", str(out), "--source", str(folder)]) == 2
    assert run(["fashion", "--out", str(out), "--source", str(tmp_path / "missing.deb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "t10k-images-idx3-ubyte holds 10 images and" in err[0] and "9 labels" in err[0]
    assert "t10k-labels-idx1-ubyte is not an IDX file of 1-d unsigned bytes; give --source DIR" in err[1]
    assert f"{folder} holds no t10k-labels-idx1-ubyte[.gz]" in err[2]
    assert "missing.deb does not exist" in err[3]
    assert not out.exists()
