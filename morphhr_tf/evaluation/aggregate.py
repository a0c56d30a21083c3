"""Breast- and exam-level scores and labels from per-image predictions.

Pure functions on rows: mappings such as the rows of the predict CLI's CSV
(:mod:`morphhr_tf.serving.predict`) read with :class:`csv.DictReader`. The
fields used:

- ``patient_key``: the salted patient key (never a raw identifier);
- ``study_key``: the salted study key, ``""`` when the study is unknown;
- ``laterality``: ``L``/``R`` (``LEFT``/``RIGHT`` are accepted);
- ``view``: ``CC``, ``MLO``, ... or ``""``;
- ``probability`` (or ``score``): a finite number;
- ``label`` (optional): 0/1, on every row or on none.

Definitions:

- An **exam** is one patient's study, ``(patient_key, study_key)``; an image
  whose study is unknown, or every image with ``exam_by="patient"``, belongs
  to the patient's exam ``(patient_key, "")``. Use ``exam_by="patient"`` when
  each image is its own study (CBIS-DDSM's TCIA release does that) or when a
  folder holds one exam per patient.
- A **breast** is an exam's images of one laterality (CC + MLO, and any
  other view).

Scores (``how``):

- breast: ``mean`` (recommended: CC and MLO are two looks at the same
  breast, and the mean uses both) or ``max`` of its images' probabilities;
- exam: ``mean`` or ``max`` over its images, or ``max_breast_mean``, the
  maximum over its breasts of the breast means. ``max_breast_mean`` is the
  recommended exam score, the common choice in screening studies: cancer is
  nearly always unilateral, so a normal contralateral breast must not dilute
  the suspicious one (as ``mean`` does), while averaging the two views of a
  breast is steadier than the single highest image (``max``).

Labels: a breast is positive if any of its images is; an exam if any of its
breasts is (any of its images).

Every function raises ``ValueError`` naming the row (0-based) for a missing
key, an empty patient key or laterality, a score that is not a finite number,
a label other than 0/1, or labels on some rows but not all. Rows without a
patient key or laterality (PNG files, DICOMs lacking the tags) and unscored
rows are separated first with :func:`partition_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from morphhr_tf.data.records import normalize_laterality

BREAST_SCORES = ("mean", "max")
EXAM_SCORES = ("mean", "max", "max_breast_mean")
RECOMMENDED_BREAST_SCORE = "mean"
RECOMMENDED_EXAM_SCORE = "max_breast_mean"
EXAM_BY = ("study", "patient")
BREAST_FIELDS = (
    "patient_key",
    "study_key",
    "laterality",
    "n_images",
    "views",
    "mean_probability",
    "max_probability",
)
EXAM_FIELDS = (
    "patient_key",
    "study_key",
    "n_images",
    "n_breasts",
    "mean_probability",
    "max_probability",
    "max_breast_mean_probability",
)
_SCORE_COLUMNS = ("probability", "score")

Row = Mapping[str, Any]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}. Received: {name}={value!r}")


def _field(row: Row, i: int, name: str) -> str:
    if name not in row:
        raise ValueError(f"row {i} has no {name!r}. Received columns: {sorted(row)}")
    return "" if row[name] is None else str(row[name]).strip()


def _score(row: Row, i: int) -> float:
    column = next((c for c in _SCORE_COLUMNS if c in row), None)
    if column is None:
        raise ValueError(
            f"row {i} has no score column {_SCORE_COLUMNS}. "
            f"Received columns: {sorted(row)}"
        )
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"row {i}: {column} must be a finite number. Received: {row[column]!r}"
        )
    return value


def _labels(rows: Sequence[Row]) -> list[int] | None:
    """Each row's 0/1 label, or None when no row has one."""
    given = [i for i, r in enumerate(rows) if _field_or_empty(r, "label") != ""]
    if not given:
        return None
    if len(given) != len(rows):
        missing = min(set(range(len(rows))) - set(given))
        raise ValueError(
            f"labels are inconsistent: {len(given)} of {len(rows)} rows have one "
            f"(first without: row {missing}); give every image a label or none."
        )
    labels = []
    for i, row in enumerate(rows):
        text = _field_or_empty(row, "label")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if value not in (0.0, 1.0):
            raise ValueError(f"row {i}: label must be 0 or 1. Received: {text!r}")
        labels.append(int(value))
    return labels


