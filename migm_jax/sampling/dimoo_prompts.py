"""Lumina-DiMOO text-to-image prompts: special token ids, prompt templates and static-shape sequence batches.

A cond sequence is `cond prompt ids (P) + image region`, the uncond sequence `uncond prompt ids (U) + image
region`, where the image region is [BOA, BOI] + gh rows of (gw MASK ids, NEWLINE) + [EOI, EOA]
(R = gh * (gw + 1) + 4 ids). Batches of prompts with different lengths are RIGHT-padded: every
row keeps its own positions 0..L_i-1 (the RoPE positions of the unpadded run), padded columns are masked
out as attention keys, and the image cells of row i sit at columns P_i + 2 + offsets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

SYSTEM_PROMPT = "Generate an image according to the text prompt."
UNCONDITION = "<uncondition>"
PAD_ID = 0  # filler of padded columns; never attended to and never read back

# Token strings of the layout's special ids, looked up in a model folder's tokenizer. Confirmed for the
# released tokenizer: '<|mdm_mask|>' (LLaDA's mask token, 126336) and '<uncondition>' (the t2i template
# tokenizes it to 126351). The released strings of the other five ids are not known: Lumina-DiMOO's code
# writes them as numbers only (its comments call 126349 / 126350 '<Image>' / '</Image>' and 126354
# '<answer>', and it tokenizes answers ending in '</answer>'; NEWLINE 126084 is never named). Hence a folder
# with the released vocabulary (134548 = 126356 + 8192 columns, both confirmed ids at their released values)
# keeps those five ids from `TokenLayout.real()` without looking at its tokenizer; any other folder's
# tokenizer must hold all seven strings below ('<newline>' is this port's own name).
LAYOUT_TOKENS = {"mask": "<|mdm_mask|>", "uncond": "<uncondition>", "newline": "<newline>", "boi": "<Image>",
                 "eoi": "</Image>", "boa": "<answer>", "eoa": "</answer>"}
CONFIRMED_TOKENS = ("mask", "uncond")


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Special token ids of the LLaDA vocabulary and its text / image split (image code c has id text_vocab_size + c)."""

    mask: int
    newline: int
    boa: int
    eoa: int
    boi: int
    eoi: int
    uncond: int
    text_vocab_size: int
    codebook_size: int

    @classmethod
    def real(cls) -> "TokenLayout":
        """Lumina-DiMOO's ids (126356 text ids + 8192 image codes = 134548)."""
        return cls(mask=126336, newline=126084, boa=126354, eoa=126355, boi=126349, eoi=126350, uncond=126351,
                   text_vocab_size=126356, codebook_size=8192)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenLayout":
        """From a dict with (at least) the field names; e.g. the fixtures' small layout. A 'vocab_size' entry
        must equal text_vocab_size + codebook_size; other extra entries (e.g. 'eos') are ignored."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"token layout lacks {', '.join(missing)}")
        layout = cls(**{n: int(d[n]) for n in names})
        if "vocab_size" in d and int(d["vocab_size"]) != layout.vocab_size:
            raise ValueError(f"vocab_size {d['vocab_size']} != text_vocab_size + codebook_size ({layout.vocab_size})")
        return layout

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, codebook_size: int, source: str = "the tokenizer",
                       ) -> "TokenLayout":
        """The layout of a model with `vocab_size` logit columns whose last `codebook_size` are the image codes
        (image code c has id vocab_size - codebook_size + c, as the original's generator infers it), with the
        special ids from `tokenizer` (`convert_tokens_to_ids` of `LAYOUT_TOKENS`).

        A tokenizer with the released vocabulary gets `real()` (see `LAYOUT_TOKENS`: only two released token
        strings are known). Raises ValueError (one line, naming `source`, e.g. the tokenizer file) for a
        missing token or a layout that fails `check`."""
        real = cls.real()

        def lookup(name: str) -> Optional[int]:
            token = LAYOUT_TOKENS[name]
            i = tokenizer.convert_tokens_to_ids(token)
            unk = getattr(tokenizer, "unk_token", None)
            if i is None or (i == getattr(tokenizer, "unk_token_id", None) and token != unk):
                return None
            return int(i)

        ids = {name: lookup(name) for name in CONFIRMED_TOKENS}
        if (vocab_size, codebook_size) == (real.vocab_size, real.codebook_size) and \
                all(ids[n] == getattr(real, n) for n in CONFIRMED_TOKENS):
            return real
        ids.update({name: lookup(name) for name in LAYOUT_TOKENS if name not in ids})
        missing = [f"{LAYOUT_TOKENS[n]!r} ({n})" for n in LAYOUT_TOKENS if ids[n] is None]
        if missing:
            raise ValueError(f"{source}: no token {', '.join(missing)}; the image token layout needs "
                             f"{', '.join(LAYOUT_TOKENS.values())}")
        layout = cls(**ids, text_vocab_size=vocab_size - codebook_size, codebook_size=codebook_size)
        layout.check(source)
        return layout

    def check(self, source: str = "token layout") -> None:
        """ValueError (one line, naming `source`) unless the codebook leaves text ids and the special ids are
        distinct text ids (below text_vocab_size, i.e. none is an image code)."""
        if self.codebook_size < 1 or self.text_vocab_size < 1:
            raise ValueError(f"{source}: a codebook of {self.codebook_size} codes does not fit "
                             f"{self.vocab_size} logit columns with text ids before it")
        specials = {name: getattr(self, name) for name in LAYOUT_TOKENS}
        outside = [f"{n} {i}" for n, i in specials.items() if not 0 <= i < self.text_vocab_size]
        if outside:
            raise ValueError(f"{source}: special ids {', '.join(outside)} are not text ids "
                             f"(0..{self.text_vocab_size - 1}; the {self.codebook_size} image codes start at "
                             f"{self.text_vocab_size})")
        by_id: dict[int, list[str]] = {}
        for n, i in specials.items():
            by_id.setdefault(i, []).append(n)
        shared = [f"{' and '.join(ns)} are both {i}" for i, ns in by_id.items() if len(ns) > 1]
        if shared:
            raise ValueError(f"{source}: special ids must be distinct, but {'; '.join(shared)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + self.codebook_size


def prompt_strings(prompt_text: str, system: str = SYSTEM_PROMPT) -> tuple[str, str]:
    """(cond, uncond) strings: "<system>S</system><user>P</user>" with P = prompt_text verbatim or "<uncondition>"."""
    head = "<system>" + system + "</system>" + "<user>"
    return head + prompt_text + "</user>", head + UNCONDITION + "</user>"


def image_region(grid: tuple[int, int], layout: TokenLayout) -> np.ndarray:
    """The initial image region (R,) int64: [BOA, BOI] + gh x (gw MASK, NEWLINE) + [EOI, EOA]."""
    gh, gw = grid
    rows = np.full((gh, gw + 1), layout.mask, np.int64)
    rows[:, -1] = layout.newline
    return np.concatenate([[layout.boa, layout.boi], rows.reshape(-1), [layout.eoi, layout.eoa]]).astype(np.int64)


def image_offsets(grid: tuple[int, int]) -> np.ndarray:
    """Offsets (gh*gw,) of the image cells inside the region, row-major: 2 + r*(gw+1) + c."""
    gh, gw = grid
    return (2 + np.arange(gh)[:, None] * (gw + 1) + np.arange(gw)[None]).reshape(-1)


def region_length(grid: tuple[int, int]) -> int:
    return grid[0] * (grid[1] + 1) + 4


def check_size(height: int, width: int, vae_scale: int = 16) -> tuple[int, int]:
    """(gh, gw) = (height, width) // vae_scale; ValueError unless both are positive multiples of vae_scale."""
    if height <= 0 or width <= 0 or height % vae_scale or width % vae_scale:
        raise ValueError(f"image size {height}x{width} must be positive multiples of {vae_scale} (the VQ downsampling)")
    return height // vae_scale, width // vae_scale


@flax.struct.dataclass
class PromptBatch:
    """A batch of b cond/uncond sequences with static shapes (a pytree; `grid` is static).

    cond_ids (b, Lc) int32: right-padded `cond prompt + image region`; cond_valid (b, Lc) bool: real tokens
    (the attention key mask). uncond_ids / uncond_valid (b, Lu): the same for `uncond prompt + image region`.
    prompt_len (b,) int32: P, the cond prompt length of each row (the original's code_start is P + 2);
    uncond_len (b,) int32: U.
    """

    cond_ids: Any
    cond_valid: Any
    uncond_ids: Any
    uncond_valid: Any
    prompt_len: Any
    uncond_len: Any
    grid: tuple[int, int] = flax.struct.field(pytree_node=False)

    @property
    def n_img(self) -> int:
        return self.grid[0] * self.grid[1]

    def cond_image_positions(self) -> Any:
        """Columns (b, n_img) of the image cells in the cond arrays, row-major over the grid."""
        return self.prompt_len[:, None] + image_offsets(self.grid)[None]

    def uncond_image_positions(self) -> Any:
        """Columns (b, n_img) of the image cells in the uncond arrays."""
        return self.uncond_len[:, None] + image_offsets(self.grid)[None]

    def with_width_multiple(self, multiple: int) -> "PromptBatch":
        """The same batch with the cond and uncond arrays right-padded to a multiple of `multiple` columns
        (PAD_ID, not valid): (b, L) -> (b, ceil(L / multiple) * multiple). Every token keeps its column and
        padded columns are never attended to, so the sampled images are unchanged. Traceable."""
        def pad(ids, valid):
            extra = -ids.shape[1] % multiple
            return jnp.pad(ids, ((0, 0), (0, extra)), constant_values=PAD_ID), jnp.pad(valid, ((0, 0), (0, extra)))

        (c_ids, c_valid), (u_ids, u_valid) = pad(self.cond_ids, self.cond_valid), pad(self.uncond_ids, self.uncond_valid)
        return dataclasses.replace(self, cond_ids=c_ids, cond_valid=c_valid, uncond_ids=u_ids, uncond_valid=u_valid)

    @classmethod
    def from_ids(cls, cond_prompts: Sequence[Sequence[int]], uncond_prompts: Sequence[Sequence[int]],
                 grid: tuple[int, int], layout: TokenLayout, pad_to: Optional[int] = None) -> "PromptBatch":
        """Builds the batch (numpy arrays) from token ids. cond_prompts: b prompt id lists (without the image
        region); uncond_prompts: one id list shared by all rows, or b lists. pad_to: minimum padded prompt
        length (keeps shapes, hence compilations, fixed across batches)."""
        if len(cond_prompts) == 0:
            raise ValueError("no prompts given")
        if len(uncond_prompts) and np.ndim(uncond_prompts[0]) == 0:
            uncond_prompts = [uncond_prompts] * len(cond_prompts)
        if len(uncond_prompts) != len(cond_prompts):
            raise ValueError(f"{len(uncond_prompts)} uncond prompts for {len(cond_prompts)} cond prompts")
        region = image_region(grid, layout)
        c_ids, c_valid, c_len = _right_pad(cond_prompts, region, pad_to)
        u_ids, u_valid, u_len = _right_pad(uncond_prompts, region, None)
        return cls(c_ids, c_valid, u_ids, u_valid, c_len, u_len, tuple(int(g) for g in grid))


def _right_pad(prompts: Sequence[Sequence[int]], region: np.ndarray, pad_to: Optional[int]):
    """(ids (b, W + R) int32, valid (b, W + R) bool, lengths (b,) int32) with W = max(longest prompt, pad_to)."""
    lens = np.asarray([len(p) for p in prompts], np.int32)
    total = max(int(lens.max()), pad_to or 0) + len(region)
    ids = np.full((len(prompts), total), PAD_ID, np.int32)
    valid = np.zeros((len(prompts), total), bool)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = np.asarray(p, np.int64)
        ids[i, len(p):len(p) + len(region)] = region
        valid[i, :len(p) + len(region)] = True
    return ids, valid, lens


def _no_torch_notice(record) -> bool:
    return "PyTorch was not found" not in record.getMessage()


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The DiMOO tokenizer from a local directory (never the hub). The import does not print
    transformers' "PyTorch was not found" notice: only its tokenizers are used here."""
    import logging
    import os

    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    logging.getLogger("transformers").addFilter(_no_torch_notice)
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ImportError("the DiMOO tokenizer needs transformers: pip install -e '.[text]'") from None

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


def build_sequences(tokenizer, prompts: Sequence[str], height: int, width: int, layout: TokenLayout,
                    vae_scale: int = 16, max_prompt_len: Optional[int] = None, pad_to: Optional[int] = None,
                    system: str = SYSTEM_PROMPT) -> PromptBatch:
    """Tokenizes t2i prompts (verbatim, as the original) into a right-padded `PromptBatch`.

    tokenizer: a Hugging Face tokenizer (`tokenizer(s)["input_ids"]`, no BOS added, as DiMOO's).
    max_prompt_len: the model's max_sequence_length; a cond prompt with more tokens is rejected (the image
    region itself may exceed it: RoPE is computed for any length, as in the original).
    Raises ValueError (one line) for an empty prompt, a too long prompt, a size that is not a multiple of
    vae_scale, or a tokenizer whose '<uncondition>' id disagrees with the layout.
    """
    grid = check_size(height, width, vae_scale)
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise ValueError(f"prompt {i} is empty")
    cond, uncond = [], None
    for i, p in enumerate(prompts):
        c, u = prompt_strings(p, system)
        ids = list(tokenizer(c)["input_ids"])
        if max_prompt_len is not None and len(ids) > max_prompt_len:
            raise ValueError(f"prompt {i} is {len(ids)} tokens with the template; the model accepts at most "
                             f"{max_prompt_len} (max_sequence_length)")
        cond.append(ids)
        uncond = list(tokenizer(u)["input_ids"])
    if layout.uncond not in uncond:
        raise ValueError(f"the tokenizer does not map {UNCONDITION} to {layout.uncond}; wrong tokenizer or layout")
    return PromptBatch.from_ids(cond, uncond, grid, layout, pad_to)


def _unk_id(tokenizer) -> Optional[int]:
    """The id of the tokenizer's unknown token: its `unk_token_id`, else (fast tokenizers) the one its
    `tokenizers` model names; None when it has none (e.g. byte-level BPE, which encodes any text)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if unk is None and backend is not None and getattr(backend.model, "unk_token", None):
        unk = backend.token_to_id(backend.model.unk_token)
    return unk


def unknown_words(tokenizer, text: str) -> list[str]:
    """The pieces of `text` that `tokenizer` encodes as its unknown token, in order and without repeats
    (e.g. ['pizza'] for a word-level tokenizer that lacks the word); [] when every piece is known or the
    tokenizer has no unknown token. A fast tokenizer names the exact pieces (its offsets), a slow one
    the whole text."""
    unk = _unk_id(tokenizer)
    if unk is None:
        return []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        pieces = [text[a:b] for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk]
    else:
        pieces = [text] if unk in tokenizer(text, add_special_tokens=False)["input_ids"] else []
    return list(dict.fromkeys(pieces))


def word_vocabulary(tokenizer) -> Optional[list[str]]:
    """The words of a word-level tokenizer (a `tokenizers` WordLevel model) in id order, without its special
    and added tokens (the template tags, the layout's tokens); None for any other kind of tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return None
    special = set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens)
    return [w for w, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if w not in special]
