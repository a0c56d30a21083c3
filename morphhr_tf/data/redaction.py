"""PHI redaction of ingest rejects: ``rejects.csv`` and the private map.

File paths carry identifiers (CBIS-DDSM case folders hold the patient id,
``Mass-Training_P_00001_LEFT_CC``; RSNA folders are patient ids; UID and date
folders identify studies), so no real path goes into an output artifact.
:func:`redact_reject` turns a ``(path, reason)`` reject into ``(image_key,
redacted path, redacted reason)``: ``image_key`` is the salted image key the
tf.Examples carry (empty for listing problems); in the path, every component
that could identify someone is replaced by a salted hash (``h`` + 12 hex
digits; a CBIS case folder keeps its type, side and view and gets ``p`` + the
first 12 hex digits of the patient key instead of the patient id), and those
values are scrubbed from the reason too. The real paths are written only to
``rejects_private.csv`` in a private folder the caller keeps outside any
artifact or pipeline root (:func:`check_private_dir`). See
``docs/privacy.md``.
"""

from __future__ import annotations

import csv
import io
import operator
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam

from morphhr_tf.data.deid import image_key, patient_key, resolve_salt, salted_hash
from morphhr_tf.data.records import ImageRecord

REJECT_COLUMNS = ("image_key", "path", "reason")
PRIVATE_REJECT_COLUMNS = ("image_key", "path", "source_path", "reason")
REJECTS_FILE = "rejects.csv"
PRIVATE_REJECTS_FILE = "rejects_private.csv"

# Path components kept verbatim in redacted paths: fixed folder and file names
# of the supported layouts, which name no person, study or date.
_SAFE_COMPONENTS = {
    "cbis-ddsm",
    "images",
    "train_images",
    "test_images",
    "alldicoms",
    "dicom",
    "metadata.csv",
    "manifest.csv",
    "train.csv",
    "test.csv",
    "breast-level_annotations.csv",
    "finding_annotations.csv",
    "inbreast.csv",
    "data_entry_2017.csv",
    "data_entry_2017_v2020.csv",
    "bbox_list_2017.csv",
    "train_val_list.txt",
    "test_list.txt",
}
_SAFE_NAME_RE = re.compile(
    r"^(?:(?:mass|calc)_case_description_(?:train|test)_set\.csv"
    r"|\d{1,2}-\d{1,3}\.dcm|0{5}\d\.dcm)$",
    re.IGNORECASE,
)
_CASE_RE = re.compile(
    r"^((?:Mass|Calc)-(?:Training|Test)_)(P_\d+)(_(?:LEFT|RIGHT)_(?:CC|MLO)(?:_\d+)?)$",
    re.IGNORECASE,
)
_LISTING_WHERE_RE = re.compile(r"^([^/\\:]+ line \d+)(?:: (.*))?$", re.DOTALL)
_PATIENT_RE = re.compile(r"\bP_\d{3,}\b")
# ChestX-ray14: image names PPPPPPPP_FFF.png and bare 8-digit patient ids
# (always zero-padded: the largest is 00030805), and "patient 12" / "Patient
# ID 12" as its adapter's listing problems quote them.
_CXR_ID_RE = re.compile(r"(?<![0-9A-Za-z.])000\d{5}(?![0-9A-Za-z])")
_PATIENT_NUMBER_RE = re.compile(r"\b([Pp]atient(?: ID)?) (\d+)\b")
_UID_RE = re.compile(r"\b\d+(?:\.\d+){4,}\b")


def _component_hash(value: str, salt: bytes) -> str:
    return "h" + salted_hash("path-component:" + value, salt)[:12]


def _redact_component(part: str, salt: bytes) -> str:
    if part in ("", ".", "..") or part.lower() in _SAFE_COMPONENTS:
        return part
    if _SAFE_NAME_RE.match(part):
        return part
    case = _CASE_RE.match(part)
    if case:
        return (
            case.group(1) + "p" + patient_key(case.group(2), salt)[:12] + case.group(3)
        )
    stem, ext = os.path.splitext(part)
    if ext.lower() in (".dcm", ".dicom", ".csv", ".png") and stem:
        return _component_hash(stem, salt) + ext
    return _component_hash(part, salt)


