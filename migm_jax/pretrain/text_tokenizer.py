"""The word-level text tokenizer of a text-to-image run, built from the dataset's captions.

Text is lower-cased and split into words and single punctuation marks (HF `tokenizers`: a WordLevel
model after a Lowercase normalizer and WhitespaceSplit + Punctuation pre-tokenizers); a word outside the
vocabulary becomes [UNK]. Vocabulary: [PAD] (id 0, the prompt batches' PAD_ID), [UNK], the special
tokens of the DiMOO layout (LAYOUT_TOKENS) and of the prompt template (<system>, </system>, <user>,
</user>), each matched as one token, then every word of the captions and of the system prompt in sorted
order: the same captions always give the same files, so a resumed run rebuilds its tokenizer identically.
Saved as tokenizer.json + tokenizer_config.json (a PreTrainedTokenizerFast), the folder that
`dimoo_prompts.load_tokenizer` reads.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from migm_jax.files import write_files_atomically
from migm_jax.sampling.dimoo_prompts import LAYOUT_TOKENS, SYSTEM_PROMPT

PAD, UNK = "[PAD]", "[UNK]"  # PAD first: id 0 = dimoo_prompts.PAD_ID
TEMPLATE_TAGS = ("<system>", "</system>", "<user>", "</user>")  # those of dimoo_prompts.prompt_strings
SPECIAL_TOKENS = (PAD, UNK, *LAYOUT_TOKENS.values(), *TEMPLATE_TAGS)
CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": UNK, "pad_token": PAD}


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("the text tokenizer needs tokenizers (with transformers): pip install -e '.[text]'") from None
    return tokenizers


def tokenizer_files(captions: Iterable[str], system: str = SYSTEM_PROMPT) -> dict[str, bytes]:
    """{file name: content} of the tokenizer whose words are those of `captions` and `system`."""
    tk = _tokenizers()
    normalizer = tk.normalizers.Lowercase()
    pre = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.WhitespaceSplit(), tk.pre_tokenizers.Punctuation("isolated")])
    words = {w for text in [system, *captions] for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))}
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))])}
    tokenizer = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return {"tokenizer.json": tokenizer.to_str(pretty=True).encode(),
            "tokenizer_config.json": json.dumps(CONFIG, indent=2).encode()}


def write_tokenizer(files: dict[str, bytes], out_dir: str) -> str:
    """Writes `files` into `out_dir` (each file atomically); returns out_dir."""
    write_files_atomically([(os.path.join(out_dir, name), lambda f, data=data: f.write(data))
                            for name, data in files.items()])
    return out_dir


def same_tokenizer(files: dict[str, bytes], folder: str) -> bool:
    """Whether `folder` holds exactly these tokenizer files' contents (other files are ignored)."""
    for name, data in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            if f.read() != data:
                return False
    return True
