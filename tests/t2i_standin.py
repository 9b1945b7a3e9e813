"""A stand-in for the embedded text-to-image demo (migm_jax/assets/demo/emoji), made from tiny random weights:
a 'dimoo' weights dir of the demo's shape (LLaDA, token layout, an f=4 VQModel drawing 64x64 images from
16x16 codes, a shortcut, the 'sampling' config with steps, cfg_scale, temperature, budget, the image size
and the default prompts), a word-level tokenizer (tokenizer/) and the known prompts (prompts.txt)."""

import os

import jax
import jax.numpy as jnp

SPECIALS = ["<system>", "</system>", "<user>", "</user>"]
LAYOUT_NAMES = ["mask", "uncond", "newline", "boi", "eoi", "boa", "eoa"]
KNOWN = ["twemoji grinning face", "noto grinning face", "twemoji dog face", "noto dog face", "twemoji pizza",
         "noto waving hand: medium skin tone"]  # prompts.txt
DEFAULT_PROMPTS = KNOWN[:3]  # the 'sampling' config's prompts: what sample.py draws when given none
SAMPLING = {"steps": 6, "cfg_scale": 2.0, "temperature": 1.0, "budget": 3, "height": 64, "width": 64,
            "prompts": DEFAULT_PROMPTS}
CODEBOOK = 32


def words() -> list[str]:
    """Every word of the template's system prompt and of the known prompts (split at spaces and ':' / '.')."""
    from migm_jax.sampling.dimoo_prompts import SYSTEM_PROMPT

    text = " ".join([SYSTEM_PROMPT] + KNOWN).replace(":", " : ").replace(".", " . ")
    return list(dict.fromkeys(text.split()))


def save_word_tokenizer(path) -> dict:
    """Saves a WordLevel tokenizer (unknown words -> '<unk>' 0, the words 1.., then the template tags and the
    layout's special tokens, all text ids); returns the token layout (TokenLayout fields)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from migm_jax.sampling.dimoo_prompts import LAYOUT_TOKENS

    layout_tokens = [LAYOUT_TOKENS[name] for name in LAYOUT_NAMES]
    vocab = {tok: i for i, tok in enumerate(["<unk>"] + words() + SPECIALS + layout_tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                            additional_special_tokens=SPECIALS + layout_tokens).save_pretrained(path)
    return {**{name: vocab[LAYOUT_TOKENS[name]] for name in LAYOUT_NAMES}, "text_vocab_size": len(vocab),
            "codebook_size": CODEBOOK}


def make_standin(path, prompts_file: bool = True) -> str:
    """Writes the stand-in weights dir at `path` (float32 random params, a second or two); returns it."""
    from migm_jax.apps.maskgit import random_params
    from migm_jax.models.dimoo_shortcut import DiMOOShortcut, DiMOOShortcutConfig
    from migm_jax.models.llada import LLaDA, LLaDAConfig
    from migm_jax.models.vqmodel import VQModel, VQModelConfig
    from migm_jax.sampling.dimoo_prompts import TokenLayout
    from migm_jax.weights import PROMPTS_FILE, TOKENIZER_DIR, save_weights

    path = str(path)
    layout = TokenLayout.from_dict(save_word_tokenizer(os.path.join(path, TOKENIZER_DIR)))
    llada = LLaDAConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp_hidden_size=64, vocab_size=layout.vocab_size,
                        embedding_size=layout.vocab_size, max_sequence_length=64)
    shortcut = DiMOOShortcutConfig.from_llada(llada, n_block=1, bottleneck_ratio=2)
    vq = VQModelConfig(block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=8, norm_num_groups=8,
                       num_vq_embeddings=CODEBOOK)
    key, feat = jax.random.PRNGKey(0), jnp.zeros((1, 2, llada.d_model))
    params = {
        "llada": random_params(lambda: LLaDA(llada, jnp.float32).init(key, jnp.zeros((1, 2), jnp.int32)), 0),
        "shortcut": random_params(lambda: DiMOOShortcut(shortcut).init(key, feat, feat, jnp.ones((1, 2), bool),
                                                                       jnp.ones((1,))), 1),
        "vq": random_params(lambda: VQModel(vq).init(key, jnp.zeros((1, 1, 1), jnp.int32), method=VQModel.decode_code), 2),
    }
    configs = {"llada": llada.to_dict(), "layout": layout.to_dict(), "vq": vq.to_dict(), "shortcut": shortcut.to_dict(),
               "sampling": SAMPLING}
    save_weights(path, "dimoo", configs, params)
    if prompts_file:
        with open(os.path.join(path, PROMPTS_FILE), "w") as f:
            f.write("\n".join(KNOWN) + "\n")
    return path
