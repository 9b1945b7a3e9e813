"""Base-model training from scratch (VQGAN, MaskGIT transformer, feature classifier) through the demo
configs at tiny sizes, on tiny datasets served in memory: loss decreases, a resumed run repeats the
uninterrupted one exactly, exports load, and the chain VQGAN -> transformer -> shortcut ends in a weights dir
that sample.py draws from."""

import json
import os

import numpy as np
import pytest

from migm_jax.training import loop
from migm_jax.training.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["render_images=4", "batch_size=4", "val_batches=1", "ckpt_every=2", "val_every=4", "compute_dtype=float32",
          "warmup_steps=0", "async_ckpt=False", "preview_images=2", "total_steps=4"]
VQGAN = COMMON + ["model.ch=32", "model.z_channels=32", "model.embed_dim=8", "model.n_embed=32", "lr=1e-3",
                  "objective.restart_every=3"]
TRANSFORMER = COMMON + ["model.hidden=32", "model.depth=1", "model.heads=2", "model.mlp_dim=64", "model.codebook_size=32",
                        "sampling.steps=4", "lr=3e-3", "attention_impl=None"]  # the config's cuDNN attention: GPU only
CLASSIFIER = COMMON + ["model.widths=(8, 16)", "model.feature_dim=16", "lr=3e-3"]


def config(name, overrides, data_dir=None):
    """configs/fashion_<name>.py with `overrides` (+ data_dir when given)."""
    extra = [] if data_dir is None else [f"data_dir={data_dir!r}"]
    return load_config(os.path.join(ROOT, "configs", f"fashion_{name}.py"), overrides + extra)


def fashion_split(split: str) -> tuple[dict, dict]:
    """A tiny Fashion-MNIST stand-in (records, meta): 28x28 grey images of a bright box on black whose size and
    brightness tell their label (3i % 10; the test split's boxes one pixel larger), padded to 32x32 RGB as the
    builder writes them; 4 images a split (one batch)."""
    from migm_jax.data.fashion import CLASS_NAMES, to_rgb

    labels = (np.arange(4) * 3 % 10).astype(np.int32)
    grey = np.zeros((4, 28, 28), np.uint8)
    for image, label in zip(grey, labels):
        half = 3 + label + (split != "train")
        image[14 - half:14 + half, 14 - half:14 + half] = 100 + 15 * label
    data = {"image": to_rgb(grey), "label": labels, "caption": np.asarray([""] * 4, object)}
    return data, {"resolution": 32, "class_names": list(CLASS_NAMES)}


def served(folder: str, split_fn):
    """A data_dir (`folder`) whose splits `open_split` serves from `split_fn(split)` (other folders read as
    before), while the generator is open."""
    from migm_jax.pretrain import images

    real = images.open_split

    def open_split(data_dir, split):
        return images.InMemory(*split_fn(split)) if data_dir == folder else real(data_dir, split)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "open_split", open_split)
        yield folder


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    yield from served(str(tmp_path_factory.mktemp("fashion")), fashion_split)


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def train_resume_export(cfg, tmp):
    """Trains cfg straight and in two parts (2 steps, then resumed to 4); checks the loss falls and the
    two runs agree exactly; returns the export of the straight run."""
    loop.train(cfg, str(tmp / "straight"), progress=False)
    loop.train(load_config_like(cfg, total_steps=2), str(tmp / "parts"), progress=False)
    loop.train(cfg, str(tmp / "parts"), progress=False)
    straight = losses(tmp / "straight")
    assert straight == losses(tmp / "parts")
    assert [s for s, _ in straight] == [1, 2, 3, 4]
    assert min(l for _, l in straight[2:]) < straight[0][1], straight
    return loop.export(cfg, str(tmp / "straight"), str(tmp / "export"))["weights"]


