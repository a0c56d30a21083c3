"""Patient-level, deterministic train/eval/test splits.

A patient's split depends only on the hash of its (salted) patient key and
on the official splits of its images, never on the order of the records:

- a patient with any image in the official ``test`` split is ``test`` (a
  CBIS-DDSM patient can appear in several CSVs; none may straddle splits);
- else an official ``eval`` makes it ``eval``;
- else (official ``train``) ``eval`` is carved out by hash with probability
  ``eval_fraction``, the rest is ``train``;
- a patient with no official split goes to ``test`` with probability
  ``test_fraction``, ``eval`` with ``eval_fraction``, else ``train``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from morphhr_tf.data.records import ImageRecord

SPLITS = ("train", "eval", "test")
_PRIORITY = {"test": 3, "eval": 2, "train": 1, "": 0}


def check_fractions(eval_fraction: float, test_fraction: float) -> None:
    """Raises ValueError unless both lie in [0, 1) and sum to less than 1."""
    for name, value in (
        ("eval_fraction", eval_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must lie in [0, 1). Received: {name}={value}")
    if eval_fraction + test_fraction >= 1.0:
        raise ValueError(
            "eval_fraction + test_fraction must be below 1. "
            f"Received: {eval_fraction} + {test_fraction}"
        )


def hash_fraction(patient_key: str) -> float:
    """A uniform number in [0, 1) derived from the patient key."""
    digest = hashlib.sha256(("split:" + patient_key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def combine_official(splits: Iterable[str]) -> str:
    """The official split of a patient from those of its images (test wins)."""
    best = ""
    for split in splits:
        if split not in _PRIORITY:
            raise ValueError(
                f"official split must be one of {tuple(_PRIORITY)}. Received: {split!r}"
            )
        if _PRIORITY[split] > _PRIORITY[best]:
            best = split
    return best


def assign_split(
    patient_key: str,
    official: str = "",
    eval_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> str:
    """The split of one patient (see the module docstring).

    Args:
        patient_key: the salted patient key.
        official: the patient's combined official split (:func:`combine_official`).
        eval_fraction: share of training patients carved out for ``eval``.
        test_fraction: share of patients without an official split sent to ``test``.

    Returns:
        ``train``, ``eval`` or ``test``.
    """
    check_fractions(eval_fraction, test_fraction)
    if official in ("test", "eval"):
        return official
    u = hash_fraction(patient_key)
    if official == "":
        if u < test_fraction:
            return "test"
        return "eval" if u < test_fraction + eval_fraction else "train"
    if official != "train":
        raise ValueError(f"unknown official split. Received: official={official!r}")
    return "eval" if u < eval_fraction else "train"


def assign_splits(
    records: list[ImageRecord],
    salt: str | bytes | None = None,
    eval_fraction: float = 0.2,
    test_fraction: float = 0.0,
) -> list[str]:
    """Splits for a list of records (same order), patient by patient."""
    from morphhr_tf.data.deid import patient_key, resolve_salt

    key = resolve_salt(salt)
    official: dict[str, list[str]] = {}
    for record in records:
        official.setdefault(record.patient_id, []).append(record.split)
    decided = {
        pid: assign_split(
            patient_key(pid, key),
            combine_official(splits),
            eval_fraction,
            test_fraction,
        )
        for pid, splits in official.items()
    }
    return [decided[r.patient_id] for r in records]
