"""Data set adapters: a data set on disk -> a list of image records.

Use :func:`load_source`; each adapter is also importable on its own. Every
adapter reads through :mod:`morphhr_tf.data.fileio`: a root may be a local
folder or a URL (``gs://bucket/cbis``), and the records' paths are then URLs.
:func:`label_names` gives the label names of a multi-label data set (the
order of its records' ``labels``).
"""

from __future__ import annotations

import os
from typing import Any

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import SourceListing

SOURCES = ("cbis_ddsm", "chestxray14", "csv", "rsna", "vindr")


def label_names(dataset: str) -> tuple[str, ...]:
    """The names of a data set's multi-hot ``labels``, in their order.

    Args:
        dataset: the records' ``dataset`` (e.g. ``chestxray14``).

    Returns:
        ChestX-ray14: its 14 findings
        (:data:`morphhr_tf.data.adapters.chestxray14.FINDINGS`); ``()`` for
        the binary data sets, whose records have no ``labels``.
    """
    if dataset == "chestxray14":
        from morphhr_tf.data.adapters.chestxray14 import FINDINGS

        return FINDINGS
    return ()


def load_source(source: str, root: str | os.PathLike, **kwargs: Any) -> SourceListing:
    """Lists the full images of a data set.

    Args:
        source: ``cbis_ddsm``, ``chestxray14``, ``csv`` (``root`` is then the
            manifest file), ``rsna`` or ``vindr``.
        root: the data set's folder (or the manifest for ``csv``): a local
            path or a URL.
        **kwargs: passed to the adapter (e.g. ``images_dir`` for ``csv``,
            ``positive_birads`` for ``vindr``, ``csv_name`` and ``bbox`` for
            ``chestxray14``).

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
    if source == "chestxray14":
        from morphhr_tf.data.adapters.chestxray14 import chestxray14

        return chestxray14(root, **kwargs)
    if source == "csv":
        from morphhr_tf.data.adapters.csv_manifest import csv_manifest

        return csv_manifest(root, **kwargs)
    if source == "rsna":
        from morphhr_tf.data.adapters.rsna import rsna

        return rsna(root, **kwargs)
    from morphhr_tf.data.adapters.vindr import vindr

    return vindr(root, **kwargs)


__all__ = ["SOURCES", "SourceListing", "label_names", "load_source"]
