"""Synthetic shapes: deterministic rendering, labels, splits, the records round trip (TFDS array_record), CLI,
errors, training batches read from disk."""

import os

import numpy as np
import pytest

from migm_jax.data import (CLASS_NAMES, RESOLUTION, SPLIT_SEEDS, ImageReader, render, render_batch, write_shapes,
                           write_split)


def test_render_is_deterministic_per_index():
    for index in (0, 7, 12345):
        a, la = render(index, "train")
        b, lb = render(index, "train")
        assert a.tobytes() == b.tobytes() and la == lb


def test_render_shapes_dtypes_and_labels():
    images, labels = render_batch(np.arange(30), "test")
    assert images.shape == (30, RESOLUTION, RESOLUTION, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, np.arange(30) % len(CLASS_NAMES))
    assert len(CLASS_NAMES) == 10 and len(set(CLASS_NAMES)) == 10
    image, label = render(23)
    assert image.shape == (RESOLUTION, RESOLUTION, 3) and label == 3
    np.testing.assert_array_equal(render_batch([23], "train")[0][0], image)


def test_images_differ_across_indices_and_splits():
    train, _ = render_batch(range(20), "train")
    test, _ = render_batch(range(20), "test")
    assert SPLIT_SEEDS["train"] != SPLIT_SEEDS["test"]
    for i in range(20):
        assert not np.array_equal(train[i], test[i])
    flat = {img.tobytes() for img in train}
    assert len(flat) == 20
    # an index renders the same alone as inside any batch (no state carried between images)
    np.testing.assert_array_equal(render_batch([13, 5], "train")[0], train[[13, 5]])


def test_images_are_not_flat():
    images, _ = render_batch(range(20))
    assert all(img.reshape(-1, 3).std(0).max() > 10 for img in images)


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        render(0, "val")
    with pytest.raises(ValueError, match="unknown split"):
        render_batch([0], "validation")
    with pytest.raises(ValueError, match=">= 0"):
        render(-1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra: tensorflow-datasets, array-record")
    root = str(tmp_path_factory.mktemp("shapes"))
    write_shapes(root, "train", 23, images_per_shard=10, progress=False)
    write_shapes(root, "test", 5, progress=False)
    return root


def test_write_then_read_gives_render_batch(written):
    reader = ImageReader(written, "train")
    assert len(reader) == 23
    indices = np.array([22, 0, 9, 10, 15])
    out = reader.read(indices)
    images, labels = render_batch(indices, "train")
    assert out["image"].dtype == np.uint8 and out["label"].dtype == np.int32
    np.testing.assert_array_equal(out["image"], images)
    np.testing.assert_array_equal(out["label"], labels)
    assert out["caption"].shape == (5,) and out["caption"].tolist() == [""] * 5


def test_second_split_keeps_first_and_tfds_opens_both(written):
    import tensorflow_datasets as tfds

    from migm_jax.data.records import NAME, VERSION, dataset_dir, read_meta

    assert len(ImageReader(written, "test")) == 5
    np.testing.assert_array_equal(ImageReader(written, "test").read([4])["image"][0], render(4, "test")[0])
    info = tfds.builder_from_directory(dataset_dir(written)).info
    assert {s: info.splits[s].num_examples for s in info.splits} == {"train": 23, "test": 5}
    source = tfds.data_source(f"{NAME}:{VERSION}", data_dir=written, split="train")
    rec = source[17]
    assert rec["index"] == 17 and rec["label"] == 7
    np.testing.assert_array_equal(rec["image"], render(17)[0])
    meta = read_meta(written)
    assert meta["splits"] == {"train": {"seed": SPLIT_SEEDS["train"], "images": 23},
                              "test": {"seed": SPLIT_SEEDS["test"], "images": 5}}
    assert meta["builder"] == "shapes" and meta["resolution"] == RESOLUTION and meta["class_names"] == list(CLASS_NAMES)


def test_rewriting_a_split_replaces_its_shards(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    write_shapes(str(tmp_path), "train", 12, images_per_shard=4, progress=False)
    out = write_shapes(str(tmp_path), "train", 6, progress=False)
    shards = sorted(f for f in os.listdir(out) if "array_record" in f)
    assert shards == ["migm_images-train.array_record-00000-of-00001"]
    reader = ImageReader(str(tmp_path), "train")
    assert len(reader) == 6
    np.testing.assert_array_equal(reader.read([5])["image"][0], render(5)[0])


def test_reader_errors(written, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"build one with python -m migm_jax.data \{shapes,emoji,fashion\} --out"):
        ImageReader(str(tmp_path / "missing"), "train")
    with pytest.raises(ValueError, match=r"has train, test\); see python -m migm_jax.data shapes --help"):
        ImageReader(written, "val")
    with pytest.raises(ValueError, match="unknown split"):
        write_shapes(str(tmp_path), "val", 3, progress=False)
    other = {"builder": "emoji", "resolution": RESOLUTION, "class_names": ["a"]}
    with pytest.raises(ValueError, match=r"holds another dataset \(shapes, not emoji\); remove it or write to another"):
        write_split(written, "train", iter([]), 1, other)
    with pytest.raises(ValueError, match=r"holds another dataset \(shapes, its class_names differ\)"):
        write_split(written, "train", iter([]), 1, {**other, "builder": "shapes"})


def test_cli_grid_and_errors(tmp_path, capsys):
    from PIL import Image

    from migm_jax.data.__main__ import main

    path = tmp_path / "grid.png"
    assert main(["shapes", "--split", "test", "--grid", str(path)]) == 0
    grid = np.asarray(Image.open(path))
    assert grid.shape == (4 * (RESOLUTION + 2) + 2, 10 * (RESOLUTION + 2) + 2, 3)
    np.testing.assert_array_equal(grid[2:2 + RESOLUTION, 2:2 + RESOLUTION], render(0, "test")[0])
    assert main(["shapes", "--split", "val", "--grid", str(path)]) == 2
    assert main(["shapes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    with pytest.raises(SystemExit):
        main(["shapes", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m migm_jax.data shapes")


def test_training_batches_of_a_written_split_hold_its_images_and_meta(written):
    import jax

    from migm_jax.pretrain.images import ImageSource, dataset_meta
    from migm_jax.sharding import make_mesh
    from migm_jax.training.config import TrainConfig

    cfg = TrainConfig(data_dir=written, val_split="test", batch_size=4, val_batches=1)
    source = ImageSource(cfg, make_mesh(devices=jax.devices()[:1]))
    batch = source.batch(0)
    np.testing.assert_array_equal(np.asarray(batch["image"]), render_batch(source.order.indices(0, 4), "train")[0])
    assert set(batch) == {"image", "label"}
    assert dataset_meta(cfg)["class_names"] == list(CLASS_NAMES) == dataset_meta(TrainConfig())["class_names"]
