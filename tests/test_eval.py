"""Quality harness: the Frechet distance against closed forms, streaming statistics, the CLI end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import BatchKiller
from migm_jax.eval.__main__ import main
from migm_jax.eval.stats import FeatureStats, fid_from_features, frechet_distance


def random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, cov = rng.standard_normal(6), random_cov(rng, 6)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-9


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_full_covariance_matches_product_eigenvalues():
    """tr sqrt(C1 C2) from the (real, non-negative) eigenvalues of the non-symmetric product C1 C2."""
    rng = np.random.default_rng(2)
    d = 12
    mu1, mu2, c1, c2 = rng.standard_normal(d), rng.standard_normal(d), random_cov(rng, d), random_cov(rng, d)
    tr_sqrt = np.sum(np.sqrt(np.linalg.eigvals(c1 @ c2).real))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-9)


def test_streaming_stats_match_one_shot_and_merge():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((101, 7)) * 3 + 5
    parts = np.split(x, [1, 30, 31, 77])
    first, second = FeatureStats(7), FeatureStats(7)
    for p in parts[:3]:
        first.update(p)
    for p in parts[3:]:
        second.update(p)
    mean, cov = first.merge(second).mean_cov()
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    assert first.count == 31 and second.count == 70
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"expected features of shape \(b, 7\)"):
        first.update(np.zeros((2, 6)))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(maskgit dir, classifier dir): the random demo pipeline and a random small classifier."""
    from migm_jax.apps.maskgit import FAMILY, demo_pipeline
    from migm_jax.models.classifier import ClassifierConfig
    from migm_jax.weights import save_weights
    from tryout import save_random_classifier

    root = tmp_path_factory.mktemp("weights")
    models, params = demo_pipeline(0)
    configs = {"transformer": models.transformer.to_dict(), "shortcut": models.shortcut.to_dict(),
               "vqgan": models.vqgan.to_dict(), "sampling": {"steps": 6, "cfg_w": 1.0, "r_temp": 4.5}}
    save_weights(root / "maskgit", FAMILY, configs, params)
    save_random_classifier(root / "classifier", ClassifierConfig(widths=(8, 16), feature_dim=16), 3)
    return str(root / "maskgit"), str(root / "classifier")


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    """A dataset of 8 train and 12 test synthetic shapes on disk (the random weights draw 64 px)."""
    from migm_jax.data import write_shapes

    data = str(tmp_path_factory.mktemp("shapes"))
    for split, n in (("train", 8), ("test", 12)):
        write_shapes(data, split, n, progress=False)
    return data


def test_cli_end_to_end(weights, shapes_data, tmp_path, capsys, monkeypatch):
    from migm_jax.eval import run

    data = shapes_data
    out, png = tmp_path / "r.json", tmp_path / "p.png"
    argv = ["--weights", weights[0], "--classifier", weights[1], "--data", data, "--reference-samples", "12",
            "--num-samples", "8", "--seeds", "1", "--steps", "4",
            "--cfg", "2.5", "--attention", "xla", "--budgets", "2", "--out", str(out), "--plot", str(png)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    rows = {(r["mode"], r["steps"], r["budget"]): r for r in result["results"]}
    assert set(rows) == {("vanilla", 4, 4), ("fewer_steps", 2, 2), ("reuse", 4, 2), ("shortcut", 4, 2)}
    for r in rows.values():
        assert list(r) == ROW_FIELDS and r["seed"] == 0 and np.isfinite(r["fid"]) and r["fid"] > 0
        assert 0 <= r["accuracy"] <= 1 and r["seconds_per_image"] > 0
    vanilla = rows[("vanilla", 4, 4)]  # fidelity to itself; the others' to it
    assert vanilla["equal_tokens"] == 1.0 and vanilla["psnr"] == 100.0
    assert all(r["equal_tokens"] < 1 and 0 < r["psnr"] < 100 for r in rows.values() if r is not vanilla)
    assert np.isfinite(result["reference"]["fid_train_vs_test"]) and result["reference"]["num_samples"] == 12
    shared = result["settings"]["sampling"]  # --steps and --cfg given, r_temp from the weights' config
    assert (shared["steps"], shared["cfg_w"], shared["r_temp"]) == (4, 2.5, 4.5)
    assert result["settings"]["attention"] == "xla"  # jax.nn.dot_product_attention's XLA path, on this CPU
    assert result["settings"]["batch_size"] == 8 and result["complete"]  # the default batch fits the 8 samples
    assert len({r["fid"] for r in rows.values()}) == 4  # four different samplers, four different sample sets
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    table = capsys.readouterr().out
    assert "shortcut" in table and "±" in table and "PSNR" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "r.json"]  # no temporary files or sidecars left
    monkeypatch.setattr(run, "generate_batch", lambda *a: pytest.fail("a finished run sampled again"))
    finished = out.read_text()
    assert main(argv) == 0 and out.read_text() == finished  # the same command continues, here: nothing left


