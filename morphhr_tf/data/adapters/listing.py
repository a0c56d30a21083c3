"""What an adapter returns: the image records and the problems it found."""

from __future__ import annotations

import dataclasses

from morphhr_tf.data import fileio
from morphhr_tf.data.records import ImageRecord


@dataclasses.dataclass
class SourceListing:
    """The images a data set lists, and what could not be listed.

    Attributes:
        records: one :class:`ImageRecord` per full image, sorted by path.
        problems: ``(path or row description, reason)`` for each row whose
            file is missing or unusable and each image file no row lists.
            Nothing is dropped silently: every row is either a record or a
            problem.
    """

    records: list[ImageRecord] = dataclasses.field(default_factory=list)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def normalize_row(raw: dict) -> dict[str, str]:
    """A ``csv.DictReader`` row with lower-case, stripped column names and
    stripped string values (missing values become ``""``; unnamed extra
    columns are dropped)."""
    return {str(k).strip().lower(): str(v or "").strip() for k, v in raw.items() if k}


def parse_label(value: object) -> int | None:
    """``0``/``1`` from '0', '1', '1.0', 0, 1, True, False; None otherwise."""
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true"):
        return 1
    if text in ("0", "0.0", "false"):
        return 0
    return None


def find_files(root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Every regular file under ``root`` whose name ends with one of ``suffixes``.

    Does not follow directory symlinks (no loops); sorted absolute paths
    (URLs under a URL ``root``).
    """
    found = []
    lower = tuple(s.lower() for s in suffixes)
    for dirpath, _dirnames, filenames in fileio.walk(root):
        for name in filenames:
            if name.lower().endswith(lower):
                found.append(fileio.abspath(fileio.join(dirpath, name)))
    return sorted(found)