def load_config_like(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def tokenizer(fashion_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vqgan")
    weights = train_resume_export(config("vqgan", VQGAN, fashion_dir), tmp)
    with open(tmp / "straight" / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    assert 0 < last["val/usage"] <= 1 and np.isfinite(last["val/psnr"])
    assert os.path.isfile(tmp / "straight" / "samples" / "step_0000004.png")  # originals + reconstructions
    return weights


@pytest.fixture(scope="module")
def teacher(tokenizer, fashion_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("transformer")
    weights = train_resume_export(config("transformer", TRANSFORMER + [f"tokenizer={tokenizer!r}"], fashion_dir), tmp)
    assert os.path.isfile(tmp / "straight" / "samples" / "step_0000004.png")
    return weights


def test_vqgan_export_is_a_bfloat16_tokenizer(tokenizer):
    from migm_jax.weights import load_weights

    family, configs, params = load_weights(tokenizer)
    assert family == "maskgit" and set(configs) == {"vqgan"}
    assert params["vqgan"]["quantize"]["embedding"].dtype.name == "bfloat16"  # demo configs export bf16
    for root, _, files in os.walk(tokenizer):  # a weights dir ships: no file names the folder it was saved in
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert os.path.dirname(tokenizer).encode() not in f.read(), name


def test_classifier_trains_and_resumes(fashion_dir, tmp_path, monkeypatch):
    """The classifier trains, resumes exactly and exports; a train step that needs more memory than the device
    has (here made 64 KiB) is refused in one line before the first step, leaving no folder."""
    from migm_jax import memory
    from migm_jax.models.classifier import load_classifier

    ccfg, params = load_classifier(train_resume_export(config("classifier", CLASSIFIER, fashion_dir), tmp_path))
    assert ccfg.widths == (8, 16) and params["logits"]["kernel"].shape == (16, 10)
    monkeypatch.setattr(memory, "device_bytes", lambda device: 2**16)
    with pytest.raises(ValueError, match=r"^the train step at batch_size 4 needs \S+ MiB of memory per device, the "
                                         r"cpu has 0.1 MiB; lower batch_size \(--set batch_size=B;") as e:
        loop.train(config("classifier", CLASSIFIER, fashion_dir), str(tmp_path / "small"), progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "small").exists()


def test_transformer_then_shortcut_export_samples(teacher, tmp_path):
    """The transformer export (transformer + VQGAN + class names) teaches a shortcut whose export
    sample.py draws from with its recommended settings: a labelled grid, a row per mode."""
    from PIL import Image

    import sample

    cfg = config("shortcut", [f"teacher_weights={teacher!r}", "shortcut.heads=2", "sampling.steps=4", "sampling.budget=2",
                              "online_images=2", "online_reuse=2", "val_images=1", "batch_size=4", "total_steps=2",
                              "ckpt_every=2", "val_every=0", "compute_dtype=float32", "teacher_dtype=float32",
                              "async_ckpt=False", "log_kl=False"])
    loop.train(cfg, str(tmp_path / "run"), progress=False)
    weights = loop.export(cfg, str(tmp_path / "run"), str(tmp_path / "export"))["weights"]
    out = tmp_path / "grid.png"
    assert sample.main(["--weights", weights, "--labels", "0", "3", "--dtype", "float32", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w > 2 * 2 * 32 and h > 2 * 2 * 32  # two columns, two rows (vanilla N=4, shortcut B=2) of 2x images


# The DiMOO family: VQModel tokenizer -> text-to-image LLaDA, on a tiny captioned dataset in memory (8x8
# "emoji" in two styles) fed through the one function every task reads datasets with. The VQModel has one
# level (f = 1: 8x8 codes; the least to compile); the configs' f = 4 is a setting of the same code.
EMOJI_NAMES = ["red circle", "green square", "blue circle", "yellow square", "red square", "green circle",
               "blue square", "yellow circle"]
EMOJI = ["model.block_out_channels=(8,)", "model.norm_num_groups=8", "model.latent_channels=8",
         "model.vq_embed_dim=4", "model.num_vq_embeddings=32"]
TEXT_TO_IMAGE = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=2",
                 "model.mlp_hidden_size=64", "sampling.steps=4", "lr=3e-3", "attention_impl=None"]


def emoji_split(split):
    """Records of the tiny dataset: train = style 'twemoji' of every name + 'noto' of the first half, heldout =
    'noto' of the second half (noto: a black outline)."""
    colors = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 200, 20)}
    half = len(EMOJI_NAMES) // 2
    pairs = [("twemoji", i) for i in range(len(EMOJI_NAMES))] + [("noto", i) for i in range(half)]
    if split == "heldout":
        pairs = [("noto", i) for i in range(half, len(EMOJI_NAMES))]
    yy, xx = np.mgrid[:8, :8]
    images, labels, captions = [], [], []
    for style, i in pairs:
        color, shape = EMOJI_NAMES[i].split()
        inside = (np.hypot(yy - 3.5, xx - 3.5) < 3) if shape == "circle" else (abs(yy - 3.5) < 2.5) & (abs(xx - 3.5) < 2.5)
        img = np.full((8, 8, 3), 255, np.uint8)
        img[inside] = colors[color]
        if style == "noto":
            img[inside & ~np.roll(inside, 1, 0) | inside & ~np.roll(inside, 1, 1)] = 0
        images.append(img)
        labels.append(i)
        captions.append(f"{style} {EMOJI_NAMES[i]}")
    meta = {"resolution": 8, "class_names": EMOJI_NAMES, "caption_styles": ["twemoji", "noto"]}
    data = {"image": np.stack(images), "label": np.asarray(labels, np.int32), "caption": np.asarray(captions, object)}
    return data, meta


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory):
    yield from served(str(tmp_path_factory.mktemp("emoji")), emoji_split)


def emoji_config(name, overrides, data_dir):
    return load_config(os.path.join(ROOT, "configs", f"emoji_{name}.py"), COMMON + overrides + [f"data_dir={data_dir!r}"])


@pytest.fixture(scope="module")
def vq_tokenizer(emoji_dir, tmp_path_factory):
    """The VQModel trained on the tiny emoji (without validation: the VQ task's is tested with the VQGAN)."""
    return train_resume_export(emoji_config("vq", EMOJI + ["val_every=0"], emoji_dir), tmp_path_factory.mktemp("vqmodel"))


@pytest.fixture(scope="module")
def emoji_teacher(emoji_dir, vq_tokenizer, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text_to_image")
    cfg = emoji_config("teacher", TEXT_TO_IMAGE + [f"tokenizer={vq_tokenizer!r}"], emoji_dir)
    return cfg, train_resume_export(cfg, tmp), tmp


def test_vqmodel_export_is_a_dimoo_tokenizer(vq_tokenizer):
    from migm_jax.weights import load_weights

    family, configs, params = load_weights(vq_tokenizer)
    assert family == "dimoo" and set(configs) == {"vq"} and configs["vq"]["block_out_channels"] == [8]
    assert params["vq"]["quantize"]["embedding"]["embedding"].dtype.name == "bfloat16"


def test_text_to_image_sequences_are_the_samplers(emoji_dir, emoji_teacher):
    """The exported tokenizer reads back with the layout of the export, and the training sequences are
    build_sequences' (full caption, caption without its style word, uncond prompt) with codes written in."""
    import jax

    from migm_jax.sampling.dimoo_prompts import TokenLayout, build_sequences, image_offsets, load_tokenizer
    from migm_jax.sharding import make_mesh
    from migm_jax.weights import read_config

    cfg, weights, tmp = emoji_teacher
    _, configs = read_config(weights)
    layout = TokenLayout.from_dict(configs["layout"])
    tok = load_tokenizer(os.path.join(weights, "tokenizer"))
    assert TokenLayout.from_tokenizer(tok, layout.vocab_size, layout.codebook_size) == layout
    assert configs["llada"]["vocab_size"] == layout.vocab_size == len(tok) + 32
    assert (tmp / "straight" / "tokenizer" / "tokenizer.json").read_bytes() == \
        open(os.path.join(weights, "tokenizer", "tokenizer.json"), "rb").read()
    task = loop.build_task(cfg, make_mesh(devices=jax.devices()[:1]))
    caption = "twemoji red circle"  # record 0
    assert task.captions["train"][0] == caption
    assert "[UNK]" not in tok.convert_ids_to_tokens(tok(caption)["input_ids"])
    want = {}
    for name, text in (("full", caption), ("short", "red circle")):
        seq = build_sequences(tok, [text], 8, 8, layout, vae_scale=1)
        want[name] = np.asarray(seq.cond_ids[0]), int(seq.prompt_len[0])
    want["uncond"] = np.asarray(seq.uncond_ids[0]), int(seq.uncond_len[0])
    batch = jax.tree.map(jax.numpy.asarray, task.source.train.read(np.arange(4)))
    sequences = jax.jit(task._sequences, static_argnums=(2, 3))
    for drops, name in (((0.0, 0.0), "full"), ((0.0, 1.0), "short"), ((1.0, 0.0), "uncond")):
        ids, lengths, cols, codes, mask = jax.device_get(sequences(batch, jax.random.PRNGKey(0), *drops))
        (expect, plen), got = want[name], ids[0].copy()
        assert lengths[0] == len(expect) and mask[0].any()
        np.testing.assert_array_equal(cols[0], plen + image_offsets((8, 8)))
        np.testing.assert_array_equal(got[cols[0]], np.where(mask[0], layout.mask, codes[0] + layout.text_vocab_size))
        got[cols[0]] = layout.mask
        np.testing.assert_array_equal(got[:len(expect)], expect)
        assert (got[len(expect):] == 0).all()


def test_text_to_image_export_samples_and_teaches_a_shortcut(emoji_dir, emoji_teacher, tmp_path):
    """sample.py draws from the teacher's export (a DiMOO weights dir with tokenizer, f = 1), and the DiMOO
    shortcut training takes it as its teacher with prompts from a file."""
    from PIL import Image

    import sample
    from migm_jax.training.loop import build_family

    cfg, weights, tmp = emoji_teacher
    assert os.path.isfile(tmp / "straight" / "samples" / "step_0000004.png")
    out = tmp_path / "grid.png"
    assert sample.main(["--weights", weights, "--prompt", "noto red square", "blue circle", "--height", "8",
                        "--width", "8", "--steps", "4", "--dtype", "float32", "--out", str(out)]) == 0
    assert Image.open(out).size == (2 * 10 + 2, 10 + 2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("twemoji red circle\ngreen square\n")
    shortcut = load_config(os.path.join(ROOT, "configs", "emoji_shortcut.py"),
                           [f"teacher_weights={weights!r}", f"teacher.prompts={str(prompts)!r}", "teacher.grid=[8, 8]",
                            "sampling.steps=4", "sampling.budget=2"])
    family, teacher, _, configs, _ = build_family(shortcut)
    assert family.grid == (8, 8) and family.llada.d_model == 32 and set(configs) >= {"llada", "layout", "vq"}
    assert len(family.prompt_ids) == 2 and family.sampling.steps == 4 and family.sampling.mode == "vanilla"


def test_text_tokenizer_is_sorted_and_deterministic():
    import json

    from migm_jax.pretrain.text_tokenizer import SPECIAL_TOKENS, tokenizer_files

    captions = ["noto waving hand: medium skin tone", "twemoji grinning face"]
    files = tokenizer_files(captions)
    assert tokenizer_files(captions[::-1]) == files
    vocab = json.loads(files["tokenizer.json"])["model"]["vocab"]
    words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])][len(SPECIAL_TOKENS):]
    assert words == sorted(words) and {"hand", ":", "grinning", "prompt", "."} <= set(words)
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS))) and vocab["[PAD]"] == 0


