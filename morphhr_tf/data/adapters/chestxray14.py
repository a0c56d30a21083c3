"""ChestX-ray14 (NIH): ``Data_Entry_2017*.csv`` + PNGs + the official split lists.

Read under ``root`` (DATASETS.md, ChestX-ray14): the data-entry CSV
(``csv_name``, else ``Data_Entry_2017_v2020.csv``, NIH's corrected
re-release, when present, else ``Data_Entry_2017.csv``; columns found by name,
with or without the 2017 file's trailing empty one); every ``*.png`` under
``root``, indexed by name in one walk (not one ``exists`` per row: one request
per row on a bucket), so ``images_NNN/images/`` and a flat ``images/`` both
work; ``train_val_list.txt`` (split ``train``) and ``test_list.txt``
(``test``), ``eval`` being carved from ``train`` later, by patient
(:mod:`morphhr_tf.data.splits`); ``BBox_List_2017.csv`` (its ``Infiltrate``
is ``Infiltration``) into :attr:`ChestXray14Listing.boxes`, never the records.

Nothing is dropped silently; a problem names its file and line. A row is
rejected when malformed (fields, name, patient, view), when it names an
unknown finding (a wrong label is worse than a missing image: the row is not
kept without it), says ``No Finding`` with a finding, contradicts an earlier
row (both go; an identical duplicate is ignored), or its PNG is missing or
found twice. Reported but kept: an image in both split lists (as ``test``) or
in neither (split ''), a patient in both (listed splits kept; the splitter
puts the whole patient in ``test``), a box whose finding the image lacks.
Reported too: the ignored 2017 CSV when both exist; PNGs, split-list names
and boxes that no row names; a missing split list or box file.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import NamedTuple

from morphhr_tf.data import fileio
from morphhr_tf.data.adapters.listing import SourceListing
from morphhr_tf.data.records import ImageRecord, normalize_view

DATASET = "chestxray14"
FINDINGS = tuple(  # the official order: the order of ``ImageRecord.labels``
    "Atelectasis Cardiomegaly Effusion Infiltration Mass Nodule Pneumonia "
    "Pneumothorax Consolidation Edema Emphysema Fibrosis Pleural_Thickening "
    "Hernia".split()
)
NO_FINDING = "No Finding"
DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
SPLIT_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}
BBOX_NAME = "BBox_List_2017.csv"
BBOX_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv's spelling
VIEWS = ("PA", "AP")
NAME_RE = re.compile(r"^(\d{8})_(\d{3})\.png$")
_COLUMNS = ("image index", "finding labels", "patient id", "view position")

Problems = list[tuple[str, str]]
_Index = dict[str, list[str]]  # image name -> its paths
_Lists = dict[str, dict[str, int]]  # image name -> {split: line in its list}


class Box(NamedTuple):
    """One box of ``BBox_List_2017.csv``, in the image's pixel coordinates."""

    finding: str
    x: float
    y: float
    w: float
    h: float


_Boxes = dict[str, list[Box]]  # image name -> its boxes


@dataclasses.dataclass
class ChestXray14Listing(SourceListing):
    """A :class:`SourceListing` plus the localisation boxes.

    Attributes:
        boxes: image name -> its boxes, for images that have a record (kept
            beside the records for localisation checks, never in examples).
    """

    boxes: _Boxes = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Row:
    """The fields of one data-entry row that the adapter uses."""

    name: str
    patient_id: str
    view: str
    findings: tuple[str, ...]  # as written; () for No Finding


_Accepted = dict[str, tuple[int, _Row]]  # image name -> (line, its row)


def _csv_rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, stripped values)`` per non-blank row of a CSV file."""
    with fileio.open_file(path, "r", newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for fields in reader:
            values = [v.strip() for v in fields]
            if any(values):
                yield reader.line_num, values


def _where(file_name: str, line: int, image: str) -> str:
    """A problem's location: ``Data_Entry_2017.csv line 17: 00000001_000.png``."""
    return f"{file_name} line {line}" + (f": {image}" if image else "")


