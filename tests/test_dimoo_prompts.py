"""DiMOO prompt templates and sequence layout, with the tiny word-level tokenizer of tests/tryout.py."""

import os

import numpy as np
import pytest

from migm_jax.sampling.dimoo_prompts import (PromptBatch, TokenLayout, build_sequences, image_offsets, load_tokenizer,
                                             prompt_strings)
from tryout import SMALL, save_tokenizer, small_tokens

pytest.importorskip("transformers")

SMALL_TOKENS = small_tokens()  # '<uncondition>': 507, ...: the fixture LLaDA's ids


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The small layout's tokenizer (its special tokens at the SMALL ids), saved and reloaded."""
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(path, SMALL_TOKENS)
    return load_tokenizer(str(path))


def original_layout(tokenizer, prompt, h, w, L):
    """The original infer.py recipe, written out with plain lists."""
    cond, uncond = prompt_strings(prompt)
    c, u = tokenizer(cond)["input_ids"], tokenizer(uncond)["input_ids"]
    gh, gw = h // 16, w // 16
    img = []
    for _ in range(gh):
        img += [L.mask] * gw + [L.newline]
    return c + [L.boa, L.boi] + img + [L.eoi, L.eoa], u, len(c) + 2


def test_templates_are_the_originals():
    c, u = prompt_strings("A photo of a bench.")
    assert c == "<system>Generate an image according to the text prompt.</system><user>A photo of a bench.</user>"
    assert u == "<system>Generate an image according to the text prompt.</system><user><uncondition></user>"


def test_real_and_small_layouts():
    real = TokenLayout.real()
    assert (real.mask, real.newline, real.boa, real.eoa, real.boi, real.eoi, real.uncond) == \
        (126336, 126084, 126354, 126355, 126349, 126350, 126351)
    assert real.vocab_size == 134548
    small = TokenLayout.from_dict(SMALL)
    assert small.mask == 492 and small.vocab_size == 768
    with pytest.raises(ValueError, match="vocab_size 700"):
        TokenLayout.from_dict(dict(SMALL, vocab_size=700))
    with pytest.raises(ValueError, match="lacks boi"):
        TokenLayout.from_dict({k: v for k, v in SMALL.items() if k != "boi"})
    real.check()
    small.check()
    with pytest.raises(ValueError, match="x: special ids must be distinct, but newline and boi are both 505"):
        TokenLayout.from_dict(dict(SMALL, newline=505)).check("x")


def test_tokenizer_no_bos_and_uncond_ids(tokenizer):
    _, u = prompt_strings("x")
    ids = tokenizer(u)["input_ids"]
    assert ids == [500, 3, 4, 5, 6, 7, 8, 9, 10, 11, 501, 502, 507, 503]  # 14 ids like the real uncond prompt


def test_batch_layout_matches_the_original(tokenizer):
    L = TokenLayout.from_dict(SMALL)
    prompts = ["a red cube on a blue table", "a photo of a bench ."]
    batch = build_sequences(tokenizer, prompts, 48, 64, L)
    assert batch.grid == (3, 4)
    for i, p in enumerate(prompts):
        ids, uncond, code_start = original_layout(tokenizer, p, 48, 64, L)
        n = len(ids)
        assert np.asarray(batch.cond_ids[i])[:n].tolist() == ids
        assert np.asarray(batch.cond_valid[i]).tolist() == [True] * n + [False] * (batch.cond_ids.shape[1] - n)
        assert int(batch.prompt_len[i]) + 2 == code_start
        # the image cells: the original's x[code_start : L-2] without newlines, row-major
        cells = [j for j in range(code_start, n - 2) if ids[j] != L.newline]
        assert np.asarray(batch.cond_image_positions()[i]).tolist() == cells
        # uncond = uncond prompt + x[code_start - 2:]
        assert np.asarray(batch.uncond_ids[i]).tolist() == uncond + ids[code_start - 2:]
        assert np.asarray(batch.uncond_valid[i]).all() and int(batch.uncond_len[i]) == len(uncond)
        assert (np.asarray(batch.uncond_ids[i])[np.asarray(batch.uncond_image_positions()[i])] == L.mask).all()
    assert image_offsets((3, 4)).tolist() == [2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15]


