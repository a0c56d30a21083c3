"""The one opener of the data readers: local paths through ``os``, URLs through fsspec.

A path that starts with ``scheme://`` (``gs://bucket/cbis``, ``s3://...``,
``memory://...``, ``file://...``) is a URL and goes through
`fsspec <https://filesystem-spec.readthedocs.io>`_, which loads the
protocol's package at run time (``gcsfs`` for ``gs://``), so a Dataflow
ingest reads a bucket directly. Any other ``str`` or ``os.PathLike`` is a
local path and behaves exactly as the ``os`` and ``open`` calls these
functions stand for (same semantics, same errors).

Path helpers (:func:`join`, :func:`dirname`, :func:`normpath`, ...) keep a
URL a URL, spelt as given: only the part after ``scheme://`` is handled, with
``/`` as separator. No TensorFlow here: Beam workers and the ingest CLI read
DICOMs without it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from typing import IO, Any

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

PathLike = str | os.PathLike


class MissingFilesystem(ImportError):
    """A URL whose protocol needs a package that is not installed."""


def is_url(path: Any) -> bool:
    """Whether ``path`` is a ``scheme://...`` URL (then fsspec opens it)."""
    path = os.fspath(path)
    return isinstance(path, str) and _URL_RE.match(path) is not None


def _split(url: str) -> tuple[str, str]:
    """``"gs://b/x"`` -> ``("gs://", "b/x")``."""
    prefix = _URL_RE.match(url).group(0)
    return prefix, url[len(prefix) :]


