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

The root may be a local folder or a URL (``gs://bucket/cbis``): every file is
listed and opened through :mod:`morphhr_tf.data.fileio`.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field

from morphhr_tf.data import fileio
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
    for dirpath, _dirs, files in fileio.walk(root):
        for name in files:
            path = fileio.abspath(fileio.join(dirpath, name))
            if CSV_RE.match(name):
                descriptions.append(path)
            elif name.lower() == "metadata.csv":
                metadata.append(path)
            elif name.lower().endswith(".dcm"):
                dicoms.append(path)
    return sorted(descriptions), sorted(metadata), sorted(dicoms)


def _case_folder(path: str, root: str) -> tuple[str, bool] | None:
    """The nearest CBIS case folder above ``path``: (name, is_full_image)."""
    parts = fileio.parts(path, root)[:-1]
    for part in reversed(parts):
        match = CASE_RE.match(part)
        if match:
            return part, match.group(6) is None
    return None


def _read_metadata(paths: list[str]) -> dict[str, tuple[str, str]]:
    """Series UID -> (absolute series folder, series description)."""
    series: dict[str, tuple[str, str]] = {}
    for path in paths:
        base = fileio.dirname(path)
        with fileio.open_file(path, "r", newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                row = {str(k).strip(): (v or "").strip() for k, v in row.items() if k}
                uid = row.get("Series UID", "")
                location = row.get("File Location", "")
                if not uid or not location:
                    continue
                rel = location.replace("\\", "/")
                rel = rel[2:] if rel.startswith("./") else rel.lstrip("/")
                folder = fileio.normpath(fileio.join(base, *rel.split("/")))
                series[uid] = (folder, row.get("Series Description", ""))
    return series


def _series_uid_of(path: str) -> str:
    import pydicom

    try:
        with fileio.open_file(path, "rb") as f:
            ds = pydicom.dcmread(
                f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
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


@dataclass
class _Disk:
    """The DICOM files under the root, indexed for resolving CSV rows.

    Attributes:
        by_case: upper-cased full-image case folder name -> its files.
        by_dir: directory -> the files directly in it.
        full_files: every file in a full-image case folder.
        other_files: files outside any CBIS-DDSM case folder.
    """

    by_case: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    by_dir: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    full_files: set[str] = field(default_factory=set)
    other_files: list[str] = field(default_factory=list)


def _index_dicoms(dicoms: list[str], root: str) -> _Disk:
    """Sorts the DICOM files by directory and by CBIS case folder."""
    disk = _Disk()
    for path in dicoms:
        disk.by_dir[fileio.dirname(path)].append(path)
        case = _case_folder(path, root)
        if case is None:
            disk.other_files.append(path)
        elif case[1]:
            disk.by_case[case[0].upper()].append(path)
            disk.full_files.add(path)
    return disk


class _Resolver:
    """Resolves a CSV ``image file path`` to a full-image file on disk.

    Calling it returns ``(path, "")``, or ``(None, reason)`` when it cannot;
    see the module docstring for the resolution order.
    """

    def __init__(self, disk: _Disk, meta: dict[str, tuple[str, str]]):
        self._disk = disk
        self._meta = meta
        self._uid_cache: dict[str, str] = {}

    def __call__(self, csv_path: str) -> tuple[str | None, str]:
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
        if uid and uid in self._meta:
            resolved = self._through_metadata(uid)
            if resolved is not None:
                return resolved
            # metadata points at a missing folder: fall back to the case folder
        return self._through_case_folder(folder, uid)

    def _through_metadata(self, uid: str) -> tuple[str | None, str] | None:
        """Through ``metadata.csv``; None when its series folder has no file."""
        series_dir, description = self._meta[uid]
        lowered = description.lower()
        if "crop" in lowered or "roi" in lowered:
            return (
                None,
                f"metadata.csv says series is '{description}', not a full image",
            )
        files = sorted(self._disk.by_dir.get(series_dir, []))
        if len(files) == 1:
            return files[0], ""
        if len(files) > 1:
            return None, f"full-image series folder holds {len(files)} files"
        return None

    def _through_case_folder(self, folder: str, uid: str) -> tuple[str | None, str]:
        candidates = self._disk.by_case.get(folder.upper(), [])
        if not candidates:
            return None, f"no case folder {folder} (or no .dcm in it) on disk"
        if uid:
            named = [c for c in candidates if uid in fileio.parts(c)]
            if len(named) == 1:
                return named[0], ""
            tagged = [c for c in candidates if self._series_uid(c) == uid]
            if len(tagged) == 1:
                return tagged[0], ""
        if len(candidates) == 1:
            return candidates[0], ""
        return None, (
            f"{len(candidates)} files in case folder {folder} and none has "
            f"SeriesInstanceUID {uid or '(none in path)'}"
        )

    def _series_uid(self, path: str) -> str:
        if path not in self._uid_cache:
            self._uid_cache[path] = _series_uid_of(path)
        return self._uid_cache[path]


@dataclass
class _Row:
    """The fields of one case-description row that the adapter uses."""

    patient_id: str
    side: str
    view: str
    pathology: str
    kind: str
    image_path: str
    density: str


def _parse_row(row: dict[str, str], csv_name: str) -> _Row:
    return _Row(
        patient_id=row.get("patient id", ""),
        side=row.get("left or right breast", "").upper(),
        view=row.get("image view", "").upper(),
        pathology=row.get("pathology", "").upper(),
        kind=row.get("abnormality type", "").lower()
        or ("mass" if csv_name.lower().startswith("mass") else "calcification"),
        image_path=row.get("image file path", ""),
        density=row.get("breast density", ""),
    )


def _row_problem(row: _Row) -> str | None:
    """Why ``row`` cannot describe an image, or None."""
    if not row.patient_id or row.side not in ("LEFT", "RIGHT") or not row.view:
        return "row lacks patient_id, breast side or view"
    if row.pathology not in PATHOLOGIES:
        return f"unknown pathology {row.pathology!r}"
    return None


def _row_split(image_path: str, file_split: str) -> str:
    """The split named by the path's case folder, else the CSV file's."""
    folder_match = CASE_RE.match(image_path.replace("\\", "/").split("/")[0])
    if folder_match:
        return "test" if folder_match.group(2).lower() == "test" else "train"
    return file_split


@dataclass
class _Image:
    """What the rows listing one image (patient, breast, view) say of it."""

    paths: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    splits: set[str] = field(default_factory=set)
    density: str = ""


@dataclass
class _Descriptions:
    """The case-description rows, merged per image."""

    images: dict[tuple[str, str, str], _Image] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    referenced: set[str] = field(default_factory=set)


def _read_descriptions(descriptions: list[str], resolve: _Resolver) -> _Descriptions:
    """Reads every case-description CSV, resolving each row's image file."""
    read = _Descriptions()
    for csv_file in descriptions:
        csv_name = fileio.basename(csv_file)
        file_split = "test" if "_test_" in csv_name.lower() else "train"
        with fileio.open_file(csv_file, "r", newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for line, raw in enumerate(reader, start=2):
                row = _parse_row(_norm(raw), csv_name)
                _add_row(read, row, f"{csv_name} line {line}", file_split, resolve)
    return read


def _add_row(
    read: _Descriptions, row: _Row, where: str, file_split: str, resolve: _Resolver
) -> None:
    """Merges ``row`` into its image, or records why it cannot."""
    reason = _row_problem(row)
    if reason is not None:
        read.problems.append((where, reason))
        return
    path, reason = resolve(row.image_path)
    key = (row.patient_id, row.side, row.view)
    image = read.images.setdefault(key, _Image())
    image.findings.append(f"{row.kind}:{row.pathology}")
    image.splits.add(_row_split(row.image_path, file_split))
    image.density = image.density or row.density
    if path is None:
        read.problems.append((f"{where}: {row.image_path}", reason))
        return
    read.referenced.add(path)
    image.paths.append(path)


def _records(images: dict[tuple[str, str, str], _Image]) -> list[ImageRecord]:
    """One record per image with a file, sorted by path.

    A patient with any image in the Test split has all its images there.
    """
    patient_test = {pid for (pid, _, _), im in images.items() if "test" in im.splits}
    records = []
    for (pid, side, view), image in images.items():
        if not image.paths:
            continue  # every row of this image is already a problem
        findings = list(dict.fromkeys(image.findings))
        label = int(any(f.endswith(":MALIGNANT") for f in findings))
        records.append(
            ImageRecord(
                path=sorted(image.paths)[0],
                label=label,
                patient_id=pid,
                view=view,
                laterality=side[0],
                density=image.density,
                split="test" if pid in patient_test else "train",
                dataset=DATASET,
                abnormality=";".join(findings),
                image_id=f"{pid}_{side}_{view}",
            )
        )
    records.sort(key=lambda r: r.path)
    return records


def cbis_ddsm(root: str, *, use_metadata: bool = True) -> SourceListing:
    """Lists CBIS-DDSM's full mammograms under ``root``.

    Args:
        root: the download folder (a local path or a URL): the four
            case-description CSVs and the DICOM tree in any of the layouts in
            DATASETS.md, anywhere below.
        use_metadata: resolve through ``metadata.csv`` when one is present.

    Returns:
        A :class:`SourceListing`; rows whose file cannot be found and full
        image files no row lists are in ``problems``.

    Raises:
        ValueError: when no case-description CSV is found.
    """
    root = fileio.abspath(root)
    descriptions, metadata_files, dicoms = _walk(root)
    if not descriptions:
        raise ValueError(
            "no CBIS-DDSM case-description CSVs "
            "(mass_/calc_case_description_train_/test_set.csv) under "
            f"root={root!r}"
        )
    meta = _read_metadata(metadata_files) if use_metadata else {}
    disk = _index_dicoms(dicoms, root)
    read = _read_descriptions(descriptions, _Resolver(disk, meta))
    problems = read.problems
    for path in sorted(disk.full_files - read.referenced):
        problems.append((path, "full-image file that no CSV row lists"))
    for path in disk.other_files:
        problems.append((path, "DICOM file outside any CBIS-DDSM case folder"))
    return SourceListing(records=_records(read.images), problems=problems)