def _choose_csv(root: str, csv_name: str | None) -> tuple[str, Problems]:
    """The data-entry CSV to read, and a problem for an ignored second one."""
    if csv_name is not None:
        path = fileio.join(root, csv_name)
        if not fileio.isfile(path):
            raise ValueError(f"ChestX-ray14 data-entry file not found: {path!r}")
        return path, []
    found = [n for n in DATA_ENTRY_NAMES if fileio.isfile(fileio.join(root, n))]
    if not found:
        raise ValueError(
            f"no ChestX-ray14 data-entry file ({' or '.join(DATA_ENTRY_NAMES)}) "
            f"in root={root!r}"
        )
    why = f"ignored: {found[0]} is read (csv_name chooses)"
    return fileio.join(root, found[0]), [(fileio.join(root, n), why) for n in found[1:]]


def _header(fields: list[str], path: str) -> tuple[dict[str, int], int]:
    """The index of each column the adapter reads, and the number of named ones."""
    names = [f.strip().lower() for f in fields]
    while names and not names[-1]:
        names.pop()  # the 2017 file's trailing empty column
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path!r} lacks the columns {missing}. Received: {fields}")
    return {c: names.index(c) for c in _COLUMNS}, len(names)


def _parse_findings(text: str) -> tuple[tuple[str, ...] | None, str]:
    """The findings of a ``Finding Labels`` value, or None and why not."""
    parts = [p.strip() for p in text.split("|")]
    if not all(parts):
        return None, f"malformed Finding Labels {text!r}"
    if NO_FINDING in parts:
        if len(parts) > 1:
            return None, f"'{NO_FINDING}' combined with findings: {text!r}"
        return (), ""
    unknown = [p for p in parts if p not in FINDINGS]
    if unknown:
        return None, (
            f"unknown finding {', '.join(map(repr, unknown))} in {text!r}; row "
            "rejected (a wrong label is worse than a missing image)"
        )
    return tuple(dict.fromkeys(parts)), ""


def _parse_row(
    values: list[str], columns: dict[str, int], width: int
) -> tuple[_Row | None, str]:
    """One stripped data-entry row as a :class:`_Row`, or None and why not."""
    if len(values) < width or any(values[width:]):
        return None, f"malformed row: {len(values)} fields, the header names {width}"
    name, pid = values[columns["image index"]], values[columns["patient id"]]
    match = NAME_RE.match(name)
    if not match:
        return None, f"Image Index {name!r} is not PPPPPPPP_FFF.png"
    if not pid.isdigit():
        return None, f"Patient ID {pid!r} is not a number"
    if int(pid) != int(match.group(1)):
        return None, f"Patient ID {pid} disagrees with the file name's {match.group(1)}"
    view = normalize_view(values[columns["view position"]])
    if view not in VIEWS:
        return None, f"View Position {view!r} is not PA or AP"
    findings, reason = _parse_findings(values[columns["finding labels"]])
    if findings is None:
        return None, reason
    return _Row(name, str(int(pid)), view, findings), ""


def _read_entries(path: str) -> tuple[_Accepted, set[str], Problems]:
    """Every row of the data-entry CSV: parsed, or reported with its line.

    Returns:
        ``{image name: (line, row)}`` of the accepted rows, every image name a
        row mentions (accepted or not), and the rows' problems.
    """
    csv_label = fileio.basename(path)
    accepted: _Accepted = {}
    mentioned, problems, first_line, conflicted = set(), [], {}, set()
    rows = _csv_rows(path)
    _, header = next(rows, (0, None))
    if header is None:
        raise ValueError(f"empty ChestX-ray14 data-entry file: {path!r}")
    columns, width = _header(header, path)
    image = columns["image index"]
    for line, values in rows:
        name = values[image] if len(values) > image else ""
        where = _where(csv_label, line, name)
        mentioned.add(name)
        row, reason = _parse_row(values, columns, width)
        if row is None:
            problems.append((where, reason))
        elif name not in first_line:
            first_line[name] = line
            accepted[name] = (line, row)
        elif name not in conflicted and accepted[name][1] == row:
            problems.append((where, f"duplicate of line {first_line[name]}"))
        else:
            conflicted.add(name)
            accepted.pop(name, None)
            problems.append(
                (where, f"contradicts line {first_line[name]}; both rejected")
            )
    mentioned.discard("")
    return accepted, mentioned, problems


def _index_pngs(root: str) -> _Index:
    """File name -> the sorted paths of every PNG of that name under ``root``."""
    index: dict[str, list[str]] = defaultdict(list)
    for dirpath, _dirs, files in fileio.walk(root):
        for name in files:
            if name.lower().endswith(".png"):
                index[name].append(fileio.abspath(fileio.join(dirpath, name)))
    return {name: sorted(paths) for name, paths in index.items()}


