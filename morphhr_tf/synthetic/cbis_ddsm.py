"""Synthetic CBIS-DDSM: a download-shaped tree of valid MG DICOM files.

``python -m morphhr_tf.synthetic.cbis_ddsm --out DIR --patients N --seed S`` writes

- full mammograms (CC and MLO of both breasts per patient: the breast with
  the findings and a normal contralateral breast) as 12-bit-in-16 MG DICOM
  files, a mix of MONOCHROME1/MONOCHROME2, window center/width with LINEAR
  or SIGMOID functions (or none), pixel spacing, laterality, view, and
  realistic-looking fake identifiers (patient name, ID, birth date,
  accession number, institution, study date, referring physician) so
  de-identification is tested for real;
- cropped images and full-size ROI masks in ``<case>_<n>`` sibling folders,
  as TCIA ships them (never to be ingested as full images);
- the four case-description CSVs with CBIS-DDSM's real column names, and the
  TCIA ``metadata.csv``.

Layouts (``layout=``), as seen in real downloads (see DATASETS.md):
``uid`` (``CBIS-DDSM/<case>/<StudyUID>/<SeriesUID>/1-1.dcm``), ``date``
(``<case>/10-04-2016-DDSM-30104/1-full mammogram images-14172/000000.dcm``)
and ``date_v2`` (``CBIS-DDSM/<case>/07-20-2016-DDSM-94258/1.000000-full
mammogram images-07312/1-1.dcm``).

Labels follow CBIS-DDSM: an image is positive when any of its findings is
MALIGNANT. CBIS-DDSM lists only images with a finding; the normal
contralateral images are listed in the calc CSV with assessment 1 and
pathology BENIGN_WITHOUT_CALLBACK, no crop and no ROI mask.

Sizes: ``rows`` sets the matrix (columns ``0.8125 * rows``, spacing
``204.8 mm / rows``). The default 2048 (0.1 mm pixels) keeps 0.1-0.5 mm
calcifications resolvable, so resolution matters between 224 and 896 px;
small values (e.g. 384) make quick demo data.

The parts: :mod:`~morphhr_tf.synthetic.cbis_plan` draws the patients and
findings, :mod:`~morphhr_tf.synthetic.render` and
:mod:`~morphhr_tf.synthetic.fine_detail_mammogram` draw the images,
:mod:`~morphhr_tf.synthetic.cbis_dicom` encodes and writes the DICOM files,
:mod:`~morphhr_tf.synthetic.cbis_layout` names them,
:mod:`~morphhr_tf.synthetic.cbis_writer` writes each image's files and
:mod:`~morphhr_tf.synthetic.cbis_csv` the CSVs; this module runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from morphhr_tf.synthetic.cbis_csv import (
    CALC_COLUMNS,
    MASS_COLUMNS,
    METADATA_COLUMNS,
    write_csvs,
)
from morphhr_tf.synthetic.cbis_dicom import (
    MG_SOP_CLASS,
    SC_SOP_CLASS,
    encode_mammogram,
)

# `_to_stored` and `_window` keep their old names here: tests import them.
from morphhr_tf.synthetic.cbis_dicom import to_stored as _to_stored  # noqa: F401
from morphhr_tf.synthetic.cbis_dicom import voi_window as _window  # noqa: F401
from morphhr_tf.synthetic.cbis_layout import LAYOUTS, Layout
from morphhr_tf.synthetic.cbis_plan import Case, plan_cases
from morphhr_tf.synthetic.cbis_writer import TreeWriter
from morphhr_tf.synthetic.fine_detail_mammogram import (
    FINE_DETAIL_AMPLITUDE,
    FINE_DETAIL_CLUSTER_MM,
    FINE_DETAIL_NOISE,
    FINE_DETAIL_SPECK_MM,
    add_fine_detail,
)
from morphhr_tf.synthetic.render import (
    RenderedFinding,
    matrix_for_rows,
    render_mammogram,
)

__all__ = [
    "CALC_COLUMNS",
    "FINE_DETAIL_AMPLITUDE",
    "FINE_DETAIL_CLUSTER_MM",
    "FINE_DETAIL_NOISE",
    "FINE_DETAIL_SPECK_MM",
    "LAYOUTS",
    "MASS_COLUMNS",
    "METADATA_COLUMNS",
    "MG_SOP_CLASS",
    "SC_SOP_CLASS",
    "generate",
    "main",
]


def generate(
    out_dir: str | os.PathLike,
    *,
    patients: int = 20,
    seed: int = 0,
    rows: int = 2048,
    layout: str = "uid",
    metadata: bool = True,
    rois: bool = True,
    malignant_fraction: float = 0.5,
    test_fraction: float = 0.2,
    markers: float = 0.5,
    fine_detail: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM download to ``out_dir``.

    Args:
        out_dir: output folder (created; existing files are overwritten).
        patients: number of patients; each gets 4 full images (CC and MLO of
            the breast with findings and of the normal contralateral breast).
        seed: everything is deterministic given the seed and the arguments.
        rows: image height in pixels (width ``0.8125 * rows``, pixel spacing
            ``204.8 mm / rows``). 2048 (0.1 mm) by default; 256-512 for demos.
        layout: ``uid``, ``date`` or ``date_v2`` (see the module docstring).
        metadata: write TCIA's ``metadata.csv``.
        rois: write cropped images and ROI masks in ``<case>_<n>`` folders.
        malignant_fraction: fraction of patients whose findings are malignant.
        test_fraction: fraction of patients in the official Test split.
        markers: fraction of images with a burned-in laterality marker.
        fine_detail: also draw the fine-detail signal in every image: the same
            number of sub-millimetre specks (:data:`FINE_DETAIL_SPECK_MM`),
            one tight cluster in an image with a malignant finding and
            scattered over the breast otherwise, so that resolution carries
            information (see :mod:`morphhr_tf.synthetic.fine_detail`).
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``patients``, ``images`` (full mammograms written, counting
        an image listed in both CSVs once per file), ``malignant_images``,
        ``rows``, ``columns``, ``pixel_spacing_mm``, ``layout``, ``seconds``,
        ``images_per_second``, ``csv_rows``.

    Raises:
        ValueError: for invalid arguments.

    Example:
        >>> generate("/tmp/cbis", patients=2, seed=0, rows=256)  # doctest: +SKIP
    """
    _check_arguments(patients, layout, malignant_fraction, test_fraction, markers)
    rows, cols, spacing = matrix_for_rows(rows)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    cases, people = plan_cases(
        np.random.default_rng(seed), patients, malignant_fraction, test_fraction
    )
    person_of = {p["patient_id"]: p for p in people}
    writer = TreeWriter(
        out_dir,
        seed=seed,
        layout=Layout(layout, np.random.default_rng([seed, 1])),
        spacing=spacing,
        rois=rois,
    )
    start = time.perf_counter()
    malignant = 0
    for index, case in _progress(enumerate(cases), len(cases), progress):
        # One stream per image: marker, photometric, VOI, CSV values.
        crng = np.random.default_rng([seed, 2, index])
        image, drawn = _render_image(
            seed, index, case, rows, spacing, crng, markers, fine_detail
        )
        malignant += case.malignant
        encoded = encode_mammogram(crng, image)
        writer.write_image(
            case, person_of[case.patient_id], image, drawn, encoded, crng
        )
    write_csvs(out_dir, writer.case_rows, writer.metadata_rows if metadata else None)
    seconds = time.perf_counter() - start
    return {
        "patients": patients,
        "images": writer.written,
        "distinct_images": len(cases),
        "malignant_images": int(malignant),
        "rows": rows,
        "columns": cols,
        "pixel_spacing_mm": spacing,
        "layout": layout,
        "csv_rows": sum(len(v) for v in writer.case_rows.values()),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(cases) / max(seconds, 1e-9), 2),
    }