def _fs(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it."""
    import fsspec
    from fsspec.registry import known_implementations

    scheme = _URL_RE.match(url).group(1).lower()
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as err:
        spec = known_implementations.get(scheme, {}).get("class", "")
        package = spec.split(".")[0] or scheme
        raise MissingFilesystem(
            f"{scheme}:// needs {package}: pip install {package} "
            f"(to read {url!r}; {err})"
        ) from err
    except ValueError as err:
        if "Protocol not known" not in str(err):
            raise
        raise ValueError(f"unknown protocol {scheme}:// in {url!r}") from err


def open_file(path: PathLike, mode: str = "rb", **kwargs: Any) -> IO:
    """Opens ``path`` like the built-in ``open`` (``encoding``, ``newline``
    and ``errors`` apply in text mode).

    Raises:
        MissingFilesystem: a URL whose protocol's package is not installed.
        OSError: as ``open`` (``FileNotFoundError`` for a missing URL too).
    """
    path = os.fspath(path)
    if not is_url(path):
        return open(path, mode, **kwargs)
    fs, inner = _fs(path)
    return fs.open(inner, mode, **kwargs)


class UnreadablePath(ValueError):
    """A path that is not a readable regular file; the message is the reason
    (what the readers record when they reject the file)."""


def regular_file_size(path: PathLike) -> int:
    """The size in bytes of the regular file at ``path``.

    The one check the DICOM and PNG readers make before opening a file.

    Raises:
        UnreadablePath: ``"unreadable file: <reason>"`` (``os.stat`` failed),
            ``"invalid path (<error>)"`` (e.g. an embedded NUL byte), ``"is a
            directory, not a file"`` or ``"not a regular file"`` (a FIFO,
            device, socket, ...).
        MissingFilesystem: a URL whose protocol's package is not installed.
    """
    try:
        kind, size = info(path)
    except OSError as err:
        raise UnreadablePath(f"unreadable file: {err.strerror or err}") from err
    except ValueError as err:  # e.g. an embedded NUL byte in the path
        text = " ".join(str(err).split()) or "no message"
        raise UnreadablePath(f"invalid path ({type(err).__name__}: {text})") from err
    if kind == "directory":
        raise UnreadablePath("is a directory, not a file")
    if kind != "file":
        raise UnreadablePath("not a regular file")
    return size


def info(path: PathLike) -> tuple[str, int]:
    """``(kind, size in bytes)`` of ``path``, following symlinks like ``os.stat``.

    ``kind`` is ``"file"`` (a regular file), ``"directory"`` or ``"other"``
    (FIFO, device, socket, or an object type fsspec does not name).

    Raises:
        OSError: as ``os.stat``; a missing URL raises ``FileNotFoundError``
            with ``strerror`` set, like a missing local file.
        ValueError: as ``os.stat`` (e.g. an embedded NUL), or an unknown
            protocol.
        MissingFilesystem: a URL whose protocol's package is not installed.
    """
    path = os.fspath(path)
    if not is_url(path):
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            return "directory", st.st_size
        return ("file" if stat.S_ISREG(st.st_mode) else "other"), st.st_size
    fs, inner = _fs(path)
    try:
        found = fs.info(inner)
    except FileNotFoundError as err:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from err
    kind = found.get("type")
    if kind not in ("file", "directory"):
        kind = "other"
    return kind, int(found.get("size") or 0)


def _test(path: PathLike, name: str) -> bool:
    """``os.path.<name>(path)``, or the fsspec method of that name for a URL."""
    path = os.fspath(path)
    if not is_url(path):
        return getattr(os.path, name)(path)
    fs, inner = _fs(path)
    return getattr(fs, name)(inner)


def exists(path: PathLike) -> bool:
    """As ``os.path.exists``."""
    return _test(path, "exists")


def isfile(path: PathLike) -> bool:
    """As ``os.path.isfile``."""
    return _test(path, "isfile")


def isdir(path: PathLike) -> bool:
    """As ``os.path.isdir``."""
    return _test(path, "isdir")


def remove(path: PathLike) -> None:
    """As ``os.remove`` (a URL's file through fsspec)."""
    path = os.fspath(path)
    if not is_url(path):
        os.remove(path)
        return
    fs, inner = _fs(path)
    fs.rm_file(inner)


def walk(root: PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """As ``os.walk(root, followlinks=False)``: ``(dirpath, dirnames,
    filenames)`` per folder, nothing for a missing root. A URL's ``dirpath``
    is ``root`` joined with the folder's relative path (spelt as given)."""
    root = os.fspath(root)
    if not is_url(root):
        yield from os.walk(root, followlinks=False)
        return
    fs, inner = _fs(root)
    top = inner.rstrip("/")
    try:
        for dirpath, dirnames, filenames in fs.walk(inner):
            rel = dirpath.rstrip("/")[len(top) :].strip("/")
            yield (join(root, rel) if rel else root), dirnames, filenames
    except FileNotFoundError:
        return


def join(path: PathLike, *more: PathLike) -> str:
    """As ``os.path.join``; a URL joins with ``/``, and a URL in ``more``
    restarts the path (as an absolute local part does)."""
    out = os.fspath(path)
    for part in map(os.fspath, more):
        if is_url(part):
            out = part
        elif is_url(out):
            prefix, rest = _split(out)
            out = prefix + posixpath.join(rest, part)
        else:
            out = os.path.join(out, part)
    return out


def _on_url(path: PathLike, local: Any, remote: Any) -> str:
    """``local(path)``, or ``remote`` applied to the part after ``scheme://``."""
    path = os.fspath(path)
    if not is_url(path):
        return local(path)
    prefix, rest = _split(path)
    return prefix + remote(rest)


def _normpath_rest(rest: str) -> str:
    return posixpath.normpath(rest) if rest else rest


def dirname(path: PathLike) -> str:
    """As ``os.path.dirname``."""
    return _on_url(path, os.path.dirname, posixpath.dirname)


def basename(path: PathLike) -> str:
    """As ``os.path.basename``."""
    path = os.fspath(path)
    return (
        posixpath.basename(_split(path)[1]) if is_url(path) else os.path.basename(path)
    )


def normpath(path: PathLike) -> str:
    """As ``os.path.normpath``; a URL keeps its ``scheme://`` and loses a
    trailing ``/``."""
    return _on_url(path, os.path.normpath, _normpath_rest)


def abspath(path: PathLike) -> str:
    """As ``os.path.abspath``; a URL is already absolute (:func:`normpath`)."""
    return _on_url(path, os.path.abspath, _normpath_rest)


def parts(path: PathLike, start: PathLike | None = None) -> list[str]:
    """The components of ``path``, or of its path relative to ``start``
    (``os.path.relpath(path, start).split(os.sep)`` for local paths)."""
    path = os.fspath(path)
    if not is_url(path):
        rel = path if start is None else os.path.relpath(path, start)
        return rel.split(os.sep)
    rest = _split(path)[1]
    if start is not None:
        rest = posixpath.relpath(rest or "/", _split(os.fspath(start))[1] or "/")
    return rest.split("/")
