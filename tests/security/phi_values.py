"""The fake identifiers of a synthetic data set, and a byte scanner for them.

:func:`identifiers` collects every identifying value the synthetic generator
writes (DICOM header fields, name parts, study/series UIDs, and the patient
ids, case folders and UID folders inside the CBIS-DDSM CSVs' paths);
:func:`scan` searches raw and gunzipped bytes for them.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Iterable, Mapping

HEADER_PHI = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "StudyDate",
    "ReferringPhysicianName",
)
CSVS = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)


def identifiers(root) -> set[str]:
    """Every fake identifier in the headers, and the ids inside the CSV paths.

    Args:
        root: a pristine synthetic CBIS-DDSM tree (before any file is spoiled).

    Returns:
        The identifying strings (each header value; name parts of 5 or more
        characters; study and series UIDs; CBIS patient ids such as
        ``P_00001``; the case and UID folders of the CSV paths).
    """
    import pydicom

    values: set[str] = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if not name.endswith(".dcm"):
                continue
            ds = pydicom.dcmread(os.path.join(dirpath, name), stop_before_pixels=True)
            for keyword in HEADER_PHI:
                value = str(ds.get(keyword, "") or "")
                assert value, (name, keyword)  # the generator writes them all
                values.add(value)
                if keyword.endswith("Name"):
                    values.update(p for p in re.split(r"[\^ ]", value) if len(p) >= 5)
            values.update((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)))
    for name in CSVS:
        with open(os.path.join(root, name), newline="") as f:
            for row in csv.DictReader(f):
                values.add(row["patient_id"])  # P_00001, as in real CBIS-DDSM
                for column in ("image file path", "cropped image file path"):
                    parts = row[column].split("/")
                    values.update(p for p in parts[:-1] if p)  # case folder, UIDs
    return values


def _gunzip(data: bytes) -> bytes | None:
    """All gzip members of ``data`` decompressed, or None if it is not gzip."""
    if not data.startswith(b"\x1f\x8b"):
        return None
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        # A truncated stream (a killed writer): what can be inflated.
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def read_blobs(folders: Iterable[str], skip: Iterable[str] = ()) -> dict[str, bytes]:
    """``{path: bytes}`` of every regular file under ``folders`` (symlinks not
    followed), plus ``{path + " (gunzipped)": bytes}`` for gzip files.

    Args:
        folders: folders (or single files) to read.
        skip: folders whose files are left out.
    """
    skip = tuple(os.path.realpath(s) + os.sep for s in skip)
    blobs: dict[str, bytes] = {}

    def add(path: str) -> None:
        if os.path.islink(path) or not os.path.isfile(path):
            return
        if (os.path.realpath(path) + os.sep).startswith(skip):
            return
        with open(path, "rb") as f:
            blobs[path] = f.read()
        inflated = _gunzip(blobs[path])
        if inflated is not None:
            blobs[path + " (gunzipped)"] = inflated

    for folder in folders:
        if os.path.isfile(folder):
            add(folder)
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                add(os.path.join(dirpath, name))
    return blobs


def scan(blobs: Mapping[str, bytes], needles: Iterable[str]) -> list[tuple[str, str]]:
    """``(where, value)`` for each value found in each blob, sorted."""
    encoded = {n: n.encode() for n in needles if n}
    return sorted(
        (where, needle)
        for where, blob in blobs.items()
        for needle, raw in encoded.items()
        if raw in blob
    )