def test_cli_budget_above_steps_is_a_one_line_error(weights, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["--weights", weights[0], "--classifier", weights[1], "--steps", "4", "--budgets", "2", "5",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --budgets must be in 2..steps (4), got 5"
    assert not out.exists()


def test_cli_checks_come_before_real_images(weights, tmp_path, capsys, monkeypatch):
    """The schedule, a missing decoder and flags of the other family are one line, before any real image."""
    import shutil

    from migm_jax.eval import families

    monkeypatch.setattr(families, "read_split", lambda *a: pytest.fail("real images read before the checks"))
    out = tmp_path / "r.json"
    base = ["--classifier", weights[1], "--out", str(out)]
    assert main(["--weights", weights[0], "--steps", "300", "--budgets", "4", *base]) == 2
    assert capsys.readouterr().err.strip() == ("error: 300 steps of the arccos schedule cannot fill 16x16 tokens "
                                               "(the last step would fix -43); use fewer steps")
    no_decoder = tmp_path / "no_vqgan"
    shutil.copytree(weights[0], no_decoder)
    config = json.loads((no_decoder / "config.json").read_text())
    del config["configs"]["vqgan"]
    (no_decoder / "config.json").write_text(json.dumps(config))
    assert main(["--weights", str(no_decoder), *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {no_decoder} holds no image decoder (no 'vqgan')") and "\n" not in err
    assert main(["--weights", weights[0], "--temperature", "0.5", *base]) == 2
    assert capsys.readouterr().err.strip() == f"error: --temperature applies to dimoo weights; {weights[0]} holds maskgit weights"
    assert not out.exists()


def test_a_sampler_larger_than_the_device_is_one_line_and_writes_nothing(weights, shapes_data, tmp_path, capsys,
                                                                         monkeypatch):
    """XLA's memory analysis of a configuration's compiled sampler against what the device has (here made
    0.5 MiB): one line naming the configuration and the batch, and no results file or sidecar."""
    from migm_jax import memory

    monkeypatch.setattr(memory, "device_bytes", lambda device: 2**19)
    code = main(["--weights", weights[0], "--classifier", weights[1], "--data", shapes_data, "--num-samples", "4", "--seeds", "1",
                 "--steps", "4", "--budgets", "2", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    [line] = [x for x in err.replace("\r", "\n").splitlines() if "error" in x]  # the rest: progress bars
    assert code == 2 and line.startswith("error: sampling vanilla N=4 B=4 at batch 4 needs "), err
    assert line.endswith(" MiB of memory per device, the cpu has 0.5 MiB; use a smaller --batch-size"), err
    assert list(tmp_path.iterdir()) == []


def test_default_batch_and_ml_cache_plan():
    from migm_jax.eval.cli import parse_args
    from migm_jax.eval.plan import default_batch_size, ml_cache_settings
    from migm_jax.sampling.schedules import cache_refresh_plan

    assert [default_batch_size(n, d, b) for n, d, b in [(50, 1, "cpu"), (8, 1, "cpu"), (2000, 1, "gpu"), (3, 2, "cpu"),
                                                        (1000, 8, "tpu")]] == [13, 8, 500, 4, 504]
    assert ml_cache_settings(64, 28) == (19.5 / 64, 5)  # the original's ML-Cache: steps 0..19, then every 5th
    for steps, budget in [(64, 8), (64, 16), (64, 32), (16, 2), (16, 4), (4, 3), (8, 8)]:
        warmup, interval = ml_cache_settings(steps, budget)
        assert cache_refresh_plan(steps, warmup, interval).sum() == budget
    with pytest.raises(SystemExit):
        parse_args(["--help"])


# ------------------------------------------------------------------ DiMOO (text-to-image)

LAYOUT = {"mask": 492, "newline": 240, "boa": 510, "eoa": 511, "boi": 505, "eoi": 506, "uncond": 507,
          "text_vocab_size": 512, "codebook_size": 16}
CAPTIONS = ["red cube", "blue cube", "red table", "blue table", "red bench", "blue bench"]  # label = the object
ROW_FIELDS = ["mode", "steps", "budget", "seed", "fid", "accuracy", "equal_tokens", "psnr", "seconds_per_image"]


@pytest.fixture(scope="module")
def dimoo(tmp_path_factory):
    """(dimoo weights dir, classifier dir, records of a captioned split): a random tiny LLaDA (vocab 512 text +
    16 codes), its shortcut and a VQModel (f = 4: 16px images of 4x4 tokens), the test tokenizer, a 3-class
    16px classifier and 6 captioned images."""
    pytest.importorskip("transformers")
    from tryout import save_random_classifier, save_tokenizer, small_tokens

    from migm_jax.apps.maskgit import random_params
    from migm_jax.models.classifier import ClassifierConfig
    from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
    from migm_jax.models.llada import LLaDA, LLaDAConfig
    from migm_jax.models.vqmodel import VQModel, VQModelConfig
    from migm_jax.weights import save_weights

    root, key = tmp_path_factory.mktemp("dimoo"), jax.random.PRNGKey(0)
    llada = LLaDAConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp_hidden_size=64, vocab_size=528,
                        embedding_size=528, max_sequence_length=64)
    shortcut = DiMOOShortcutConfig.from_llada(llada)
    vq = VQModelConfig(block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                       num_vq_embeddings=16)
    feat = jnp.zeros((1, 2, 32))
    params = {"llada": random_params(lambda: LLaDA(llada).init(key, jnp.zeros((1, 2), jnp.int32)), 0),
              "shortcut": random_params(lambda: DiMOOShortcut(shortcut).init(key, feat, feat, jnp.ones((1, 2), bool),
                                                                            jnp.ones((1,))), 1),
              "vq": random_params(lambda: VQModel(vq).init(key, jnp.zeros((1, 1, 1), jnp.int32),
                                                           method=VQModel.decode_code), 2)}
    configs = {"llada": llada.to_dict(), "layout": LAYOUT, "shortcut": shortcut.to_dict(), "vq": vq.to_dict(),
               "sampling": {"steps": 4, "cfg_scale": 2.0, "temperature": 0.8}}
    save_weights(root / "weights", "dimoo", configs, params)
    save_tokenizer(root / "weights" / "tokenizer", small_tokens())
    save_random_classifier(root / "classifier", ClassifierConfig(nclass=3, widths=(8,), feature_dim=8, resolution=16), 3)
    rng = np.random.default_rng(0)
    records = {"image": rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8),
               "label": np.array([0, 0, 1, 1, 2, 2], np.int32), "caption": np.array(CAPTIONS, dtype=object)}
    return str(root / "weights"), str(root / "classifier"), records


def dimoo_args(dimoo, out, *extra):
    return ["--weights", dimoo[0], "--classifier", dimoo[1], "--data", str(out.parent), "--num-samples", "7",
            "--seeds", "1", "--cfg", "0", "--cache-ratio", "0.1", "--budgets", "2", "--batch-size", "4",
            "--dtype", "float32", "--out", str(out), *extra]


def test_dimoo_harness_end_to_end(dimoo, tmp_path, capsys, monkeypatch):
    """Every mode at one budget: caption i % 6 per image, the split's images of those captions as the reference,
    fidelity to vanilla (itself: all tokens equal, PSNR at its cap), the time per image of the 7 images asked
    for (2 batches of 4: the padding row costs time but is no image), the table and plots; a killed run
    continues."""
    from migm_jax.eval import families, run

    monkeypatch.setattr(families, "read_split", lambda data, split, indices=None: dimoo[2])
    timed = run.generate_batch
    monkeypatch.setattr(run, "generate_batch", lambda *a: (*timed(*a)[:2], 0.5))  # every batch takes 0.5 s
    out = tmp_path / "r.json"
    assert main(dimoo_args(dimoo, out, "--plot", str(tmp_path / "p.png"))) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    rows = {(r["mode"], r["steps"], r["budget"]): r for r in result["results"]}
    assert list(rows) == [("vanilla", 4, 4), ("fewer_steps", 2, 2), ("reuse", 4, 2), ("ml_cache", 4, 2),
                          ("shortcut", 4, 2)]
    for r in rows.values():
        assert list(r) == ROW_FIELDS and r["seed"] == 0 and np.isfinite(r["fid"]) and 0 <= r["accuracy"] <= 1
        assert 0 <= r["equal_tokens"] <= 1 and 0 < r["psnr"] <= 100 and r["seconds_per_image"] == 1.0 / 7
    assert rows[("vanilla", 4, 4)]["equal_tokens"] == 1.0 and rows[("vanilla", 4, 4)]["psnr"] == 100.0
    others = [r for k, r in rows.items() if k[0] != "vanilla"]
    assert all(r["equal_tokens"] < 1 and r["psnr"] < 100 for r in others)
    assert len({r["fid"] for r in rows.values()}) == 5  # five samplers, five sample sets
    s = result["settings"]
    assert (s["family"], s["prompts"], s["split"], s["dtype"], s["image_conversion"]) == \
        ("dimoo", 6, "train", "float32", "codes_to_uint8")
    shared = s["sampling"]  # --cfg 0 (one sequence per image: half the compile time), --cache-ratio given
    assert (shared["steps"], shared["cfg_scale"], shared["temperature"], shared["cache_ratio"]) == (4, 0.0, 0.8, 0.1)
    assert set(result["reference"]) == {"accuracy_real", "num_samples"} and result["complete"]
    with Image.open(tmp_path / "p.png") as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    table = capsys.readouterr().out
    assert "ml_cache" in table and "PSNR" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "r.json"]
    # killed in the second configuration (vanilla done, its codes kept; fewer_steps' first batch saved): the
    # same command continues to the same rows
    killed, killer = tmp_path / "k" / "r.json", BatchKiller(monkeypatch, kill_at=4)
    with pytest.raises(RuntimeError, match="killed"):
        main(dimoo_args(dimoo, killed))
    assert sorted(p.name for p in killed.parent.iterdir()) == ["r.json", "r.json.codes.npz", "r.json.partial.npz"]
    killer.resume()
    assert main(dimoo_args(dimoo, killed)) == 0 and len(killer.calls) == 7  # fewer_steps' last batch, 3 x 2 batches
    timeless = lambda path: [{k: v for k, v in r.items() if k != "seconds_per_image"}
                             for r in json.loads(path.read_text())["results"]]
    assert timeless(killed) == timeless(out)
    assert sorted(p.name for p in killed.parent.iterdir()) == ["r.json"]


def test_dimoo_images_are_drawn_from_the_captions(dimoo):
    """Image i gets caption i % n and the label of its records; its real counterpart cycles through them."""
    from migm_jax.eval.families import prompts_of

    records = dict(dimoo[2], caption=np.array(CAPTIONS + ["red cube"], dtype=object),
                   image=np.concatenate([dimoo[2]["image"], dimoo[2]["image"][:1] // 2]),
                   label=np.array([0, 0, 1, 1, 2, 2, 0], np.int32))
    captions, labels, rows = prompts_of(records, None, "here")
    assert captions == tuple(CAPTIONS) and labels.tolist() == [0, 0, 1, 1, 2, 2] and rows[0].tolist() == [0, 6]
    with pytest.raises(ValueError, match="^here: the caption 'red cube' has records of classes 0 and 1;"):
        prompts_of(dict(records, label=np.array([0, 0, 1, 1, 2, 2, 1], np.int32)), None, "here")


def test_dimoo_one_line_errors_before_any_work(dimoo, tmp_path, capsys, monkeypatch):
    from migm_jax.eval import families

    monkeypatch.setattr(families, "read_split", lambda data, split, indices=None: dimoo[2])
    out = tmp_path / "r.json"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("red cube\ngreen cube\n")
    for extra, message in [
            (["--r-temp", "2"], f"--r-temp applies to maskgit weights; {dimoo[0]} holds dimoo weights"),
            (["--steps", "17"], "--steps 17: a 16px image has 16 tokens; give at most 16 steps (a step that fixes no "
                                "token is a base-model call for nothing)"),
            (["--prompt-file", str(prompts)], f"--prompt-file {prompts}: 'green cube' is no caption of --data "
                                              f"{tmp_path} split train (1 such line(s)); the FID needs each prompt's "
                                              "real images")]:
        assert main(dimoo_args(dimoo, out, *extra)) == 2
        assert capsys.readouterr().err.strip() == f"error: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt"]
