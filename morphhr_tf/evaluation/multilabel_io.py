"""Multi-label predictions joined to their labels, for the report CLI.

A multi-label predictions CSV (the predict CLI's, for a ChestX-ray14 model)
has ``path``, maybe ``image_key`` (empty for PNG inputs), maybe
``status``/``reason``, and one probability column per label named by the
label (``Atelectasis``, ..., ``Hernia``). The label names are the columns
that are ChestX-ray14 findings (:data:`FINDINGS`, in its order) unless given.

A labels file is either
(a) NIH's ``Data_Entry_2017.csv`` / ``Data_Entry_2017_v2020.csv`` (found by
its ``Image Index`` and ``Finding Labels`` columns, with or without the 2017
file's trailing empty column; ``Finding Labels`` pipe-separated or
``No Finding``), joined on the base name of ``path``; or
(b) a CSV with ``image_key`` or ``path`` and one 0/1 column per label name,
joined on ``image_key`` when both files have it and every scored prediction
has one, else on ``path`` (after ``os.path.normpath``).

Nothing is dropped silently: every case not used is returned as
``(key, reason)``: rejected by predict, no label, no prediction, or (format
a) a labels row that names a finding outside :data:`FINDINGS` and the label
names, or ``No Finding`` with a finding: the row is left out, never read as
negatives. A case listed twice with different labels, or a prediction key
listed twice, is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from morphhr_tf.data.adapters.chestxray14 import FINDINGS, NO_FINDING

KEY_COLUMNS = ("image_key", "path")
NIH_COLUMNS = ("Image Index", "Finding Labels")
BINARY_SCORE_COLUMNS = ("probability", "score")


@dataclasses.dataclass
class LabelTable:
    """A labels file, read: ``labels[key]`` is a 0/1 vector over ``names``."""

    path: str
    kind: str  # "nih" (format a) or "columns" (format b)
    names: tuple[str, ...]
    key_columns: tuple[str, ...]  # format b's key columns; () for NIH
    labels: dict[str, np.ndarray]
    rejected: list[tuple[str, str]]  # (key, reason) of labels rows left out
    notes: list[str]


def _read_table(path: str, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and ``(line, values)`` of the non-blank rows."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = [(reader.line_num, [v.strip() for v in r]) for r in reader if any(r)]
    if not header or not rows:
        raise ValueError(f"{path}: no {what} rows.")
    return header, rows


def prediction_label_names(
    columns: Sequence[str], label_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The label names of a predictions CSV: ``label_names`` when given (each
    must be a column), else its columns that are :data:`FINDINGS`.

    Raises:
        ValueError: for a given name that is no column, or no finding column.
    """
    if label_names:
        missing = [n for n in label_names if n not in columns]
        if missing or len(set(label_names)) != len(label_names):
            raise ValueError(
                f"label names must be distinct prediction columns. Received: "
                f"missing {missing} of {list(label_names)}; columns {list(columns)}"
            )
        return tuple(label_names)
    found = tuple(f for f in FINDINGS if f in columns)
    if not found:
        raise ValueError(
            "No prediction column is a ChestX-ray14 finding; name the label "
            f"columns with --label-names. Received columns: {list(columns)}"
        )
    return found