def redact_path(
    path: str, base: str | os.PathLike | None = None, salt: str | bytes | None = None
) -> str:
    """A path with every component that could identify someone hashed.

    The path is made relative to ``base`` when it lies inside it. Kept as
    they are: the fixed names of the supported layouts (``CBIS-DDSM``,
    ``train_images``, the CBIS-DDSM CSV names, ``1-1.dcm``, ``000000.dcm``,
    ...); a CBIS-DDSM case folder keeps its type, side and view, its patient
    id replaced by ``p`` + the first 12 hex digits of the salted patient key;
    any other component becomes ``h`` + 12 hex digits of its salted hash
    (file extensions kept). Equal components hash equally under one salt.

    Args:
        path: a file path (absolute or relative) or a ``pid/iid`` fragment.
        base: the data set root; ``None`` keeps the path as given.
        salt: the salt (``None``: ``$MORPHHR_SALT`` or the development salt).

    Returns:
        The redacted path, ``/``-separated.

    Example:
        >>> redact_path("/d/Mass-Training_P_00001_LEFT_CC/1.2.3.4.5/1-1.dcm",
        ...             "/d", "s")  # doctest: +SKIP
        'Mass-Training_p3c9d...._LEFT_CC/h5be1..../1-1.dcm'
    """
    key = resolve_salt(salt)
    text = os.fspath(path)
    if base is not None:
        text = _relative(text, os.fspath(base))
    parts = re.split(r"[/\\]+", text)
    return "/".join(_redact_component(p, key) for p in parts)


def _scrub(text: str, originals: list[tuple[str, str]], salt: bytes) -> str:
    """Replaces known identifying strings, then CBIS patient ids and UIDs."""
    for original, redacted in sorted(originals, key=lambda kv: -len(kv[0])):
        if len(original) >= 3 and original != redacted:
            text = text.replace(original, redacted)
    text = _PATIENT_RE.sub(lambda m: "p" + patient_key(m.group(0), salt)[:12], text)
    text = _CXR_ID_RE.sub(lambda m: _patient_hash(str(int(m.group(0))), salt), text)
    text = _PATIENT_NUMBER_RE.sub(
        lambda m: f"{m.group(1)} {_patient_hash(m.group(2), salt)}", text
    )
    return _UID_RE.sub(lambda m: _component_hash(m.group(0), salt), text)


def _patient_hash(patient_id: str, salt: bytes) -> str:
    """``p`` + 12 hex digits of the salted patient key of a numeric id."""
    return "p" + patient_key(patient_id, salt)[:12]


def redact_reject(
    path: str,
    reason: str,
    *,
    base: str | os.PathLike | None = None,
    salt: str | bytes | None = None,
    image_keys: Mapping[str, str] | None = None,
) -> tuple[str, str, str]:
    """A ``(path, reason)`` reject -> ``(image_key, redacted path, reason)``.

    The result can go into an artifact: see :func:`redact_path` for the path;
    the identifying values of the path (and CBIS patient ids and DICOM UIDs)
    are replaced in the reason as well. ``path`` may also be a listing
    location such as ``"mass_case_description_train_set.csv line 7: <path>"``.

    Args:
        path: the rejected file (or listing location), as ``IngestExamples``'
            ``rejects`` output or ``SourceListing.problems`` give it.
        reason: the one-line reason.
        base: the data set root (paths are shown relative to it).
        salt: the salt of the keys and hashes.
        image_keys: real path -> salted image key (see :func:`image_keys_of`);
            a path not in it gets an empty key.

    Returns:
        ``(image_key, path, reason)``, the columns of ``rejects.csv``
        (:data:`REJECT_COLUMNS`).
    """
    key = resolve_salt(salt)
    where = os.fspath(path)
    prefix, rest = "", where
    listing = _LISTING_WHERE_RE.match(where)
    if listing and not os.path.isabs(where):
        label, rest = listing.group(1), listing.group(2) or ""
        name, _, line = label.rpartition(" line ")
        prefix = f"{redact_path(name, None, key)} line {line}"
    redacted = redact_path(rest, base, key) if rest else ""
    shown = f"{prefix}: {redacted}" if prefix and redacted else prefix or redacted
    originals = [(where, shown)]
    rel = _relative(rest, os.fspath(base)) if base is not None and rest else rest
    if rel:
        originals.append((rel, redact_path(rel, None, key)))
    # the components inside the data set (not those of the root folder, which
    # identify no one and may be common words such as "data")
    for part in re.split(r"[/\\]+", rel):
        if part.strip():
            originals.append((part, _redact_component(part, key)))
    clean_reason = " ".join(_scrub(str(reason), originals, key).split())
    return (image_keys or {}).get(where, ""), shown, clean_reason


