"""Checks and reads of the files the CLIs take, each failing with one line that names the file.

Inputs: a directory where a file is expected, broken JSON, text that is not UTF-8. Outputs: a location
that cannot be written (a path under an existing file, a directory without write permission, a
directory where a file is expected, an unknown extension), checked before any work starts, and
writes that replace the target only once complete (a temporary file in the same directory, then
os.replace), so an error (a full disk) never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from typing import Any, Callable, Iterable, Sequence


def check_input_file(path: str | os.PathLike, what: str = "file", fix: str = "") -> str:
    """`path` as a string; FileNotFoundError / IsADirectoryError (one line, `fix` appended after '; ')
    unless it is a file."""
    path = os.fspath(path)
    hint = f"; {fix}" if fix else ""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path} is a directory{hint or ', not a file'}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    return path


def read_json(path: str | os.PathLike, fix: str = "") -> Any:
    """The parsed JSON file; ValueError naming the file (and `fix`, a hint appended after '; ') when it
    is not valid UTF-8 JSON, IsADirectoryError for a directory."""
    path = os.fspath(path)
    hint = f"; {fix}" if fix else ""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a JSON file{hint}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}){hint}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}){hint}") from None


def read_text_lines(path: str | os.PathLike, what: str = "file") -> list[str]:
    """The lines of a UTF-8 text file; one-line errors naming the file (missing, a directory, not UTF-8)."""
    path = check_input_file(path, what)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{what} {path} is not UTF-8 text (invalid byte on line {line}); save it as UTF-8") from None
    return text.splitlines()


def _existing_ancestor(path: str) -> str:
    """`path` itself if it exists, else its nearest existing parent."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_can_create_in(directory: str, what: str, target: str) -> None:
    """OSError (one line) unless `target`, which lies in `directory` (existing or to be created), can be
    written: the nearest existing ancestor must be a directory in which a file can be created."""
    base = _existing_ancestor(directory)
    if not os.path.isdir(base):
        raise NotADirectoryError(f"{what} {target}: {base} is a file, not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".write-check-"):
            pass
    except OSError as e:
        raise PermissionError(f"{what} {target}: cannot write in {base} ({e.strerror or e})") from None


def check_output_file(path: str | os.PathLike, extensions: Sequence[str] = (".png",), what: str = "--out",
                      kind: str = "a PNG image") -> str:
    """`path` as a string, after checking that a file with one of `extensions` can be written there;
    ValueError / OSError (one line) otherwise. Creates nothing."""
    path = os.fspath(path)
    ends = " or ".join(extensions)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path} is a directory; give a file name ending in {ends}")
    if os.path.splitext(path)[1].lower() not in extensions:
        raise ValueError(f"{what} {path}: the output is {kind}; give a file name ending in {ends}")
    _check_can_create_in(os.path.dirname(os.path.abspath(path)), what, path)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> str:
    """`path` as a string, after checking that it is (or can be created as) a writable directory;
    OSError (one line) otherwise. Creates nothing."""
    path = os.fspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{what} {path} is a file; give a directory")
    _check_can_create_in(os.path.abspath(path), what, path)
    return path


def _missing_dirs(directory: str) -> list[str]:
    """The directories `os.makedirs(directory)` would create, innermost first."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing


def write_files_atomically(items: Iterable[tuple[str, Callable[[Any], None]]]) -> list[str]:
    """Writes every (path, write(binary file object)) pair to a temporary file next to its target, then
    renames them all into place; returns the paths. On any error the temporary files and the
    directories made for them are removed and the targets are left as they were."""
    items = list(items)
    made, temps = [], []
    try:
        for path, write in items:
            directory = os.path.dirname(os.path.abspath(path))
            missing = _missing_dirs(directory)
            os.makedirs(directory, exist_ok=True)
            made += missing
            tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
            temps.append(tmp)
            with open(tmp, "xb") as f:
                write(f)
        for (path, _), tmp in zip(items, temps):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        for directory in sorted(set(made), key=len, reverse=True):  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise
    return [path for path, _ in items]