def is_multilabel(path: str, label_names: Sequence[str] | None = None) -> bool:
    """True for a predictions CSV of a multi-label model: ``label_names``
    given, or no ``probability``/``score`` column and a finding column."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    if label_names:
        return True
    has_binary = any(c in header for c in BINARY_SCORE_COLUMNS)
    return not has_binary and any(f in header for f in FINDINGS)


def _parse_findings(text: str, names: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """A ``Finding Labels`` value as a 0/1 vector over ``names``, or why not."""
    parts = [p.strip() for p in text.split("|")]
    if not all(parts):
        return None, f"malformed Finding Labels in labels: {text!r}"
    if NO_FINDING in parts:
        if len(parts) > 1:
            return None, f"'{NO_FINDING}' with findings in labels: {text!r}"
        return np.zeros(len(names), np.int64), ""
    unknown = [p for p in parts if p not in FINDINGS and p not in names]
    if unknown:
        return None, f"unknown finding in labels: {', '.join(map(repr, unknown))}"
    return np.array([int(n in parts) for n in names], np.int64), ""


def _add(labels: dict, key: str, vector: np.ndarray, where: str) -> None:
    if not np.array_equal(labels.setdefault(key, vector), vector):
        raise ValueError(f"{where}: {key!r} is listed twice with different labels.")


def _read_nih(path, header, rows, names) -> LabelTable:
    image, findings = (header.index(c) for c in NIH_COLUMNS)
    labels: dict[str, np.ndarray] = {}
    rejected: list[tuple[str, str]] = []
    for line, values in rows:
        key = values[image] if len(values) > image else ""
        text = values[findings] if len(values) > findings else ""
        if not key or not text:
            raise ValueError(
                f"{path}, line {line}: needs an Image Index and Finding Labels. "
                f"Received: {values[:2]}"
            )
        vector, why = _parse_findings(text, names)
        if vector is None:
            rejected.append((key, why))
        else:
            _add(labels, key, vector, f"{path}, line {line}")
    return LabelTable(path, "nih", tuple(names), (), labels, rejected, [])


def _read_columns(path, header, rows, names) -> LabelTable:
    key_columns = tuple(c for c in KEY_COLUMNS if c in header)
    missing = [n for n in names if n not in header]
    if not key_columns or missing:
        raise ValueError(
            f"{path}: a labels CSV needs one of {KEY_COLUMNS} and a 0/1 column per "
            f"label (missing: {missing}), or NIH's {list(NIH_COLUMNS)}. "
            f"Received columns: {header}"
        )
    key_at = header.index(key_columns[0])
    cols = [header.index(n) for n in names]
    labels: dict[str, np.ndarray] = {}
    for line, values in rows:
        values = values + [""] * (len(header) - len(values))
        key = values[key_at]
        texts = [values[c] for c in cols]
        if not key or any(t not in ("0", "1") for t in texts):
            bad = {n: t for n, t in zip(names, texts) if t not in ("0", "1")}
            raise ValueError(
                f"{path}, line {line}: needs a {key_columns[0]} and 0/1 labels. "
                f"Received: {key_columns[0]}={key!r}, other values {bad}"
            )
        if key_columns[0] == "path":
            key = os.path.normpath(key)
        _add(labels, key, np.array(texts, np.int64), f"{path}, line {line}")
    extra = [f for f in FINDINGS if f in header and f not in names]
    notes = (
        [f"{path}: findings in the labels file not evaluated: {extra}"] if extra else []
    )
    return LabelTable(path, "columns", tuple(names), key_columns, labels, [], notes)


def read_label_table(path: str, label_names: Sequence[str]) -> LabelTable:
    """Reads a labels file of either format (see the module docstring).

    Args:
        path: NIH's data-entry CSV or a CSV with one 0/1 column per label.
        label_names: the labels to read, in order.

    Returns:
        A :class:`LabelTable`; NIH keys are ``Image Index`` values, format (b)
        keys are its first key column's values.

    Raises:
        ValueError: naming the file and line for missing columns, a value
            other than 0/1, an empty key, or one case with two label sets.
    """
    header, rows = _read_table(path, "label")
    if all(c in header for c in NIH_COLUMNS):
        return _read_nih(path, header, rows, label_names)
    return _read_columns(path, header, rows, label_names)


def _join_column(header: list[str], rows: list[dict], table: LabelTable) -> str:
    """``basename`` (NIH) or the key column both files share."""
    if table.kind == "nih":
        if "path" not in header:
            raise ValueError(
                f"joining on NIH's Image Index needs a 'path' column. Received "
                f"columns: {header}"
            )
        return "basename"
    shared = [c for c in table.key_columns if c in header]
    if shared and shared[0] == "image_key" and "path" in shared:
        if any(not (r.get("image_key") or "").strip() for r in rows):
            shared.remove("image_key")  # PNG inputs have no image key
    if not shared:
        raise ValueError(
            f"the predictions and {table.path} share no key column {KEY_COLUMNS}. "
            f"Received columns: {header} and {list(table.key_columns)}"
        )
    return shared[0]


def _key(row: dict, column: str) -> str:
    if column == "basename":
        return os.path.basename((row.get("path") or "").strip())
    value = (row.get(column) or "").strip()
    return os.path.normpath(value) if column == "path" and value else value


def _scores(row: dict, names: Sequence[str], where: str) -> list[float]:
    try:
        scores = [float(row[n]) for n in names]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: a scored row needs a number per label: {e}") from e
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}: scores must be finite. Received: {scores}")
    return scores


def read_multilabel_predictions(path: str, table: LabelTable) -> dict:
    """One predictions CSV joined to a labels table.

    Args:
        path: a multi-label predictions CSV with a column per ``table.names``.
        table: from :func:`read_label_table`.

    Returns:
        ``{"names", "keys", "labels" [N, L], "scores" [N, L], "join",
        "left_out"}``: the scored, labelled cases in file order, the join
        column (``basename``, ``image_key`` or ``path``) and ``(key, reason)``
        for every case not used.

    Raises:
        ValueError: naming the file for a missing column, a key listed twice,
            an unreadable score, or no case left to evaluate.
    """
    header, raw = _read_table(path, "prediction")
    missing = [n for n in table.names if n not in header]
    if missing:
        raise ValueError(f"{path}: no column for labels {missing}. Received: {header}")
    rows = [dict(zip(header, values)) | {"_line": line} for line, values in raw]
    scored = [r for r in rows if (r.get("status") or "ok").strip() == "ok"]
    column = _join_column(header, scored, table)
    rejected = dict(table.rejected)
    keys, labels, scores, seen = [], [], [], set()
    left_out = list(table.rejected)
    for row in rows:
        key, where = _key(row, column), f"{path}, line {row['_line']}"
        status = (row.get("status") or "ok").strip()
        if not key and status != "ok":  # e.g. no image key: name it by path
            key = (row.get("path") or "").strip()
        if key in seen or not key:
            raise ValueError(f"{where}: {column} {key!r} is empty or listed twice.")
        seen.add(key)
        if status != "ok":
            reason = (row.get("reason") or "").strip()
            left_out.append((key, f"{status} by predict: {reason}".strip(": ")))
        elif key in rejected:
            continue  # listed once, with the labels row's reason
        elif key not in table.labels:
            left_out.append((key, "no label"))
        else:
            keys.append(key)
            labels.append(table.labels[key])
            scores.append(_scores(row, table.names, where))
    left_out += [(k, "no prediction") for k in table.labels if k not in seen]
    if not keys:
        raise ValueError(
            f"no scored prediction in {path} has a label in {table.path} "
            f"(joined on {column}; {len(left_out)} cases left out)."
        )
    return {
        "names": table.names,
        "keys": keys,
        "labels": np.asarray(labels, np.int64),
        "scores": np.asarray(scores, np.float64),
        "join": column,
        "left_out": left_out,
    }