def image_keys_of(
    records: Iterable[ImageRecord], salt: str | bytes | None = None
) -> dict[str, str]:
    """Real path -> the salted image key its tf.Example carries."""
    key = resolve_salt(salt)
    return {
        r.path: image_key(f"{r.dataset}:{r.image_id or r.path}", key) for r in records
    }


class RedactRejects(beam.PTransform):
    """PCollection[(path, reason)] -> PCollection[(image_key, path, reason)].

    The Beam form of :func:`redact_reject`, for writers of ``rejects.csv``
    inside a pipeline (the TFX ExampleGen): format each output tuple as one
    CSV row under the header :data:`REJECT_COLUMNS`.

    Args:
        base: the data set root.
        salt: the salt (``None``: resolved from ``$MORPHHR_SALT`` when the
            pipeline is built); use the salt given to :class:`IngestExamples`.
        records: the ingested records, for the image keys of rejected images.
    """

    def __init__(
        self,
        base: str | os.PathLike | None = None,
        salt: str | bytes | None = None,
        records: Iterable[ImageRecord] = (),
        label: str | None = None,
    ):
        super().__init__(label)
        self.base = None if base is None else os.fspath(base)
        self.salt = salt
        self.records = list(records)

    def expand(self, rejects):
        salt = resolve_salt(self.salt)
        keys = image_keys_of(self.records, salt)
        return rejects | "Redact" >> beam.MapTuple(
            lambda path, reason: redact_reject(
                path, reason, base=self.base, salt=salt, image_keys=keys
            )
        )


def check_private_dir(
    private_dir: str | os.PathLike,
    root: str | os.PathLike,
    where: str = "output folder",
) -> str:
    """The private folder, normalized, after checking it lies outside ``root``.

    Local paths are compared after ``os.path.realpath``; URIs (``gs://...``)
    as given, without a trailing ``/``.

    Args:
        private_dir: the folder for ``rejects_private.csv``.
        root: the folder it must not lie in (the ingest's output folder, a
            pipeline root).
        where: what ``root`` is, for the error message.

    Returns:
        The normalized ``private_dir``.

    Raises:
        ValueError: if ``private_dir`` is ``root`` or lies inside it.
    """
    private, root = os.fspath(private_dir), os.fspath(root)
    local = "://" not in private and "://" not in root
    norm = os.path.realpath if local else (lambda p: p.rstrip("/"))
    if (norm(private) + "/").startswith(norm(root).rstrip("/") + "/"):
        raise ValueError(
            "private_dir holds re-identification data and must lie outside the "
            f"{where} {root!r}. Received: private_dir={private!r}"
        )
    return norm(private)


def reject_rows(
    where: str, reason: str, **redact_args: Any
) -> tuple[tuple[str, str, str], tuple[str, str, str, str]]:
    """A reject -> its ``rejects.csv`` row and its ``rejects_private.csv`` row.

    The public row is :func:`redact_reject`'s (``redact_args``: its keyword
    arguments); the private one keeps the real path (or listing location)
    and the unredacted reason (:data:`PRIVATE_REJECT_COLUMNS`).
    """
    ikey, shown, clean = redact_reject(where, reason, **redact_args)
    return (ikey, shown, clean), (ikey, shown, where, reason)


def write_rejects(
    out_dir: str | os.PathLike,
    rejects: Iterable[tuple[str, str]],
    *,
    base: str | os.PathLike | None = None,
    salt: str | bytes | None = None,
    records: Iterable[ImageRecord] = (),
    problems: Iterable[tuple[str, str]] = (),
    private_dir: str | os.PathLike | None = None,
) -> int:
    """Writes ``rejects.csv`` (no identifiers) and, optionally, the private map.

    ``out_dir/rejects.csv`` gets the columns :data:`REJECT_COLUMNS`: the
    listing problems (reason prefixed ``listing:``) and the rejects, each
    redacted by :func:`redact_reject`, in :func:`reject_order`. When ``private_dir`` is
    given, ``private_dir/rejects_private.csv`` gets the same rows plus
    ``source_path`` (the real path or listing location) and the unredacted
    reason: it re-identifies, so keep ``private_dir`` outside every artifact
    and pipeline root. Both files are written through ``tf.io.gfile`` when
    TensorFlow is loaded (URIs such as ``gs://`` work), else with ``open``.

    Args:
        out_dir: the folder of ``rejects.csv`` (an artifact folder is fine).
        rejects: ``(path, reason)`` pairs, as ``IngestExamples`` yields them.
        base: the data set root.
        salt: the salt of the keys (the one the ingest used).
        records: the listed records (for the image keys of rejected images).
        problems: the listing's ``(location, reason)`` problems.
        private_dir: where the re-identification file goes (``None``: not
            written).

    Returns:
        The number of rows written to ``rejects.csv``.

    Raises:
        ValueError: if ``private_dir`` lies inside ``out_dir``.
    """
    key = resolve_salt(salt)
    out_dir = os.fspath(out_dir)
    private = None
    if private_dir is not None:
        private = check_private_dir(private_dir, out_dir)
    keys = image_keys_of(records, key)
    rows = [(where, f"listing: {reason}") for where, reason in problems]
    rows += [(str(p), str(r)) for p, r in rejects]
    write_reject_files(
        out_dir,
        [reject_rows(w, r, base=base, salt=key, image_keys=keys) for w, r in rows],
        private,
    )
    return len(rows)