def _read_split_lists(root: str) -> tuple[_Lists, bool, Problems]:
    """The split lists; whether both were read; problems."""
    lists: _Lists = defaultdict(dict)
    problems, complete = [], True
    for split, list_name in SPLIT_LISTS.items():
        path = fileio.join(root, list_name)
        if not fileio.isfile(path):
            problems.append((path, "split list not found: its images get split ''"))
            complete = False
            continue
        with fileio.open_file(path, "r", encoding="utf-8-sig") as f:
            for line, text in enumerate(f, start=1):
                if text.strip():
                    lists[text.strip()].setdefault(split, line)
    return dict(lists), complete, problems


def _official_split(
    where: str, listed: dict[str, int], complete: bool
) -> tuple[str, tuple[str, str] | None]:
    """The official split of one image, and a problem when it is unclear."""
    train, test = SPLIT_LISTS["train"], SPLIT_LISTS["test"]
    if len(listed) == 2:
        lines = f"{train} line {listed['train']} and {test} line {listed['test']}"
        return "test", (where, f"in both {lines}; kept as test")
    if listed:
        return next(iter(listed)), None
    if not complete:
        return "", None  # the missing list is reported once
    return "", (where, f"in neither {train} nor {test}: official split ''")


def _records(
    accepted: _Accepted, csv: str, pngs: _Index, lists: _Lists, complete: bool
) -> tuple[list[ImageRecord], Problems]:
    """One record per accepted row with exactly one file; problems otherwise."""
    records, problems = [], []
    for name, (line, row) in accepted.items():
        where = _where(csv, line, name)
        paths = pngs.get(name, [])
        if not paths:
            problems.append((where, "file not found"))
            continue
        if len(paths) > 1:
            problems.append((where, f"found {len(paths)} times: {', '.join(paths)}"))
            continue
        split, problem = _official_split(where, lists.get(name, {}), complete)
        if problem is not None:
            problems.append(problem)
        records.append(
            ImageRecord(
                path=paths[0],
                label=int(bool(row.findings)),
                patient_id=row.patient_id,
                view=row.view,
                split=split,
                dataset=DATASET,
                abnormality="|".join(row.findings),
                image_id=name,
                labels=tuple(int(f in row.findings) for f in FINDINGS),
            )
        )
    records.sort(key=lambda r: r.path)
    return records, problems


def _without_row(pngs: _Index, lists: _Lists, mentioned: set, csv: str) -> Problems:
    """A problem per PNG and per split-list name that no data-entry row names."""
    problems = [
        (path, f"PNG that no {csv} row lists")
        for name in sorted(set(pngs) - mentioned)
        for path in pngs[name]
    ]
    return problems + [
        (_where(SPLIT_LISTS[split], line, name), f"in no {csv} row")
        for name, listed in sorted(lists.items())
        if name not in mentioned
        for split, line in listed.items()
    ]


def _patients_in_both_splits(records: list[ImageRecord]) -> Problems:
    """A problem per patient with images in both the train and test lists."""
    by_patient: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_patient[record.patient_id][record.split].append(record.image_id)
    problems = []
    for pid in sorted(by_patient, key=int):
        train, test = (sorted(by_patient[pid].get(s, [])) for s in ("train", "test"))
        if train and test:
            reason = (
                f"images in both {SPLIT_LISTS['train']} ({', '.join(train)}) and "
                f"{SPLIT_LISTS['test']} ({', '.join(test)}); the official split "
                "is patient-wise, the splitter keeps the whole patient in test"
            )
            problems.append((f"patient {pid}", reason))
    return problems


def _parse_box(values: list[str]) -> tuple[Box | None, str]:
    """One stripped ``BBox_List_2017.csv`` row as a :class:`Box`, or why not."""
    if len(values) < 6 or any(values[6:]):
        return None, f"malformed row: {len(values)} fields, expected 6 and empty ones"
    finding = BBOX_ALIASES.get(values[1], values[1])
    if finding not in FINDINGS:
        return None, f"unknown finding {values[1]!r}"
    try:
        x, y, w, h = (float(v) for v in values[2:6])
    except ValueError:
        return None, f"malformed box {values[2:6]}"
    if not all(map(math.isfinite, (x, y, w, h))) or x < 0 or y < 0 or w <= 0 or h <= 0:
        return None, f"malformed box {values[2:6]}: needs x, y >= 0 and w, h > 0"
    return Box(finding, x, y, w, h), ""


