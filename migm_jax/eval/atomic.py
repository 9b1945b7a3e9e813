"""Writing an output file so that readers see either the old file or the complete new one."""

from __future__ import annotations

import os
from typing import Callable


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Calls write(tmp) for a temporary file next to `path` (same extension, so writers that go by the
    extension pick the right format), then renames it onto `path`; the temporary file is removed if
    `write` fails."""
    directory, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
