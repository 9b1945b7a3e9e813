"""Quality harness: the Frechet distance against closed forms, streaming statistics, the CLI end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from migm_jax.eval.__main__ import main
from migm_jax.eval.fid import FeatureStats, fid_from_features, frechet_distance


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
    from migm_jax.apps.maskgit import FAMILY, demo_pipeline, random_params
    from migm_jax.eval.classifier import FAMILY as CLASSIFIER, ClassifierConfig, FeatureClassifier
    from migm_jax.weights import save_weights

    root = tmp_path_factory.mktemp("weights")
    models, params = demo_pipeline(0)
    configs = {"transformer": models.transformer.to_dict(), "shortcut": models.shortcut.to_dict(),
               "vqgan": models.vqgan.to_dict(), "sampling": {"steps": 6, "cfg_w": 1.0, "r_temp": 4.5}}
    save_weights(root / "maskgit", FAMILY, configs, params)
    cfg = ClassifierConfig(widths=(8, 16), feature_dim=16)
    clf = random_params(lambda: FeatureClassifier(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.uint8)), 3)
    save_weights(root / "classifier", CLASSIFIER, {"classifier": cfg.to_dict()}, {"classifier": clf})
    return str(root / "maskgit"), str(root / "classifier")


def test_cli_end_to_end(weights, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "p.png"
    code = main(["--weights", weights[0], "--classifier", weights[1], "--num-samples", "8", "--seeds", "1",
                 "--steps", "4", "--cfg", "2.5", "--attention", "xla", "--budgets", "2", "--batch-size", "8", "--out", str(out), "--plot", str(png)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    rows = {(r["mode"], r["steps"], r["budget"]): r for r in result["results"]}
    assert set(rows) == {("vanilla", 4, 4), ("fewer_steps", 2, 2), ("reuse", 4, 2), ("shortcut", 4, 2)}
    for r in rows.values():
        assert r["seed"] == 0 and np.isfinite(r["fid"]) and r["fid"] > 0 and 0 <= r["accuracy"] <= 1
        assert r["seconds_per_image"] > 0
    assert np.isfinite(result["reference"]["fid_train_vs_test"]) and result["reference"]["num_samples"] == 8
    shared = result["settings"]["sampling"]  # --steps and --cfg given, r_temp from the weights' config
    assert (shared["steps"], shared["cfg_w"], shared["r_temp"]) == (4, 2.5, 4.5)
    assert result["settings"]["attention"] == "xla"  # jax.nn.dot_product_attention's XLA path, on this CPU
    assert len({r["fid"] for r in rows.values()}) == 4  # four different samplers, four different sample sets
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    table = capsys.readouterr().out
    assert "shortcut" in table and "±" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "r.json"]  # no temporary files left


def test_cli_budget_above_steps_is_a_one_line_error(weights, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["--weights", weights[0], "--classifier", weights[1], "--steps", "4", "--budgets", "2", "5",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --budgets must be in 2..steps (4), got 5"
    assert not out.exists()