def _read_box_rows(path: str) -> tuple[list[tuple[str, str, Box]], Problems]:
    """``(where, image name, box)`` per valid row, and the rows' problems."""
    label = fileio.basename(path)
    rows, problems = [], []
    lines = _csv_rows(path)
    _, header = next(lines, (0, []))
    if [h.lower() for h in header[:2]] != ["image index", "finding label"]:
        raise ValueError(f"{path!r} is not a BBox_List_2017.csv: header {header}")
    for line, values in lines:
        where = _where(label, line, values[0])
        box, reason = _parse_box(values)
        if box is None:
            problems.append((where, reason))
        else:
            rows.append((where, values[0], box))
    return rows, problems


def read_boxes(root: str, *, bbox_name: str = BBOX_NAME) -> tuple[_Boxes, Problems]:
    """Reads the localisation boxes of ChestX-ray14.

    Args:
        root: the data set folder (a local path or a URL).
        bbox_name: the box file, relative to ``root``.

    Returns:
        ``({image name: [Box(finding, x, y, w, h), ...]}, problems)``:
        ``Infiltrate`` becomes ``Infiltration``; unknown findings and
        malformed boxes are problems.

    Raises:
        ValueError: when the file is missing or its header is not the box file's.
    """
    path = fileio.join(fileio.abspath(root), bbox_name)
    if not fileio.isfile(path):
        raise ValueError(f"ChestX-ray14 box file not found: {path!r}")
    rows, problems = _read_box_rows(path)
    boxes: _Boxes = {}
    for _where, name, box in rows:
        boxes.setdefault(name, []).append(box)
    return boxes, problems


def _boxes_of_records(root: str, records: list[ImageRecord]) -> tuple[_Boxes, Problems]:
    """The boxes of the listed images; problems for the others and mismatches."""
    path = fileio.join(root, BBOX_NAME)
    if not fileio.isfile(path):
        return {}, [(path, "box file not found: no boxes (bbox=False skips it)")]
    rows, problems = _read_box_rows(path)
    by_name = {r.image_id: r for r in records}
    boxes: _Boxes = {}
    for where, name, box in rows:
        record = by_name.get(name)
        if record is None:
            problems.append((where, "box of an image without a record; left out"))
            continue
        if not record.labels[FINDINGS.index(box.finding)]:
            found = record.abnormality or NO_FINDING
            problems.append(
                (where, f"box of {box.finding}, not in the image's labels ({found})")
            )
        boxes.setdefault(name, []).append(box)
    return boxes, problems


def chestxray14(
    root: str, *, csv_name: str | None = None, bbox: bool = True
) -> ChestXray14Listing:
    """Lists the ChestX-ray14 chest radiographs under ``root``.

    Args:
        root: the download folder (a local path or a URL).
        csv_name: the data-entry CSV, relative to ``root``; None picks
            ``Data_Entry_2017_v2020.csv``, else ``Data_Entry_2017.csv``.
        bbox: read ``BBox_List_2017.csv`` into :attr:`ChestXray14Listing.boxes`
            (its absence is then a problem).

    Returns:
        A :class:`ChestXray14Listing`: records sorted by path, problems (see
        the module docstring) and boxes.

    Raises:
        ValueError: when the data-entry CSV is missing, empty or lacks a
            column the adapter reads.

    Example:
        >>> listing = chestxray14("/data/chestxray14")  # doctest: +SKIP
        >>> listing.records[0].labels  # doctest: +SKIP
        (0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    """
    root = fileio.abspath(root)
    csv_path, problems = _choose_csv(root, csv_name)
    csv_label = fileio.basename(csv_path)
    accepted, mentioned, found = _read_entries(csv_path)
    lists, complete, missing = _read_split_lists(root)
    pngs = _index_pngs(root)
    records, unclear = _records(accepted, csv_label, pngs, lists, complete)
    problems += missing + found + unclear
    problems += _without_row(pngs, lists, mentioned, csv_label)
    problems += _patients_in_both_splits(records)
    boxes: _Boxes = {}
    if bbox:
        boxes, found = _boxes_of_records(root, records)
        problems += found
    return ChestXray14Listing(records=records, problems=problems, boxes=boxes)
