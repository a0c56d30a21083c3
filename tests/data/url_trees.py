"""Helpers of the URL tests: fsspec's ``memory://`` filesystem as a bucket.

Its store is global (shared by every ``MemoryFileSystem``), so
:func:`memory_root` restores it on exit.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import fsspec


@contextlib.contextmanager
def memory_root() -> Iterator[str]:
    """A fresh ``memory://`` root (a URL string); the store is restored after."""
    fs = fsspec.filesystem("memory")
    store, dirs = dict(fs.store), list(fs.pseudo_dirs)
    try:
        yield f"memory://t{uuid.uuid4().hex[:8]}"
    finally:
        fs.store.clear()
        fs.store.update(store)
        fs.pseudo_dirs[:] = dirs


def upload(local_root, url_root: str) -> None:
    """Copies every file under ``local_root`` to ``url_root``."""
    fs, inner = fsspec.core.url_to_fs(url_root)
    for dirpath, _dirs, files in os.walk(local_root):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), local_root)
            with open(os.path.join(dirpath, name), "rb") as f:
                fs.pipe(f"{inner}/{rel.replace(os.sep, '/')}", f.read())


def as_url(path: str, local_root, url_root: str) -> str:
    """The URL under ``url_root`` of ``path`` under ``local_root``."""
    rel = os.path.relpath(path, local_root)
    return f"{url_root}/{rel.replace(os.sep, '/')}"