def write_reject_files(
    out_dir: str,
    rows: Iterable[tuple[Sequence[str], Sequence[str]]],
    private_dir: str | None = None,
) -> None:
    """Writes ``rejects.csv`` and, when ``private_dir`` is given (checked by
    the caller), ``rejects_private.csv``, one line per row in
    :func:`reject_order`.

    Args:
        out_dir: the folder of ``rejects.csv``.
        rows: ``(public row, private row)`` pairs, as :func:`reject_rows`
            gives them.
        private_dir: the folder of ``rejects_private.csv`` (``None``: not
            written).
    """
    public, hidden = [csv_line(REJECT_COLUMNS)], [csv_line(PRIVATE_REJECT_COLUMNS)]
    for shown, full in reject_order(rows):
        public.append(csv_line(shown))
        hidden.append(csv_line(full))
    write_text(os.path.join(out_dir, REJECTS_FILE), "\n".join(public) + "\n")
    if private_dir is not None:
        os.makedirs(private_dir, exist_ok=True)
        write_text(
            os.path.join(private_dir, PRIVATE_REJECTS_FILE), "\n".join(hidden) + "\n"
        )


def reject_order(rows: Iterable[Sequence[Any]], public: int = 0) -> list:
    """The one order of the reject files, whichever writer writes them: rows
    sorted by their public row's CSV line (``row[public]``), so the files do
    not depend on the listing, the runner or the worker count, and
    ``rejects_private.csv`` lists the same rows in the same order as
    ``rejects.csv``."""
    return sorted(rows, key=lambda row: csv_line(row[public]))


def csv_line(row: Sequence[Any]) -> str:
    """One CSV line of ``row``, without its line ending (the reject files'
    format, whichever writer writes them)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([str(v) for v in row])
    return buf.getvalue()


class WriteRejectFiles(beam.PTransform):
    """Writes ``IngestSplits``' reject rows in a pipeline: ``rejects.csv`` in
    ``rejects_dir`` and, when ``private_dir`` is set (checked and created by
    the caller), ``rejects_private.csv`` there, both in :func:`reject_order`.

    Args:
        rejects_dir: the folder of ``rejects.csv`` (an artifact folder, or
            the CLI's output folder; any Beam filesystem).
        private_dir: the folder of ``rejects_private.csv`` (``None``: not
            written).
    """

    def __init__(self, rejects_dir: str, private_dir: str | None = None, label=None):
        super().__init__(label)
        self.rejects_dir = rejects_dir
        self.private_dir = private_dir

    def expand(self, rows):
        targets = [(1, self.rejects_dir, REJECTS_FILE, REJECT_COLUMNS)]
        if self.private_dir:
            targets.append(
                (2, self.private_dir, PRIVATE_REJECTS_FILE, PRIVATE_REJECT_COLUMNS)
            )
        written = {}
        for index, folder, name, columns in targets:
            written[name] = (
                rows
                | f"Gather[{name}]" >> beam.combiners.ToList()
                | f"Sort[{name}]" >> beam.FlatMap(reject_order, public=1)
                | f"Rows[{name}]" >> beam.Map(operator.itemgetter(index))
                | f"Lines[{name}]" >> beam.Map(csv_line)
                | f"Write[{name}]"
                >> beam.io.WriteToText(
                    os.path.join(folder, name),
                    shard_name_template="",
                    header=",".join(columns),
                )
            )
        return written


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to a local path, or a URI through ``tf.io.gfile``."""
    if "tensorflow" in sys.modules and "://" in path:
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(text)


def _relative(path: str, root: str) -> str:
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
