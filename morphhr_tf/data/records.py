"""The image record: one image (a full-field mammogram, a chest radiograph) as
listed by a data set adapter."""

from __future__ import annotations

import dataclasses

OFFICIAL_SPLITS = ("train", "eval", "test", "")


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image to ingest, as listed by a data set adapter.

    Frozen and made of plain strings, ints and tuples of ints, so Beam can
    pickle it.

    Attributes:
        path: absolute path of the image file (DICOM; PNG for ChestX-ray14),
            or its URL (``gs://bucket/...``) when the data set was listed
            from one.
        label: 1 if any finding on the image is malignant (or the data set's
            positive proxy), else 0. For a multi-label data set (ChestX-ray14):
            1 if the image has any finding (any 1 in ``labels``), else 0.
        patient_id: the data set's patient identifier. Only its salted hash
            (:func:`morphhr_tf.data.deid.patient_key`) leaves the ingest.
        view: ``CC``, ``MLO``, ... (``PA``/``AP`` for a chest radiograph;
            '' when unknown).
        laterality: ``L`` or ``R`` ('' when unknown; the DICOM header is used).
        density: breast density as text, ``1``-``4`` or ``A``-``D`` ('' unknown).
        split: the official split, ``train``, ``test`` (``eval`` when a
            manifest names one) or '' when the data set has none.
        dataset: source name, e.g. ``cbis_ddsm``.
        abnormality: short description of the findings, e.g.
            ``mass:MALIGNANT;calcification:BENIGN`` or ``Effusion|Mass``
            ('' for none).
        image_id: the data set's image identifier (hashed into ``image_key``);
            '' falls back to ``path``.
        labels: the multi-hot vector of a multi-label task, one 0/1 per label
            name in the task's order (ChestX-ray14: the 14 findings of
            :data:`morphhr_tf.data.adapters.chestxray14.FINDINGS`; all zeros
            for ``No Finding``). Empty for the binary data sets, which use
            ``label`` alone.
    """

    path: str
    label: int
    patient_id: str
    view: str = ""
    laterality: str = ""
    density: str = ""
    split: str = ""
    dataset: str = ""
    abnormality: str = ""
    image_id: str = ""
    labels: tuple[int, ...] = ()


def normalize_laterality(value: str) -> str:
    """Maps LEFT/RIGHT/L/R (any case) to ``L``/``R``; anything else to ''."""
    v = str(value or "").strip().upper()
    if v in ("L", "LEFT"):
        return "L"
    if v in ("R", "RIGHT"):
        return "R"
    return ""


_VIEW_ALIASES = {
    "CRANIO-CAUDAL": "CC",
    "CRANIOCAUDAL": "CC",
    "MEDIO-LATERAL OBLIQUE": "MLO",
    "MEDIOLATERAL OBLIQUE": "MLO",
    "MEDIO-LATERAL": "ML",
    "MEDIOLATERAL": "ML",
    "LATERO-MEDIAL": "LM",
    "LATEROMEDIAL": "LM",
}


def normalize_view(value: str) -> str:
    """Upper-cases a view code and maps spelled-out DICOM code meanings to it."""
    v = " ".join(str(value or "").strip().upper().split())
    return _VIEW_ALIASES.get(v, v)


def normalize_split(value: str) -> str:
    """Maps the spellings data sets use to ``train``/``eval``/``test``/''."""
    v = str(value or "").strip().lower()
    if v in ("train", "training"):
        return "train"
    if v in ("test", "testing"):
        return "test"
    if v in ("eval", "val", "valid", "validation"):
        return "eval"
    return ""
