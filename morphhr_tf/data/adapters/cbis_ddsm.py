"""CBIS-DDSM (TCIA): case-description CSVs + DICOM tree -> image records.

Resolution of a CSV row's ``image file path``
(``<case folder>/<StudyUID>/<SeriesUID>/000000.dcm``) to a file on disk:

1. through TCIA's ``metadata.csv`` when present: the series UID parsed from
   the CSV path gives the series folder (``File Location``);
2. otherwise through the case folder named by the path's first component
   (found anywhere under the root, e.g. under ``CBIS-DDSM/``): a file under
   a directory named by the series UID, the folder's only file, or the file
   whose own SeriesInstanceUID tag matches.

Only case folders without a numeric suffix hold full images; crops and ROI
masks live in ``<case>_1``, ``<case>_2``, ... and are never resolved as full
images (nor reported as unlisted files). Rows of the mass and calc CSVs are
merged per image (patient, breast, view): label = 1 if any row is MALIGNANT.
A patient listed under both Training and Test keeps the official Test split
for every image (no patient in two splits).
"""

from __future__ import annotations

import csv
import os
import re
from collections import defaultdict

from morphhr_tf.data.adapters.listing import SourceListing
from morphhr_tf.data.records import ImageRecord

DATASET = "cbis_ddsm"
CASE_RE = re.compile(
    r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(?:_(\d+))?$",
    re.IGNORECASE,
)
CSV_RE = re.compile(r"^(mass|calc)_case_description_(train|test)_set\.csv$", re.I)
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")


def _walk(root: str) -> tuple[list[str], list[str], list[str]]:
    descriptions, metadata, dicoms = [], [], []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            path = os.path.abspath(os.path.join(dirpath, name))
            if CSV_RE.match(name):
                descriptions.append(path)
            elif name.lower() == "metadata.csv":
                metadata.append(path)
            elif name.lower().endswith(".dcm"):
                dicoms.append(path)
    return sorted(descriptions), sorted(metadata), sorted(dicoms)


def _case_folder(path: str, root: str) -> tuple[str, bool] | None:
    """The nearest CBIS case folder above ``path``: (name, is_full_image)."""
    parts = os.path.relpath(path, root).split(os.sep)[:-1]
    for part in reversed(parts):
        match = CASE_RE.match(part)
        if match:
            return part, match.group(6) is None
    return None


def _read_metadata(paths: list[str]) -> dict[str, tuple[str, str]]:
    """Series UID -> (absolute series folder, series description)."""
    series: dict[str, tuple[str, str]] = {}
    for path in paths:
        base = os.path.dirname(path)
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                row = {str(k).strip(): (v or "").strip() for k, v in row.items() if k}
                uid = row.get("Series UID", "")
                location = row.get("File Location", "")
                if not uid or not location:
                    continue
                rel = location.replace("\\", "/")
                rel = rel[2:] if rel.startswith("./") else rel.lstrip("/")
                folder = os.path.normpath(os.path.join(base, *rel.split("/")))
                series[uid] = (folder, row.get("Series Description", ""))
    return series


def _series_uid_of(path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
        )
        return str(ds.get("SeriesInstanceUID", ""))
    except Exception:
        return ""


def _norm(row: dict) -> dict[str, str]:
    return {
        " ".join(str(k).strip().lower().replace("_", " ").split()): str(v or "").strip()
        for k, v in row.items()
        if k is not None
    }


