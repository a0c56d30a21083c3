"""Synthetic ChestX-ray14: a tree laid out exactly like the NIH download.

``python -m morphhr_tf.synthetic.chestxray14 OUT --patients N --seed S`` writes
under ``OUT``:

- ``Data_Entry_2017.csv`` (``csv_version="2017"``) or
  ``Data_Entry_2017_v2020.csv`` (``"2020"``): one row per image under NIH's
  header, verbatim::

    Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],

  The bracketed names hold unquoted commas, so a CSV reader splits them
  (``OriginalImage[Width`` and ``Height]``, ...). The 2017 file ends the header
  and every row with a comma (a twelfth, empty column), as the real one does;
  the 2020 file has no trailing comma. ``Finding Labels`` joins the labels in
  alphabetical order with ``|``, or says ``No Finding``; ``Patient ID`` is the
  unpadded integer, ``Follow-up #`` counts from 0, ``View Position`` is PA or
  AP, and ``OriginalImage``/``OriginalImagePixelSpacing`` describe the
  (fictitious) source DICOM, as in the real file. The 2017 file also holds a
  few impossible ages (above 400, as the real 2017 file does); the 2020 file
  does not.
- The images: 8-bit grey PNGs (``size`` x ``size``; about 2 % RGBA, opaque,
  with R = G = B, as a few real ones are), named ``PPPPPPPP_FFF.png`` (patient
  ID in 8 digits, follow-up in 3), in ``images_001/images/`` ...
  ``images_012/images/`` (``layout="nested"``: the sorted names split into
  consecutive runs over up to 12 folders, as the unpacked archives are) or in
  one ``images/`` folder (``layout="flat"``).
- ``train_val_list.txt`` and ``test_list.txt``: image names, one a line,
  sorted; the split is by patient (about 20 % of the patients are test).
- ``BBox_List_2017.csv`` (``bbox=True``), with the real file's header
  ``Image Index,Finding Label,Bbox [x,y,w,h],,,`` (nine columns once parsed)
  and rows ``name,label,x,y,w,h,,,`` in the image's pixel coordinates. Like
  the real file it lists a subset: the 8 findings it covers (Atelectasis,
  Cardiomegaly, Effusion, Infiltration spelt ``Infiltrate`` as there, Mass,
  Nodule, Pneumonia, Pneumothorax) on about half of the test images that have
  one; every drawn box, listed or not, is in the returned summary.

Labels follow the real data (:mod:`~morphhr_tf.synthetic.chestxray14_plan`
draws them): about half the images say ``No Finding``; an image's first
finding is drawn with the real per-label frequencies (``--frequencies nih``,
the default: Infiltration most common, Hernia rarest) or with equal ones
(``uniform``: a small tree then has positives of every finding); findings that
go together co-occur more often, and chronic ones usually stay on a
follow-up. :mod:`~morphhr_tf.synthetic.chestxray14_render` draws the images.
Everything is deterministic for a seed: two runs write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from morphhr_tf.data.adapters.chestxray14 import FINDINGS
from morphhr_tf.synthetic.chestxray14_plan import (
    FREQUENCIES,
    PlannedImage,
    check_frequencies,
    plan_images,
)
from morphhr_tf.synthetic.chestxray14_render import MIN_SIZE, render_chest

__all__ = [
    "BBOX_FINDINGS",
    "BBOX_HEADER",
    "DATA_ENTRY_FILES",
    "DATA_ENTRY_HEADER",
    "FINDINGS",
    "FREQUENCIES",
    "LAYOUTS",
    "PlannedImage",
    "generate",
    "image_folders",
    "main",
    "plan_images",
]

LAYOUTS = ("nested", "flat")
DATA_ENTRY_FILES = {"2017": "Data_Entry_2017.csv", "2020": "Data_Entry_2017_v2020.csv"}
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
    "Patient Gender,View Position,OriginalImage[Width,Height],"
    "OriginalImagePixelSpacing[x,y]"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
BBOX_FINDINGS = FINDINGS[:8]  # the findings BBox_List_2017.csv covers
BBOX_SPELLING = {"Infiltration": "Infiltrate"}  # BBox_List_2017.csv's name
MAX_FOLDERS = 12
MAX_PATIENTS = 99_999_999  # 8-digit patient IDs
BBOX_FRACTION = 0.5


def image_folders(n_images: int, layout: str) -> list[str]:
    """The folder (relative to the root, ``/``-separated) of each sorted image."""
    if layout == "flat":
        return ["images"] * n_images
    per = max(1, -(-n_images // MAX_FOLDERS))
    return [f"images_{i // per + 1:03d}/images" for i in range(n_images)]


def generate(
    out_dir: str | os.PathLike,
    *,
    patients: int,
    seed: int = 0,
    size: int = 256,
    layout: str = "nested",
    csv_version: str = "2017",
    bbox: bool = True,
    frequencies: str = "nih",
    progress: bool = False,
) -> dict[str, Any]:
    """Writes a synthetic ChestX-ray14 download to ``out_dir``.

    Args:
        out_dir: output folder (created; existing files are overwritten).
        patients: number of patients; each has 1-8 images (follow-ups).
        seed: everything is deterministic given the seed and the arguments.
        size: the side of the square PNGs in pixels (the real ones are 1024;
            at least 64).
        layout: ``nested`` (``images_NNN/images/``) or ``flat`` (``images/``).
        csv_version: ``2017`` (``Data_Entry_2017.csv``, trailing empty column)
            or ``2020`` (``Data_Entry_2017_v2020.csv``, none).
        bbox: write ``BBox_List_2017.csv``.
        frequencies: how likely each finding is as an image's first: ``nih``
            (the real data set's frequencies; Hernia is 0.2 % of the images)
            or ``uniform`` (all equal, with every finding's rate of joining
            another the mean of the real ones), so that a small tree has
            positives of every finding.
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``patients``, ``images``, ``rgba_images``, ``size``,
        ``layout``, ``csv_version``, ``frequencies``, ``data_entry`` (the
        CSV's name),
        ``train_val_images``, ``test_images``, ``test_patients``,
        ``no_finding_images``, ``label_counts`` (images per finding),
        ``boxes`` (every drawn finding: ``image``, ``finding``, ``bbox`` as
        ``[x, y, w, h]`` pixels, and ``listed``, whether BBox_List_2017.csv
        has it), ``bbox_rows``, ``seconds`` and ``images_per_second``.

    Raises:
        ValueError: for invalid arguments.

    Example:
        >>> generate("/tmp/cxr14", patients=3, size=64)  # doctest: +SKIP
    """
    _check_arguments(patients, seed, size, layout, csv_version, bbox)
    check_frequencies(frequencies)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    plan = plan_images(np.random.default_rng([seed, 1]), patients, frequencies)
    folders = image_folders(len(plan), layout)
    pick = np.random.default_rng([seed, 2])  # the images BBox_List_2017 lists
    start = time.perf_counter()
    boxes = []
    for index, item in _progress(enumerate(plan), len(plan), progress):
        image, drawn = render_chest(
            np.random.SeedSequence([seed, 3, index]),
            size=size,
            view=item.view,
            findings=item.findings,
        )
        folder = os.path.join(out_dir, *folders[index].split("/"))
        os.makedirs(folder, exist_ok=True)
        _write_png(os.path.join(folder, item.name), image, item.rgba)
        listed = item.test and bool(pick.uniform() < BBOX_FRACTION)
        boxes.extend(
            {
                "image": item.name,
                "finding": d.finding,
                "bbox": list(d.bbox),
                "listed": listed and d.finding in BBOX_FINDINGS,
            }
            for d in drawn
        )
    _write_data_entry(out_dir, plan, csv_version)
    _write_split_lists(out_dir, plan)
    if bbox:
        _write_bbox_list(out_dir, boxes)
    seconds = time.perf_counter() - start
    settings = {
        "size": size,
        "layout": layout,
        "csv_version": csv_version,
        "frequencies": frequencies,
    }
    return _summary(plan, boxes, settings, bbox, seconds)


def _check_arguments(
    patients: Any, seed: Any, size: Any, layout: Any, csv_version: Any, bbox: Any
) -> None:
    """Raises ValueError for an invalid argument of :func:`generate`."""

    def is_int(value: Any) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not is_int(patients) or patients < 1:
        raise ValueError(f"patients must be a positive integer. Received: {patients!r}")
    if patients > MAX_PATIENTS:
        raise ValueError(
            f"patients must be at most {MAX_PATIENTS} (8-digit patient IDs). "
            f"Received: {patients!r}"
        )
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: {seed!r}")
    if not is_int(size) or size < MIN_SIZE:
        raise ValueError(
            f"size must be an integer >= {MIN_SIZE}. Received: size={size!r}"
        )
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}. Received: {layout!r}")
    if csv_version not in DATA_ENTRY_FILES:
        raise ValueError(
            f"csv_version must be '2017' or '2020'. Received: {csv_version!r}"
        )
    if not isinstance(bbox, bool):
        raise ValueError(f"bbox must be True or False. Received: {bbox!r}")


def _progress(iterator: Any, total: int, show: bool) -> Any:
    """``iterator``, behind a tqdm progress bar when ``show``."""
    if not show:
        return iterator
    from tqdm import tqdm

    return tqdm(iterator, total=total, desc="chestxray14", unit="img")


def _write_png(path: str, image: np.ndarray, rgba: bool) -> None:
    """Writes ``image`` (float in [0, 1]) as an 8-bit grey or RGBA PNG."""
    from PIL import Image

    grey = np.round(image * 255.0).astype(np.uint8)
    if rgba:
        opaque = np.full_like(grey, 255)
        grey = np.stack([grey, grey, grey, opaque], axis=-1)
    Image.fromarray(grey).save(path, format="PNG")


def _write_text(path: str, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + "\n" for line in lines))


def _write_data_entry(out_dir: str, plan: list[PlannedImage], version: str) -> None:
    end = "," if version == "2017" else ""
    lines = [DATA_ENTRY_HEADER + end]
    for p in plan:
        age = p.age + 400 if p.bad_age and version == "2017" else p.age
        fields = (
            p.name,
            p.labels,
            p.follow_up,
            p.patient_id,
            age,
            p.sex,
            p.view,
            *p.original_size,
            p.spacing,
            p.spacing,
        )
        lines.append(",".join(map(str, fields)) + end)
    _write_text(os.path.join(out_dir, DATA_ENTRY_FILES[version]), lines)


def _write_split_lists(out_dir: str, plan: list[PlannedImage]) -> None:
    for name, test in (("train_val_list.txt", False), ("test_list.txt", True)):
        names = [p.name for p in plan if p.test == test]
        _write_text(os.path.join(out_dir, name), names)


def _write_bbox_list(out_dir: str, boxes: list[dict[str, Any]]) -> None:
    lines = [BBOX_HEADER]
    for box in boxes:
        if box["listed"]:
            label = BBOX_SPELLING.get(box["finding"], box["finding"])
            coords = ",".join(repr(float(v)) for v in box["bbox"])
            lines.append(f"{box['image']},{label},{coords},,,")
    _write_text(os.path.join(out_dir, "BBox_List_2017.csv"), lines)


def _summary(
    plan: list[PlannedImage],
    boxes: list[dict[str, Any]],
    settings: dict[str, Any],
    bbox: bool,
    seconds: float,
) -> dict[str, Any]:
    """The summary :func:`generate` returns; ``settings`` echoes its arguments."""
    counts = {f: sum(f in p.findings for p in plan) for f in FINDINGS}
    return {
        "patients": len({p.patient_id for p in plan}),
        "images": len(plan),
        "rgba_images": sum(p.rgba for p in plan),
        **settings,
        "data_entry": DATA_ENTRY_FILES[settings["csv_version"]],
        "train_val_images": sum(not p.test for p in plan),
        "test_images": sum(p.test for p in plan),
        "test_patients": len({p.patient_id for p in plan if p.test}),
        "no_finding_images": sum(not p.findings for p in plan),
        "label_counts": counts,
        "boxes": boxes,
        "bbox_rows": sum(b["listed"] for b in boxes) if bbox else 0,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(plan) / max(seconds, 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m morphhr_tf.synthetic.chestxray14 OUT --patients N``."""
    parser = argparse.ArgumentParser(
        prog="python -m morphhr_tf.synthetic.chestxray14",
        description="Write a synthetic ChestX-ray14-shaped tree of chest PNGs.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", type=int, default=256, help="image side in pixels (real: 1024)"
    )
    parser.add_argument("--layout", choices=LAYOUTS, default="nested")
    parser.add_argument(
        "--csv-version", choices=tuple(DATA_ENTRY_FILES), default="2017"
    )
    parser.add_argument(
        "--frequencies",
        choices=FREQUENCIES,
        default="nih",
        help="first-finding frequencies: the real data's (nih) or equal (uniform)",
    )
    parser.add_argument(
        "--no-bbox", action="store_true", help="do not write BBox_List_2017.csv"
    )
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            patients=args.patients,
            seed=args.seed,
            size=args.size,
            layout=args.layout,
            csv_version=args.csv_version,
            bbox=not args.no_bbox,
            frequencies=args.frequencies,
            progress=sys.stderr.isatty(),
        )
    except ValueError as err:
        parser.error(str(err))
    summary["boxes"] = len(summary["boxes"])  # the count; the list is long
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    import morphhr_tf  # noqa: F401  (runtime policy first)

    sys.exit(main())