def test_pad_to_fixes_the_shape(tokenizer):
    L = TokenLayout.from_dict(SMALL)
    a = build_sequences(tokenizer, ["a red cube"], 32, 32, L, pad_to=30)
    assert a.cond_ids.shape == (1, 30 + 2 * 3 + 4)
    b = PromptBatch.from_ids([[1, 2, 3]], [[7, 8]], (2, 2), L)
    assert b.cond_ids.shape == (1, 3 + 10) and b.uncond_ids.shape == (1, 2 + 10)


@pytest.mark.parametrize("prompts,h,w,kw,msg", [
    (["ok", "  "], 32, 32, {}, "prompt 1 is empty"),
    ([""], 32, 32, {}, "prompt 0 is empty"),
    ([], 32, 32, {}, "no prompts given"),
    (["a red cube"], 40, 32, {}, r"image size 40x32 must be positive multiples of 16"),
    (["a red cube"], 32, 0, {}, "must be positive multiples"),
    (["a red cube on a blue table"], 32, 32, {"max_prompt_len": 19}, r"prompt 0 is 20 tokens .* at most 19"),
])
def test_errors(tokenizer, prompts, h, w, kw, msg):
    with pytest.raises(ValueError, match=msg):
        build_sequences(tokenizer, prompts, h, w, TokenLayout.from_dict(SMALL), **kw)


def test_wrong_layout_is_detected(tokenizer):
    with pytest.raises(ValueError, match="does not map <uncondition> to 126351"):
        build_sequences(tokenizer, ["a red cube"], 32, 32, TokenLayout.real())


@pytest.fixture()
def weights_without_params(tmp_path, tokenizer):
    """A weights dir holding only config.json and the tokenizer: any attempt to read params fails."""
    import json

    from migm_jax.models.llada import LLaDAConfig
    from migm_jax.models.vqmodel import VQModelConfig

    llada = LLaDAConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=4, mlp_hidden_size=128, vocab_size=768,
                        embedding_size=768, max_sequence_length=19)
    vq = VQModelConfig(block_out_channels=(16, 32, 32), num_vq_embeddings=256)
    configs = {"llada": llada.to_dict(), "vq": vq.to_dict(), "layout": TokenLayout.from_dict(SMALL).to_dict()}
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"family": "dimoo", "configs": configs}, f)
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    return str(tmp_path)


@pytest.mark.parametrize("argv,msg", [
    (["--prompt", "a red cube", " "], "prompt 1 is empty"),
    ([], r"give --prompt TEXT"),
    (["--prompt", "a red cube on a blue table"], r"prompt 0 is 20 tokens .* at most 19 \(max_sequence_length\)"),
    (["--prompt", "a red cube", "--height", "30"], r"image size 30x32 must be positive multiples of 4"),
    (["--prompt", "a red cube", "--mode", "shortcut", "--budget", "9", "--steps", "8"], r"--budget must be in 2..steps \(8\)"),
    (["--prompt", "a red cube", "--mode", "shortcut", "--budget", "4", "--steps", "8"], "holds no shortcut"),
    (["--prompt", "a red cube", "--mode", "cache", "--cache-ratio", "1.5"], r"cache_ratio must be in \(0, 1\)"),
    (["--prompt", "a red cube", "a green cube"], r"prompt 'a green cube': the word 'green' is not in the model's "
                                                 r"vocabulary; `python sample.py --list-prompts --weights .*` lists"),
    (["--prompt", "a red cube", "--steps", "65"], "65 steps for an image of 64 tokens"),
])
def test_sample_args_fail_before_reading_weights(weights_without_params, argv, msg):
    import argparse

    from migm_jax.apps import dimoo

    p = argparse.ArgumentParser()
    for flag, kw in [("--mode", dict(default="vanilla")), ("--steps", dict(type=int)), ("--budget", dict(type=int)),
                     ("--cfg", dict(type=float)), ("--seed", dict(type=int, default=1)),
                     ("--batch-size", dict(type=int)), ("--dtype", dict(default="float32")), ("--attention", {}),
                     ("--out", dict(default="x.png")), ("--save-each", dict(action="store_true"))]:
        p.add_argument(flag, **kw)
    dimoo.add_sample_args(p)
    args = p.parse_args(["--height", "32", "--width", "32"] + argv)
    args.weights = weights_without_params
    with pytest.raises(ValueError, match=msg):
        dimoo.run_sample(args)
    args = p.parse_args(["--height", "32", "--width", "32", "--prompt", "a red cube"])
    args.weights = weights_without_params
    with pytest.raises(FileNotFoundError, match="params missing"):  # valid arguments: only now the params are read
        dimoo.run_sample(args)


