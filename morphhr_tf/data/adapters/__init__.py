"""Data set adapters: a data set on disk -> a list of image records.

Use :func:`load_source`; each adapter is also importable on its own. Every
adapter reads through :mod:`morphhr_tf.data.fileio`: a root may be a local
folder or a URL (``gs://bucket/cbis``), and the records' paths are then URLs.
"""

from __future__ import annotations

import os
from typing import Any

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import SourceListing

SOURCES = ("cbis_ddsm", "csv", "rsna", "vindr")


def load_source(source: str, root: str | os.PathLike, **kwargs: Any) -> SourceListing:
    """Lists the full images of a data set.

    Args:
        source: ``cbis_ddsm``, ``csv`` (``root`` is then the manifest file),
            ``rsna`` or ``vindr``.
        root: the data set's folder (or the manifest for ``csv``): a local
            path or a URL.
        **kwargs: passed to the adapter (e.g. ``images_dir`` for ``csv``,
            ``positive_birads`` for ``vindr``).

    Returns:
        A :class:`SourceListing` of records and problems.

    Raises:
        ValueError: for an unknown source or a root that does not exist.
        MissingFilesystem: a URL root whose protocol's package (``gcsfs``
            for ``gs://``) is not installed (an ``ImportError``).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}. Received: {source!r}")
    root = os.fspath(root)
    if not fileio.exists(root):
        raise ValueError(f"root does not exist. Received: root={root!r}")
    if source == "cbis_ddsm":
        from morphhr_tf.data.adapters.cbis_ddsm import cbis_ddsm

        return cbis_ddsm(root, **kwargs)
    if source == "csv":
        from morphhr_tf.data.adapters.csv_manifest import csv_manifest

        return csv_manifest(root, **kwargs)
    if source == "rsna":
        from morphhr_tf.data.adapters.rsna import rsna

        return rsna(root, **kwargs)
    from morphhr_tf.data.adapters.vindr import vindr

    return vindr(root, **kwargs)


__all__ = ["SOURCES", "SourceListing", "load_source"]