def _field_or_empty(row: Row, name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


def _parse(rows: Sequence[Row], exam_by: str, need_laterality: bool) -> list[dict]:
    """Validated ``{exam, laterality, view, score, label}`` per row."""
    _check_choice("exam_by", exam_by, EXAM_BY)
    labels = _labels(rows)
    parsed = []
    for i, row in enumerate(rows):
        patient = _field(row, i, "patient_key")
        if not patient:
            raise ValueError(
                f"row {i}: empty patient_key; leave such rows out first "
                "(morphhr_tf.evaluation.aggregate.partition_rows)."
            )
        study = _field(row, i, "study_key") if exam_by == "study" else ""
        laterality = ""
        if need_laterality:
            raw = _field(row, i, "laterality")
            laterality = normalize_laterality(raw)
            if not laterality:
                raise ValueError(
                    f"row {i}: laterality must be L or R. Received: {raw!r}"
                )
        parsed.append(
            {
                "exam": (patient, study),
                "laterality": laterality,
                "view": _field_or_empty(row, "view").upper(),
                "score": _score(row, i),
                "label": None if labels is None else labels[i],
            }
        )
    return parsed


def _group(items: list[dict], key) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return dict(sorted(groups.items()))


def _pool(scores: Sequence[float], how: str) -> float:
    return max(scores) if how == "max" else sum(scores) / len(scores)


def _with_label(out: dict, members: list[dict]) -> dict:
    if members[0]["label"] is not None:
        out["label"] = int(any(m["label"] for m in members))
    return out


def breast_scores(
    rows: Sequence[Row], how: str = RECOMMENDED_BREAST_SCORE, *, exam_by: str = "study"
) -> list[dict[str, Any]]:
    """One score per breast (exam x laterality), sorted by key.

    Args:
        rows: per-image rows (see the module docstring).
        how: ``mean`` or ``max`` of the breast's image probabilities.
        exam_by: ``study`` or ``patient`` (see the module docstring).

    Returns:
        ``[{"patient_key", "study_key", "laterality", "n_images", "views",
        "score"}]``, plus ``"label"`` (1 if any image is positive) when the
        rows carry labels. ``views`` joins the distinct views with ``+``.

    Raises:
        ValueError: on invalid rows (see the module docstring) or arguments.

    Example:
        >>> rows = [
        ...     {"patient_key": "k", "study_key": "", "laterality": "L",
        ...      "view": "CC", "probability": "0.2"},
        ...     {"patient_key": "k", "study_key": "", "laterality": "L",
        ...      "view": "MLO", "probability": "0.6"},
        ... ]
        >>> breast_scores(rows)[0]["score"], breast_scores(rows, "max")[0]["score"]
        (0.4, 0.6)
    """
    _check_choice("how", how, BREAST_SCORES)
    items = _parse(rows, exam_by, need_laterality=True)
    out = []
    for (exam, laterality), members in _group(
        items, lambda m: (m["exam"], m["laterality"])
    ).items():
        views = sorted({m["view"] for m in members} - {""})
        breast = {
            "patient_key": exam[0],
            "study_key": exam[1],
            "laterality": laterality,
            "n_images": len(members),
            "views": "+".join(views),
            "score": _pool([m["score"] for m in members], how),
        }
        out.append(_with_label(breast, members))
    return out


def exam_scores(
    rows: Sequence[Row], how: str = RECOMMENDED_EXAM_SCORE, *, exam_by: str = "study"
) -> list[dict[str, Any]]:
    """One score per exam, sorted by key.

    Args:
        rows: per-image rows (see the module docstring); ``laterality`` is
            needed only for ``max_breast_mean``.
        how: ``mean`` or ``max`` over the exam's images, or
            ``max_breast_mean`` (recommended; see the module docstring).
        exam_by: ``study`` or ``patient``.

    Returns:
        ``[{"patient_key", "study_key", "n_images", "n_breasts", "score"}]``,
        plus ``"label"`` (1 if any image is positive) when the rows carry
        labels. ``n_breasts`` is 0 when lateralities are not used.

    Raises:
        ValueError: on invalid rows (see the module docstring) or arguments.
    """
    _check_choice("how", how, EXAM_SCORES)
    by_breast = how == "max_breast_mean"
    items = _parse(rows, exam_by, need_laterality=by_breast)
    out = []
    for exam, members in _group(items, lambda m: m["exam"]).items():
        breasts = _group(members, lambda m: (m["laterality"],))
        if by_breast:
            score = max(
                _pool([m["score"] for m in b], "mean") for b in breasts.values()
            )
        else:
            score = _pool([m["score"] for m in members], how)
        row = {
            "patient_key": exam[0],
            "study_key": exam[1],
            "n_images": len(members),
            "n_breasts": len(breasts) if by_breast else 0,
            "score": score,
        }
        out.append(_with_label(row, members))
    return out


def partition_rows(rows: Sequence[Row]) -> tuple[list[Row], list[tuple[Row, str]]]:
    """Splits rows into those the breast and exam levels can use, and the rest.

    A row is left out when it was not scored (``status`` other than ``ok``,
    or an empty probability), or has no patient key or no laterality.

    Returns:
        ``(used, left_out)``: ``left_out`` pairs each row with its reason.
    """
    used, left_out = [], []
    for row in rows:
        status = _field_or_empty(row, "status") or "ok"
        score = next((c for c in _SCORE_COLUMNS if c in row), "probability")
        if status != "ok" or _field_or_empty(row, score) == "":
            left_out.append((row, "not scored"))
        elif not _field_or_empty(row, "patient_key"):
            left_out.append((row, "no patient key"))
        elif not normalize_laterality(_field_or_empty(row, "laterality")):
            left_out.append((row, "no laterality"))
        else:
            used.append(row)
    return used, left_out


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def breast_table(rows: Sequence[Row], *, exam_by: str = "study") -> list[dict]:
    """:data:`BREAST_FIELDS` rows (mean and max per breast) for a CSV."""
    means = breast_scores(rows, "mean", exam_by=exam_by)
    maxes = breast_scores(rows, "max", exam_by=exam_by)
    return [
        {
            **{k: b[k] for k in BREAST_FIELDS[:5]},
            "mean_probability": _fmt(b["score"]),
            "max_probability": _fmt(m["score"]),
        }
        for b, m in zip(means, maxes)
    ]


def exam_table(rows: Sequence[Row], *, exam_by: str = "study") -> list[dict]:
    """:data:`EXAM_FIELDS` rows (the three exam scores) for a CSV."""
    scores = {how: exam_scores(rows, how, exam_by=exam_by) for how in EXAM_SCORES}
    table = []
    for i, exam in enumerate(scores[RECOMMENDED_EXAM_SCORE]):
        row = {k: exam[k] for k in EXAM_FIELDS[:4]}
        for how in EXAM_SCORES:
            row[f"{how}_probability"] = _fmt(scores[how][i]["score"])
        table.append(row)
    return table