def layout_folder(path, tokens: dict, llada: dict, vq: dict) -> str:
    """The small parts of a Lumina-DiMOO-shaped folder: the LLaDA fixture's config.json, the VQ fixture's
    vqvae/config.json (both with overrides) and a tokenizer with `tokens`."""
    import json

    from conftest import fixture_path

    os.makedirs(path / "vqvae")
    for src, dst, over in ((fixture_path("llada", "config.json"), path / "config.json", llada),
                           (fixture_path("dimoo_vqvae", "vqvae", "config.json"), path / "vqvae" / "config.json", vq)):
        with open(src) as f:
            cfg = json.load(f)
        with open(dst, "w") as f:
            json.dump({**cfg, **over}, f)
    save_tokenizer(path, tokens)
    return str(path)


# the fixture folder: 768 logit columns, a 128-code VQ: the codes are the last 128 columns
FOLDER_LAYOUT = TokenLayout.from_dict({**SMALL, "text_vocab_size": 640, "codebook_size": 128, "vocab_size": 768})
RELEASED = {"vocab_size": 134548, "embedding_size": 134548, "mask_token_id": 126336}
RELEASED_TOKENS = {"<|mdm_mask|>": 126336, "<uncondition>": 126351}  # the two confirmed released strings


@pytest.mark.parametrize("tokens,llada,vq,want", [
    (SMALL_TOKENS, {}, {}, FOLDER_LAYOUT),
    (RELEASED_TOKENS, RELEASED, {"num_vq_embeddings": 8192}, TokenLayout.real()),
    # a released-sized vocabulary whose tokenizer puts the mask elsewhere is not the released model
    ({**RELEASED_TOKENS, "<|mdm_mask|>": 126337}, RELEASED, {"num_vq_embeddings": 8192},
     r"tokenizer.json: no token '<newline>' \(newline\), '<Image>' \(boi\), '</Image>' \(eoi\), '<answer>' "
     r"\(boa\), '</answer>' \(eoa\); the image token layout needs"),
    ({k: v for k, v in SMALL_TOKENS.items() if k != "<Image>"}, {}, {},
     r"tokenizer.json: no token '<Image>' \(boi\); the image token layout needs <\|mdm_mask\|>, <uncondition>, "),
    (SMALL_TOKENS, {}, {"num_vq_embeddings": 300}, r"tokenizer.json: special ids mask 492, uncond 507, boi 505, "
     r"eoi 506, boa 510, eoa 511 are not text ids \(0..467; the 300 image codes start at 468\)"),
    (SMALL_TOKENS, {"mask_token_id": 491}, {}, r"config.json: mask_token_id 491 differs from the tokenizer's "
     r"<\|mdm_mask\|> id 492"),
    (SMALL_TOKENS, {}, {"num_vq_embeddings": 768}, r"vqvae/config.json: num_vq_embeddings 768 must be in 1..767: "
     r"the 768 logit columns of .*config.json hold the text ids, then the codes"),
])
def test_layout_from_model_folder(tmp_path, tokens, llada, vq, want):
    """The layout comes from the folder: its tokenizer's special tokens, config.json and the VQ codebook."""
    from migm_jax.convert.dimoo import dimoo_token_layout

    folder = layout_folder(tmp_path / "model", tokens, llada, vq)
    if isinstance(want, TokenLayout):
        assert dimoo_token_layout(folder) == want
    else:
        with pytest.raises(ValueError, match=want) as e:
            dimoo_token_layout(folder)
        assert len(str(e.value).splitlines()) == 1 and str(e.value).startswith(folder)