def cbis_ddsm(root: str, *, use_metadata: bool = True) -> SourceListing:
    """Lists CBIS-DDSM's full mammograms under ``root``.

    Args:
        root: the download folder: the four case-description CSVs and the
            DICOM tree in any of the layouts in DATASETS.md, anywhere below.
        use_metadata: resolve through ``metadata.csv`` when one is present.

    Returns:
        A :class:`SourceListing`; rows whose file cannot be found and full
        image files no row lists are in ``problems``.

    Raises:
        ValueError: when no case-description CSV is found.
    """
    root = os.path.abspath(os.fspath(root))
    descriptions, metadata_files, dicoms = _walk(root)
    if not descriptions:
        raise ValueError(
            "no CBIS-DDSM case-description CSVs "
            "(mass_/calc_case_description_train_/test_set.csv) under "
            f"root={root!r}"
        )
    meta = _read_metadata(metadata_files) if use_metadata else {}
    by_case: dict[str, list[str]] = defaultdict(list)
    by_dir: dict[str, list[str]] = defaultdict(list)
    full_files, other_files = set(), []
    for path in dicoms:
        by_dir[os.path.dirname(path)].append(path)
        case = _case_folder(path, root)
        if case is None:
            other_files.append(path)
        elif case[1]:
            by_case[case[0].upper()].append(path)
            full_files.add(path)
    uid_cache: dict[str, str] = {}

    def series_uid(path: str) -> str:
        if path not in uid_cache:
            uid_cache[path] = _series_uid_of(path)
        return uid_cache[path]

    def resolve(csv_path: str) -> tuple[str | None, str]:
        parts = [p for p in csv_path.replace("\\", "/").split("/") if p]
        if not parts:
            return None, "empty image file path"
        folder = parts[0]
        match = CASE_RE.match(folder)
        if not match:
            return None, f"image file path does not start with a case folder: {folder}"
        if match.group(6) is not None:
            return None, "image file path names a crop/ROI folder, not a full image"
        uid = parts[2] if len(parts) >= 3 else ""
        if uid and uid in meta:
            series_dir, description = meta[uid]
            lowered = description.lower()
            if "crop" in lowered or "roi" in lowered:
                return (
                    None,
                    f"metadata.csv says series is '{description}', not a full image",
                )
            files = sorted(by_dir.get(series_dir, []))
            if len(files) == 1:
                return files[0], ""
            if len(files) > 1:
                return None, f"full-image series folder holds {len(files)} files"
            # metadata points at a missing folder: fall back to the case folder
        candidates = by_case.get(folder.upper(), [])
        if not candidates:
            return None, f"no case folder {folder} (or no .dcm in it) on disk"
        if uid:
            named = [c for c in candidates if uid in c.split(os.sep)]
            if len(named) == 1:
                return named[0], ""
            tagged = [c for c in candidates if series_uid(c) == uid]
            if len(tagged) == 1:
                return tagged[0], ""
        if len(candidates) == 1:
            return candidates[0], ""
        return None, (
            f"{len(candidates)} files in case folder {folder} and none has "
            f"SeriesInstanceUID {uid or '(none in path)'}"
        )

    images: dict[tuple[str, str, str], dict] = {}
    problems: list[tuple[str, str]] = []
    referenced: set[str] = set()
    for csv_file in descriptions:
        csv_name = os.path.basename(csv_file)
        file_split = "test" if "_test_" in csv_name.lower() else "train"
        with open(csv_file, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for line, raw in enumerate(reader, start=2):
                row = _norm(raw)
                where = f"{csv_name} line {line}"
                pid = row.get("patient id", "")
                side = row.get("left or right breast", "").upper()
                view = row.get("image view", "").upper()
                pathology = row.get("pathology", "").upper()
                kind = row.get("abnormality type", "").lower() or (
                    "mass" if csv_name.lower().startswith("mass") else "calcification"
                )
                image_path = row.get("image file path", "")
                if not pid or side not in ("LEFT", "RIGHT") or not view:
                    problems.append(
                        (where, "row lacks patient_id, breast side or view")
                    )
                    continue
                if pathology not in PATHOLOGIES:
                    problems.append((where, f"unknown pathology {pathology!r}"))
                    continue
                path, reason = resolve(image_path)
                folder_match = CASE_RE.match(
                    image_path.replace("\\", "/").split("/")[0]
                )
                split = file_split
                if folder_match:
                    split = (
                        "test" if folder_match.group(2).lower() == "test" else "train"
                    )
                key = (pid, side, view)
                entry = images.setdefault(
                    key,
                    {"paths": [], "findings": [], "splits": set(), "density": ""},
                )
                entry["findings"].append(f"{kind}:{pathology}")
                entry["splits"].add(split)
                entry["density"] = entry["density"] or row.get("breast density", "")
                if path is None:
                    problems.append((f"{where}: {image_path}", reason))
                    continue
                referenced.add(path)
                entry["paths"].append(path)

    patient_test = {pid for (pid, _, _), e in images.items() if "test" in e["splits"]}
    records = []
    for (pid, side, view), entry in images.items():
        if not entry["paths"]:
            continue  # every row of this image is already a problem
        findings = list(dict.fromkeys(entry["findings"]))
        label = int(any(f.endswith(":MALIGNANT") for f in findings))
        records.append(
            ImageRecord(
                path=sorted(entry["paths"])[0],
                label=label,
                patient_id=pid,
                view=view,
                laterality=side[0],
                density=entry["density"],
                split="test" if pid in patient_test else "train",
                dataset=DATASET,
                abnormality=";".join(findings),
                image_id=f"{pid}_{side}_{view}",
            )
        )
    for path in sorted(full_files - referenced):
        problems.append((path, "full-image file that no CSV row lists"))
    for path in other_files:
        problems.append((path, "DICOM file outside any CBIS-DDSM case folder"))
    records.sort(key=lambda r: r.path)
    return SourceListing(records=records, problems=problems)
