"""The Inception FID commands end to end on a tiny random MaskGIT and random Inception weights: reference
statistics of a folder, FID / IS rows and plot, resuming a killed run, sharding, one-line errors.

Every Inception call uses batch 4, so the network compiles once for the file (its compile and the ~0.2 s
per 299px image on CPU are most of the time); the samplers compile once each (lru-cached across runs).
What numpy can check exactly (the folder's statistics, in order) is checked with a 6-d colour feature."""

import dataclasses
import json
import os
import pickle
import signal
import threading
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import BatchKiller, load_npz, run_on_fake_devices
from inception_random import random_state_dict
from migm_jax.convert.torch_file import save_torch_file
from migm_jax.eval import run
from migm_jax.eval.__main__ import main
from migm_jax.eval.features import Extractor
from migm_jax.eval.refstats import (ImageList, folder_images, image_list, list_images, read_ref_stats, reference_statistics,
                                    resize_center_crop, write_ref_stats)
from migm_jax.images import clip_uint8
from migm_jax.sharding import make_mesh

BATCH = "4"
RUN = ["--num-samples", "6", "--seeds", "1", "--steps", "4", "--budgets", "2", "--mode", "vanilla", "shortcut",
       "--batch-size", BATCH]
ROW_KEYS = ["mode", "steps", "budget", "seed", "fid", "is", "is_std", "seconds_per_image"]


