"""The predict CLI's per-breast and per-exam CSVs, written next to its image
CSV (definitions in :mod:`morphhr_tf.evaluation.aggregate`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence


def level_paths(out: str) -> dict[str, str]:
    """``{"breast": <out>_breast.csv, "exam": <out>_exam.csv}`` next to ``out``."""
    root, ext = os.path.splitext(out)
    return {level: f"{root}_{level}{ext or '.csv'}" for level in ("breast", "exam")}


def _write_csv(path: str, fields: Sequence[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def write_levels(rows: list[dict[str, str]], out: str, exam_by: str = "study") -> str:
    """Writes the breast and exam CSVs (see the module docstring).

    Args:
        rows: :func:`predict_files` rows.
        out: the image CSV's path; the level files go next to it.
        exam_by: ``study`` or ``patient``
            (:mod:`morphhr_tf.evaluation.aggregate`).

    Returns:
        A one-line summary of what was written and left out.
    """
    from morphhr_tf.evaluation import aggregate

    used, left_out = aggregate.partition_rows(rows)
    breasts = aggregate.breast_table(used, exam_by=exam_by)
    exams = aggregate.exam_table(used, exam_by=exam_by)
    paths = level_paths(out)
    _write_csv(paths["breast"], aggregate.BREAST_FIELDS, breasts)
    _write_csv(paths["exam"], aggregate.EXAM_FIELDS, exams)
    reasons: dict[str, int] = {}
    for _, reason in left_out:
        reasons[reason] = reasons.get(reason, 0) + 1
    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    line = (
        f"{len(breasts)} breasts, {len(exams)} exams from {len(used)} images "
        f"({len(left_out)} left out{': ' + why if why else ''}) "
        f"-> {paths['breast']}, {paths['exam']}"
    )
    if exam_by == "study" and len(exams) > 1 and all(e["n_images"] == 1 for e in exams):
        line += (
            "\nnote: every exam has a single image (each image is its own study?); "
            "--exam-by patient groups a patient's images into one exam"
        )
    return line