def _check_arguments(
    patients: Any,
    layout: str,
    malignant_fraction: float,
    test_fraction: float,
    markers: float,
) -> None:
    """Raises ValueError for an invalid argument of :func:`generate`."""
    if not isinstance(patients, int) or patients < 1:
        raise ValueError(f"patients must be a positive integer. Received: {patients!r}")
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout must be one of {LAYOUTS}. Received: layout={layout!r}"
        )
    for name, value in (
        ("malignant_fraction", malignant_fraction),
        ("test_fraction", test_fraction),
        ("markers", markers),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]. Received: {name}={value}")


def _progress(iterator: Any, total: int, show: bool) -> Any:
    """``iterator``, behind a tqdm progress bar when ``show``."""
    if not show:
        return iterator
    from tqdm import tqdm

    return tqdm(iterator, total=total, desc="synthetic", unit="img")


def _render_image(
    seed: int,
    index: int,
    case: Case,
    rows: int,
    spacing: float,
    rng: np.random.Generator,
    markers: float,
    fine_detail: bool,
) -> tuple[np.ndarray, list[RenderedFinding]]:
    """Renders image ``index`` of the download: ``(image, drawn)``.

    ``rng`` decides the burned-in marker; the anatomy, the findings and the
    fine detail have streams of their own, derived from ``seed`` and ``index``.
    """
    image, drawn, _ = render_mammogram(
        np.random.SeedSequence([seed, 3, index]),
        rows=rows,
        view=case.view,
        laterality=case.laterality[0],
        density=case.density,
        findings=case.findings,
        marker=bool(rng.uniform() < markers),
    )
    if fine_detail:
        add_fine_detail(
            np.random.default_rng([seed, 4, index]),
            image,
            spacing,
            malignant=case.malignant,
        )
    return image, drawn


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m morphhr_tf.synthetic.cbis_ddsm --out DIR --patients N
    --seed S``."""
    parser = argparse.ArgumentParser(
        prog="python -m morphhr_tf.synthetic.cbis_ddsm",
        description="Write a synthetic CBIS-DDSM-shaped tree of MG DICOM files.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rows",
        type=int,
        default=2048,
        help="image height in pixels (default 2048 = 0.1 mm pixels)",
    )
    parser.add_argument("--layout", choices=LAYOUTS, default="uid")
    parser.add_argument(
        "--no-metadata", action="store_true", help="do not write TCIA's metadata.csv"
    )
    parser.add_argument(
        "--no-rois",
        action="store_true",
        help="do not write cropped images and ROI masks",
    )
    parser.add_argument("--malignant-fraction", type=float, default=0.5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument(
        "--fine-detail",
        action="store_true",
        help="add the fine-detail signal (sub-millimetre speck clusters in "
        "malignant images, scattered specks elsewhere)",
    )
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        patients=args.patients,
        seed=args.seed,
        rows=args.rows,
        layout=args.layout,
        metadata=not args.no_metadata,
        rois=not args.no_rois,
        malignant_fraction=args.malignant_fraction,
        test_fraction=args.test_fraction,
        fine_detail=args.fine_detail,
        progress=sys.stderr.isatty(),
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    import morphhr_tf  # noqa: F401  (runtime policy first)

    sys.exit(main())
