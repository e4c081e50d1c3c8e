"""Files that are either absent, old or complete: never half-written.

A batch can be killed at any moment (a scheduler's timeout, SIGKILL, a full disk). Every file it
writes goes to a temporary name in the same folder and is renamed over the target only when
complete (``os.replace`` is atomic on POSIX), so a reader or a resumed batch sees the previous
version or the new one. (No fsync: a killed process loses nothing the kernel already holds;
surviving a power cut is the file system's journal's job, and thousands of fsyncs would cost
more than the pages.) Temporary names carry :data:`TEMP_MARK`; a new run sweeps away those a
killed run left behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-wb"


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same folder, so the rename stays atomic),
    keeping its suffix (Papermill insists on ``.ipynb``)."""
    return path.with_name(
        f"{path.stem}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it goes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as temp:
        temp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def sweep(root: Path) -> int:
    """Remove the temporary files a killed run left under ``root``; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.rglob(f"*{TEMP_MARK}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
