"""A CSV manifest: ``path,label`` plus optional metadata columns -> records.

Columns: ``path`` and ``label`` (0/1) are required; ``patient_id``, ``view``,
``laterality``, ``density``, ``split`` (train/test/eval or empty),
``abnormality`` and ``image_id`` are optional. Relative paths are relative to
the manifest's folder (a URL manifest's too); a row may also give a URL. A row without ``patient_id`` is its own patient (its
path stands in), which cannot prevent leakage between images of one person:
give patient ids whenever the data has them.
"""

from __future__ import annotations

import csv
import os

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import (
    SourceListing,
    find_files,
    normalize_row,
    parse_label,
)
from morphhr_tf.data.records import (
    ImageRecord,
    normalize_laterality,
    normalize_split,
    normalize_view,
)

IMAGE_SUFFIXES = (".dcm", ".dicom")


def csv_manifest(
    path: str,
    *,
    images_dir: str | None = None,
    dataset: str = "csv",
) -> SourceListing:
    """Lists the images of a CSV manifest.

    Args:
        path: the manifest file.
        images_dir: a folder to scan for DICOM files no row lists (reported
            as problems); ``None`` skips the scan.
        dataset: the ``dataset`` value of the records.

    Returns:
        A :class:`SourceListing`.

    Raises:
        ValueError: when the manifest lacks the ``path`` or ``label`` column.
    """
    path = fileio.abspath(path)
    base = fileio.dirname(path)
    records: list[ImageRecord] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    with fileio.open_file(path, "r", newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {str(c).strip().lower() for c in reader.fieldnames or []}
        if not {"path", "label"} <= columns:
            raise ValueError(
                "a manifest needs 'path' and 'label' columns. "
                f"Received columns: {sorted(columns)}"
            )
        name = fileio.basename(path)
        for line, raw in enumerate(reader, start=2):
            row = normalize_row(raw)
            where = f"{name} line {line}"
            rel = row.get("path", "")
            if not rel:
                problems.append((where, "empty path"))
                continue
            file_path = fileio.normpath(fileio.join(base, rel))
            label = parse_label(row.get("label", ""))
            if label is None:
                problems.append(
                    (f"{where}: {rel}", f"label {row.get('label')!r} is not 0 or 1")
                )
                continue
            if not fileio.isfile(file_path):
                problems.append((f"{where}: {rel}", "file not found"))
                continue
            if file_path in seen:
                problems.append((f"{where}: {rel}", "duplicate row for a listed file"))
                continue
            seen.add(file_path)
            records.append(
                ImageRecord(
                    path=file_path,
                    label=label,
                    patient_id=row.get("patient_id", "") or file_path,
                    view=normalize_view(row.get("view", "")),
                    laterality=normalize_laterality(row.get("laterality", "")),
                    density=row.get("density", ""),
                    split=normalize_split(row.get("split", "")),
                    dataset=row.get("dataset", "") or dataset,
                    abnormality=row.get("abnormality", ""),
                    image_id=row.get("image_id", "") or rel,
                )
            )
    if images_dir is not None:
        for orphan in find_files(os.fspath(images_dir), IMAGE_SUFFIXES):
            if orphan not in seen:
                problems.append((orphan, "image file that no manifest row lists"))
    records.sort(key=lambda r: r.path)
    return SourceListing(records=records, problems=problems)
