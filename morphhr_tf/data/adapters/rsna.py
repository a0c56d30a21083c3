"""RSNA Screening Mammography: ``train.csv`` + ``train_images/<patient>/<image>.dcm``.

Label: the ``cancer`` column. No official split (all records have split '').
"""

from __future__ import annotations

import csv

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import (
    SourceListing,
    find_files,
    normalize_row,
    parse_label,
)
from morphhr_tf.data.records import ImageRecord, normalize_laterality, normalize_view

DATASET = "rsna"


def rsna(
    root: str, *, csv_name: str = "train.csv", images_dir: str = "train_images"
) -> SourceListing:
    """Lists the RSNA screening mammograms under ``root``.

    Args:
        root: the competition folder (a local path or a URL).
        csv_name: the labels file (``train.csv``).
        images_dir: the image folder, relative to ``root``.

    Returns:
        A :class:`SourceListing`; rows without a file and files without a row
        are problems.

    Raises:
        ValueError: when the CSV is missing.
    """
    root = fileio.abspath(root)
    csv_path = fileio.join(root, csv_name)
    if not fileio.isfile(csv_path):
        raise ValueError(f"RSNA labels file not found: {csv_path!r}")
    image_root = fileio.join(root, images_dir)
    records, problems, seen = [], [], set()
    with fileio.open_file(csv_path, "r", newline="", encoding="utf-8-sig") as f:
        for line, raw in enumerate(csv.DictReader(f), start=2):
            row = normalize_row(raw)
            pid, iid = row.get("patient_id", ""), row.get("image_id", "")
            where = f"{csv_name} line {line}"
            if not pid or not iid:
                problems.append((where, "row lacks patient_id or image_id"))
                continue
            path = fileio.join(image_root, pid, f"{iid}.dcm")
            label = parse_label(row.get("cancer", ""))
            if label is None:
                problems.append((f"{where}: {pid}/{iid}", "cancer is not 0 or 1"))
                continue
            if not fileio.isfile(path):
                problems.append((f"{where}: {pid}/{iid}", "file not found"))
                continue
            seen.add(path)
            records.append(
                ImageRecord(
                    path=path,
                    label=label,
                    patient_id=pid,
                    view=normalize_view(row.get("view", "")),
                    laterality=normalize_laterality(row.get("laterality", "")),
                    density=row.get("density", "").upper(),
                    split="",
                    dataset=DATASET,
                    abnormality="cancer" if label else "",
                    image_id=iid,
                )
            )
    if fileio.isdir(image_root):
        for orphan in find_files(image_root, (".dcm",)):
            if orphan not in seen:
                problems.append((orphan, f"image file that no {csv_name} row lists"))
    records.sort(key=lambda r: r.path)
    return SourceListing(records=records, problems=problems)
