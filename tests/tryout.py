#!/usr/bin/env python
"""Offline stand-ins for the released checkpoints, made from the parity fixtures (tests/fixtures: tiny random
weights), as the files and folders the converters read, so that README's convert -> sample -> train commands
run on a CPU in about a minute without a download:

  python tests/tryout.py --out tryout

tryout/maskgit/MaskGIT_small.pth        the fixture MaskGIT transformer (8x8 tokens) with its codebook cut to the
                                        fixture VQGAN's 64 codes (its rows and bias columns of codes 64..1023
                                        dropped), so that the two fit together
tryout/maskgit/VQGAN/                   the fixture taming VQGAN (last.ckpt, model.yaml; f = 2: 16x16 images)
tryout/maskgit/maskgit-shortcut.pth     the fixture MaskGIT shortcut (4 heads, as the transformer)
tryout/Lumina-DiMOO/                    the fixture LLaDA (config.json, 2 safetensors shards + index), vqvae/ and a
                                        word-level tokenizer holding the words of WORDS and the layout's special
                                        tokens at the fixture's ids (the fixture has no tokenizer)
tryout/dimoo-shortcut.pth               the fixture DiMOO shortcut
tryout/eval/data                        a class dataset of 16x16 images for the quality harness (the synthetic
                                        shapes, 8 train and 12 test, downscaled 4x; needs the [data] extra)
tryout/eval/classifier                  a random feature classifier of 16x16 images, 10 classes (the harness's
                                        metric network; random, so its FID and accuracy mean nothing)

The weights are random, so the images are noise: what this shows is that the whole path runs. The DiMOO part
needs the [text] extra (tokenizers; sampling loads the tokenizer with transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

# the word-level test tokenizer: words get ids 3.., the template tags 500..503, the layout's tokens the ids below
SPECIALS = ["<system>", "</system>", "<user>", "</user>"]
WORDS = ["Generate", "an", "image", "according", "to", "the", "text", "prompt", ".", "a", "red", "cube", "on",
         "blue", "table", "photo", "of", "bench"]
SMALL = {"text_vocab_size": 512, "codebook_size": 256, "vocab_size": 768, "mask": 492, "newline": 240, "boa": 510,
         "eoa": 511, "boi": 505, "eoi": 506, "uncond": 507, "eos": 237}
MASKGIT_CODES = 64  # the fixture VQGAN's codebook


def small_tokens() -> dict:
    """The layout's special tokens at the SMALL ids ('<uncondition>': 507, ...): the fixture LLaDA's."""
    from migm_jax.sampling.dimoo_prompts import LAYOUT_TOKENS

    return {LAYOUT_TOKENS[name]: SMALL[name] for name in LAYOUT_TOKENS}


def save_tokenizer(path, tokens: dict) -> None:
    """Saves a WordLevel tokenizer (tokenizer.json, tokenizer_config.json): words get ids 3.., the template tags
    500..503, `tokens` (special token -> id); the tags and `tokens` are special (never split)."""
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers
    except ImportError:
        raise SystemExit("error: the DiMOO tokenizer needs tokenizers: pip install -e '.[text]'") from None

    vocab = {"<unk>": 0, **{w: 3 + i for i, w in enumerate(WORDS)}, **{s: 500 + i for i, s in enumerate(SPECIALS)},
             **tokens}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.add_special_tokens(SPECIALS + list(tokens))
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"}, f, indent=2)


def narrowed_maskgit(path: str, codes: int) -> dict:
    """The MaskGIT .pth state dict at `path` with a codebook of its first `codes` codes: the token embedding rows
    and the bias columns of the other codes dropped (mask and class tokens follow the codes, as in the original)."""
    from migm_jax.convert.torch_file import load_torch_file

    sd = {k: np.asarray(v) for k, v in load_torch_file(path)["model_state_dict"].items()}
    vocab = sd["tok_emb.weight"].shape[0]
    keep = np.r_[0:codes, vocab - 1002:vocab]  # codes, then the mask token, 1000 classes and the dropped class
    return {**sd, "tok_emb.weight": sd["tok_emb.weight"][keep], "bias": sd["bias"][:, keep]}


def write_maskgit(out: str) -> None:
    from migm_jax.convert.torch_file import save_torch_file

    os.makedirs(os.path.join(out, "VQGAN"), exist_ok=True)
    save_torch_file(os.path.join(out, "MaskGIT_small.pth"),
                    narrowed_maskgit(os.path.join(FIXTURES, "maskgit_transformer", "MaskGIT_small.pth"), MASKGIT_CODES))
    for name in ("last.ckpt", "model.yaml"):
        shutil.copy(os.path.join(FIXTURES, "taming_vqgan", name), os.path.join(out, "VQGAN", name))
    shutil.copy(os.path.join(FIXTURES, "maskgit_shortcut", "shortcut.pth"), os.path.join(out, "maskgit-shortcut.pth"))


def write_dimoo(model_dir: str, shortcut: str) -> None:
    os.makedirs(os.path.join(model_dir, "vqvae"), exist_ok=True)
    llada = os.path.join(FIXTURES, "llada")
    for name in os.listdir(llada):
        if name.endswith((".safetensors", ".json")) and name != "fixture_meta.json":
            shutil.copy(os.path.join(llada, name), os.path.join(model_dir, name))
    vq = os.path.join(FIXTURES, "dimoo_vqvae", "vqvae")
    for name in os.listdir(vq):
        shutil.copy(os.path.join(vq, name), os.path.join(model_dir, "vqvae", name))
    save_tokenizer(model_dir, small_tokens())
    shutil.copy(os.path.join(FIXTURES, "dimoo_shortcut", "shortcut.pth"), shortcut)


def save_random_classifier(path, cfg, seed: int) -> None:
    """A 'classifier' weights dir at `path`: a FeatureClassifier of ClassifierConfig `cfg` with `random_params`
    (numpy draws of `seed`)."""
    import jax
    import jax.numpy as jnp

    from migm_jax.apps.maskgit import random_params
    from migm_jax.models.classifier import FAMILY, FeatureClassifier
    from migm_jax.weights import save_weights

    blank = jnp.zeros((1, cfg.resolution, cfg.resolution, 3), jnp.uint8)
    params = random_params(lambda: FeatureClassifier(cfg).init(jax.random.PRNGKey(0), blank), seed)
    save_weights(path, FAMILY, {"classifier": cfg.to_dict()}, {"classifier": params})


def write_eval(out: str) -> None:
    """The harness's real images and metric network for the MaskGIT stand-in's 16x16 images."""
    from migm_jax.data.records import write_split
    from migm_jax.data.shapes import CLASS_NAMES, render_batch
    from migm_jax.models.classifier import ClassifierConfig

    meta = {"builder": "shapes_16px", "resolution": 16, "class_names": list(CLASS_NAMES)}
    for split, n in (("train", 8), ("test", 12)):
        images, labels = render_batch(range(n), split)
        small = images.reshape(n, 16, 4, 16, 4, 3).mean(axis=(2, 4)).round().astype(np.uint8)
        write_split(os.path.join(out, "data"), split, ((im, int(l), "") for im, l in zip(small, labels)), n, meta,
                    progress=False)
    save_random_classifier(os.path.join(out, "classifier"), ClassifierConfig(widths=(8, 16), feature_dim=16, resolution=16), 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write maskgit/, Lumina-DiMOO/ and dimoo-shortcut.pth into")
    args = p.parse_args(argv)
    write_maskgit(os.path.join(args.out, "maskgit"))
    write_dimoo(os.path.join(args.out, "Lumina-DiMOO"), os.path.join(args.out, "dimoo-shortcut.pth"))
    write_eval(os.path.join(args.out, "eval"))
    print(f"wrote {args.out}/maskgit, {args.out}/Lumina-DiMOO, {args.out}/dimoo-shortcut.pth and {args.out}/eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