def tiny_pipeline():
    """(configs, params) of a random 16px MaskGIT-Shortcut (4x4 tokens, 10 classes)."""
    from migm_jax.apps.maskgit import random_pipeline_params
    from migm_jax.models.maskgit import MaskTransformerConfig
    from migm_jax.models.shortcut import MaskGITShortcutConfig
    from migm_jax.models.vqgan import VQGANConfig

    t = MaskTransformerConfig(hidden=32, depth=1, heads=2, mlp_dim=64, codebook_size=16, grid=4, nclass=10)
    s = MaskGITShortcutConfig(hidden=32, heads=2)
    v = VQGANConfig(embed_dim=4, n_embed=16, z_channels=8, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1,
                    attn_resolutions=(), resolution=16, in_channels=3, out_ch=3)
    params = random_pipeline_params(t, s, v, 0)
    configs = {"transformer": t.to_dict(), "shortcut": s.to_dict(), "vqgan": v.to_dict(),
               "sampling": {"steps": 4, "cfg_w": 1.0, "r_temp": 4.5}}
    return configs, params


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{'weights', 'inception', 'images', 'ref'}: a tiny MaskGIT dir, random FID Inception weights (.pth), a
    nested folder of 4 PNGs (RGB, grey, RGBA) and its statistics written by ref-stats."""
    from migm_jax.apps.maskgit import FAMILY
    from migm_jax.weights import save_weights

    root = tmp_path_factory.mktemp("fid")
    configs, params = tiny_pipeline()
    save_weights(root / "maskgit", FAMILY, configs, params)
    fx = load_npz("inception", "parity.npz")
    shapes = {str(k): [d for d in s if d >= 0] for k, s in zip(fx["aux_keys"], fx["aux_shapes"])}
    save_torch_file(root / "inception.pth", random_state_dict(shapes, int(fx["aux_seed"])))
    rng = np.random.default_rng(0)
    for i, mode in enumerate(["RGB", "L", "RGBA", "RGB"]):  # converted to RGB on reading
        folder = root / "images" / ("b" if i % 2 else "a")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").convert(mode).save(folder / f"{i}.png")
    (root / "images" / "notes.txt").write_text("not an image")
    paths = {"weights": str(root / "maskgit"), "inception": str(root / "inception.pth"),
             "images": str(root / "images"), "ref": str(root / "ref.npz")}
    assert main(["ref-stats", "--images", paths["images"], "--inception", paths["inception"], "--batch-size", BATCH,
                 "--out", paths["ref"]]) == 0
    return paths


def fid_args(files, out, *extra):
    return ["fid", "--weights", files["weights"], "--inception", files["inception"], "--ref-stats", files["ref"],
            *RUN, "--out", str(out), *extra]


@dataclasses.dataclass(frozen=True)
class ColourNet:
    """A FeatureNet whose features numpy can check: per-channel mean and mean square of the image (6-d)."""

    feature_dim: int = 6
    image_conversion: str = "clip_uint8"

    def to_uint8(self, images):
        return clip_uint8(images)

    def prepare(self, images):
        return images.astype(jnp.float32) / 255

    def apply(self, params, x, labels):
        return jnp.concatenate([x.mean(axis=(1, 2)), (x * x).mean(axis=(1, 2))], axis=-1) * params, labels * 1.0

    def finish(self, per_image):
        return {}


def test_tfds_split_statistics_are_those_of_its_records_in_order(tmp_path):
    pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra: tensorflow-datasets, array-record")
    from migm_jax.data import render_batch, write_shapes
    from migm_jax.data.records import NAME

    write_shapes(str(tmp_path), "test", 5, progress=False)
    images = image_list(f"tfds:{NAME}/test", str(tmp_path))
    rendered = render_batch(np.arange(5), "test")[0]  # what the records hold, in that order
    assert images.count == 5 and all(np.array_equal(images.load(i), rendered[i]) for i in range(5))
    extractor, mesh = Extractor(ColourNet(), 1.0), make_mesh()
    stats = reference_statistics(images, extractor, mesh, 2)
    same = reference_statistics(ImageList(5, lambda i: rendered[i], str), extractor, mesh, 2)
    assert stats.count == 5
    for a, b in zip(stats.mean_cov(), same.mean_cov()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=f"--images tfds:{NAME}/validation: cannot open it in "):
        image_list(f"tfds:{NAME}/validation", str(tmp_path))
    with pytest.raises(ValueError, match="expected tfds:NAME"):
        image_list("tfds:imagenet2012", str(tmp_path))


def test_resize_center_crop_is_shorter_side_then_centre():
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # shorter side 30 -> 16, longer 40 -> int(21.3) = 21
    expected = np.asarray(Image.fromarray(wide).resize((21, 16), Image.BILINEAR))[:, 2:18]  # left round(2.5) = 2
    np.testing.assert_array_equal(resize_center_crop(wide, 16), expected)
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    expected = np.asarray(Image.fromarray(tall).resize((16, 21), Image.BILINEAR))[2:18]
    np.testing.assert_array_equal(resize_center_crop(tall, 16), expected)
    mixed = ImageList(2, lambda i: (wide, tall)[i], lambda i: f"image {i}")
    extractor, mesh = Extractor(ColourNet(), 1.0), make_mesh()
    with pytest.raises(ValueError, match=r"^image 1 is 30x40, the first image 40x30: .* give --resize-crop S"):
        reference_statistics(mixed, extractor, mesh, 2)
    assert reference_statistics(mixed, extractor, mesh, 2, resize_crop=16).count == 2


def test_minmax_reference_statistics_are_those_of_stretched_images(files):
    """--minmax: every image stretched to [0, 255] by its own min and max, truncated, before its features."""
    images = folder_images(files["images"])
    raw = [images.load(i).astype(np.float32) / 255 for i in range(images.count)]
    stretched = [((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8) for x in raw]
    assert any(not np.array_equal(a, (b * 255).round().astype(np.uint8)) for a, b in zip(stretched, raw))
    extractor, mesh = Extractor(ColourNet(), 1.0), make_mesh()
    got = reference_statistics(images, extractor, mesh, 3, minmax=True)
    want = reference_statistics(ImageList(images.count, lambda i: stretched[i], str), extractor, mesh, 3)
    for a, b in zip(got.mean_cov(), want.mean_cov()):
        np.testing.assert_array_equal(a, b)


def test_folder_statistics_are_those_of_its_images_in_order(files, tmp_path):
    paths = list_images(files["images"])
    assert [os.path.relpath(p, files["images"]) for p in paths] == ["a/0.png", "a/2.png", "b/1.png", "b/3.png"]
    stats = reference_statistics(folder_images(files["images"]), Extractor(ColourNet(), 1.0), make_mesh(), 3)
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.float32) / 255  # batch 2 padded
    features = np.concatenate([x.mean(axis=(1, 2)), (x * x).mean(axis=(1, 2))], axis=-1).astype(np.float64)
    write_ref_stats(str(tmp_path / "s.npz"), stats)
    mu, sigma = read_ref_stats(str(tmp_path / "s.npz"))
    np.testing.assert_allclose(mu, features.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-5, atol=1e-9)
    cached = tmp_path / "stats.pt"  # torch-fidelity's cache: torch.save({'mu': ..., 'sigma': ...})
    with zipfile.ZipFile(cached, "w") as z:
        z.writestr("stats/data.pkl", pickle.dumps({"mu": mu.astype(np.float32), "sigma": sigma}, protocol=2))
    np.testing.assert_array_equal(read_ref_stats(str(cached))[1], sigma)


def test_ref_stats_command_writes_inception_statistics(files):
    with np.load(files["ref"]) as z:
        assert sorted(z.files) == ["flavor", "minmax", "mu", "num_images", "resize_crop", "sigma"]
        assert int(z["num_images"]) == 4 and str(z["flavor"]) == "torch-fidelity"  # how they were made, recorded
        assert int(z["resize_crop"]) == 0 and not bool(z["minmax"])
        assert z["mu"].dtype == z["sigma"].dtype == np.float64 and z["sigma"].shape == (2048, 2048)
        assert np.all(z["mu"] >= 0) and z["mu"].max() > 0 and np.allclose(z["sigma"], z["sigma"].T)  # ReLU pool


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory):
    """(results, table output) of one run of fid with plot."""
    out = tmp_path_factory.mktemp("run") / "r.json"
    assert main(fid_args(files, out, "--plot", str(out.with_suffix(".png")))) == 0
    return out


def test_fid_writes_rows_settings_and_plot(uninterrupted):
    result = json.loads(uninterrupted.read_text())
    assert result["complete"] is True
    assert [(r["mode"], r["steps"], r["budget"], r["seed"]) for r in result["results"]] == \
        [("vanilla", 4, 4, 0), ("shortcut", 4, 2, 0)]
    for r in result["results"]:
        assert list(r) == ROW_KEYS and r["fid"] > 0 and r["is"] >= 1 and r["is_std"] >= 0 and r["seconds_per_image"] > 0
    s = result["settings"]
    assert s["flavor"] == "torch-fidelity" and s["nclass"] == 10 and s["num_samples"] == 6
    assert s["image_conversion"].startswith("minmax_uint8") and s["device"] and s["jax_version"] == jax.__version__
    with Image.open(uninterrupted.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    assert sorted(p.name for p in uninterrupted.parent.iterdir()) == ["r.json", "r.png"]


def test_killed_run_resumes_to_the_same_results(files, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    killer = BatchKiller(monkeypatch, kill_at=2)  # batch 1 saved, batch 2 killed
    with pytest.raises(RuntimeError, match="killed"):
        main(fid_args(files, out))
    assert not out.exists()  # no (configuration, seed) finished
    with np.load(run.sidecar_path(str(out))) as z:
        assert str(z["mode"]) == "vanilla" and int(z["batches_done"]) == 1 and z["per_image"].shape == (4, 1008)
    killer.resume()
    assert main(fid_args(files, out)) == 0
    assert len(killer.calls) == 3  # vanilla: its last batch; shortcut: both batches (compiled without sampling a batch)
    assert without_timing(json.loads(out.read_text())) == without_timing(json.loads(uninterrupted.read_text()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    killer.calls.clear()
    finished = out.read_text()
    assert main(fid_args(files, out)) == 0 and not killer.calls and out.read_text() == finished  # nothing left to run


def test_ctrl_c_stops_at_once_with_one_line_and_keeps_the_journal(files, tmp_path, monkeypatch, capsys):
    out, calls, release, generate = tmp_path / "r.json", [], threading.Event(), run.generate_batch
    monkeypatch.setattr(run, "SAVE_EVERY", 1)

    def blocked(*args):  # batch 1 runs and is saved; Ctrl-C while batch 2 would take a minute
        calls.append(1)
        if len(calls) == 2:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            release.wait(60)
            raise RuntimeError("released")
        return generate(*args)

    monkeypatch.setattr(run, "generate_batch", blocked)
    t0 = time.perf_counter()
    try:
        code = main(fid_args(files, out))
    finally:
        release.set()
    assert code == 130 and time.perf_counter() - t0 < 50
    assert capsys.readouterr().err.strip().splitlines()[-1:] == [
        "interrupted: stopped; the same command continues from the last saved batch"]
    with np.load(run.sidecar_path(str(out))) as z:  # the journal is kept for the rerun
        assert str(z["mode"]) == "vanilla" and int(z["batches_done"]) == 1


def without_timing(result):
    rows = [{k: v for k, v in r.items() if k != "seconds_per_image"} for r in result["results"]]
    return rows, {k: v for k, v in result["settings"].items() if k != "date"}, result["complete"]


def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


def test_one_line_errors(files, uninterrupted, tmp_path, capsys):
    missing = tmp_path / "none.pth"
    err = error_of(capsys, fid_args({**files, "inception": str(missing)}, tmp_path / "r.json"))
    assert err.startswith(f"error: --inception: no weights file at {missing}; download torch-fidelity's ")
    small = tmp_path / "small.npz"
    np.savez(small, mu=np.zeros(16), sigma=np.eye(16))
    err = error_of(capsys, fid_args({**files, "ref": str(small)}, tmp_path / "r.json"))
    assert err == (f"error: {small} holds statistics of 16-d features, the Inception pool features are 2048-d; "
                   "compute the reference statistics with ref-stats (same Inception)")
    png = tmp_path / "samples.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    err = error_of(capsys, fid_args({**files, "ref": str(png)}, tmp_path / "r.json"))
    assert err == (f"error: {png} is not a statistics file (an .npz of ref-stats or pytorch-fid, or torch-fidelity's "
                   "cached statistics); compute one with `python -m migm_jax.eval ref-stats`")
    png.unlink()  # the folder below must hold no image
    err = error_of(capsys, fid_args(files, tmp_path / "r.json", "--flavor", "pytorch-fid"))
    assert err == (f"error: {files['ref']} holds statistics of torch-fidelity features, this run computes pytorch-fid "
                   "ones; pass --flavor torch-fidelity, or compute the statistics again with ref-stats --flavor "
                   "pytorch-fid")
    err = error_of(capsys, fid_args(files, tmp_path / "r.json", "--num-samples", "1"))
    assert err == "error: --num-samples must be >= 2 (a covariance needs two images), got 1"
    err = error_of(capsys, fid_args(files, uninterrupted, "--num-samples", "12"))
    assert err == (f"error: {uninterrupted} was written with other settings: num_samples (6 there, 12 now); "
                   "rerun with the same arguments to continue it, or use another --out")
    err = error_of(capsys, ["ref-stats", "--images", str(tmp_path), "--inception", files["inception"],
                            "--out", str(tmp_path / "s.npz")])
    assert err.startswith(f"error: --images: {tmp_path} holds 0 image file(s)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.npz"]


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from migm_jax.apps.maskgit import random_params
from migm_jax.eval.__main__ import main
from migm_jax.eval.stats import batch_moments, on_mesh
from migm_jax.models.classifier import ClassifierConfig, FeatureClassifier
from migm_jax.eval.features import ClassifierNet, Extractor
from migm_jax.sharding import make_mesh

assert jax.device_count() == 8
cfg = ClassifierConfig(widths=(8, 16), feature_dim=16)
params = random_params(lambda: FeatureClassifier(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3), jnp.uint8)), 3)
images = np.random.default_rng(0).uniform(-1.2, 1.2, (16, 16, 16, 3)).astype(np.float32)
labels = np.arange(16) % 10
out = []
for mesh in (make_mesh(), make_mesh(devices=jax.devices()[:1])):
    moments, per_image = batch_moments(on_mesh(Extractor(ClassifierNet(cfg), params), mesh), mesh, images, labels, 13)
    out.append((moments, per_image))
(m8, p8), (m1, p1) = out
assert int(m8["count"]) == int(m1["count"]) == 13 and p8.shape == p1.shape == (13,)
for k in ("sum", "scatter"):
    np.testing.assert_allclose(m8[k], m1[k], rtol=1e-5, atol=1e-5)
np.testing.assert_array_equal(p8, p1)
assert main(["fid", "--weights", "w", "--inception", "i.pth", "--ref-stats", "r.npz", "--batch-size", "12",
             "--out", "r.json"]) == 2
print("SHARDED-OK")
"""


def test_sharded_statistics_equal_one_device(capfd):
    run_on_fake_devices(SHARDED, "SHARDED-OK")