def test_dimoo_family_tasks_check_their_inputs(emoji_dir, vq_tokenizer, tmp_path):
    """One-line errors before any work: task and family, a text tokenizer built from other captions than the
    run's, vocab sizes given by hand, a class count that does not fit the dataset (left out: the dataset's)."""
    import dataclasses

    import jax

    from migm_jax.sharding import make_mesh
    from migm_jax.training.config import ConfigError

    mesh = make_mesh(devices=jax.devices()[:1])
    vq = emoji_config("vq", EMOJI, emoji_dir)
    with pytest.raises(ConfigError, match="task vqmodel trains a model of family dimoo, got family 'maskgit'"):
        dataclasses.replace(vq, family="maskgit").validate()
    teacher = emoji_config("teacher", TEXT_TO_IMAGE + [f"tokenizer={vq_tokenizer!r}"], emoji_dir)
    with pytest.raises(ConfigError, match="task text_to_image needs data_dir"):
        dataclasses.replace(teacher, data_dir=None).validate()
    with pytest.raises(ConfigError, match="leave out vocab_size"):
        loop.build_task(dataclasses.replace(teacher, model={**teacher.model, "vocab_size": 99}), mesh)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match="built from other captions"):
        loop.build_task(teacher, mesh, str(tmp_path))
    classifier = emoji_config("classifier", [], emoji_dir)
    assert loop.build_task(classifier, mesh).ccfg.nclass == len(EMOJI_NAMES)
    with pytest.raises(ConfigError, match="model.nclass 10 does not fit the dataset's 8 classes"):
        loop.build_task(dataclasses.replace(classifier, model={**classifier.model, "nclass": 10}), mesh)
