"""Writes the files of each image of a synthetic CBIS-DDSM download.

A full mammogram is written once per case-description CSV that lists it (in
a ``Mass-`` and a ``Calc-`` case folder when it has both kinds of finding).
Each of its findings gets an abnormality number and, optionally, a cropped
image and a full-size ROI mask in a ``<case>_<n>`` sibling folder, as TCIA
ships them (never to be ingested as full images). The rows of the
case-description CSVs and of TCIA's ``metadata.csv`` are collected on the way
and written at the end by :func:`morphhr_tf.synthetic.cbis_csv.write_csvs`.
"""

from __future__ import annotations

import os

import numpy as np

from morphhr_tf.synthetic.cbis_csv import FULL_IMAGE_DESCRIPTION, case_row, metadata_row
from morphhr_tf.synthetic.cbis_dicom import (
    MG_SOP_CLASS,
    SC_SOP_CLASS,
    EncodedImage,
    dicom_uid,
    to_stored,
    write_dicom,
)
from morphhr_tf.synthetic.cbis_layout import Layout, case_folder, csv_file_path
from morphhr_tf.synthetic.cbis_plan import Case
from morphhr_tf.synthetic.render import RenderedFinding


def crop_and_mask(
    image: np.ndarray, where: RenderedFinding, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """The stored crop around a finding (at least 8 x 8 pixels) and its
    full-size ROI mask (255 inside the crop's box, 0 elsewhere)."""
    rows, cols = image.shape
    r0, r1, c0, c1 = where.bbox(margin_px=max(2.0, 3.0 / spacing))
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(max(r1, r0 + 8), rows), min(max(c1, c0 + 8), cols)
    crop = to_stored(image[r0:r1, c0:c1], False)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[r0:r1, c0:c1] = 255
    return crop, mask


class TreeWriter:
    """Writes images into ``out_dir`` and collects the CSV rows.

    Attributes:
        case_rows: case-description rows by ``(kind, split)``, e.g.
            ``("Mass", "Training")``.
        metadata_rows: TCIA ``metadata.csv`` rows, one per series written.
        written: full mammograms written (one per case folder).
    """

    def __init__(
        self, out_dir: str, *, seed: int, layout: Layout, spacing: float, rois: bool
    ):
        self.out_dir = out_dir
        self.seed = seed
        self.layout = layout
        self.spacing = spacing
        self.rois = rois
        self.case_rows: dict[tuple[str, str], list[dict[str, str]]] = {
            (k, s): [] for k in ("Mass", "Calc") for s in ("Training", "Test")
        }
        self.metadata_rows: list[dict[str, str]] = []
        self.written = 0

    def write_image(
        self,
        case: Case,
        person: dict[str, str],
        image: np.ndarray,
        drawn: list[RenderedFinding],
        encoded: EncodedImage,
        rng: np.random.Generator,
    ) -> None:
        """Writes one image in each case folder that lists it, with its
        findings' crops and masks, and adds its CSV rows.

        Args:
            case: the image's case.
            person: the patient's identifiers.
            image: the rendered image in [0, 1] (crops are cut from it).
            drawn: where each of ``case.findings`` was drawn.
            encoded: the full mammogram as stored.
            rng: draws the CSV values and which rows swap the crop and ROI
                mask columns.
        """
        for kind in case.kinds:
            folder = case_folder(kind, case)
            image_path = self._write_full_image(folder, case, person, encoded)
            rows = self.case_rows[(kind, case.split)]
            mine = [
                (f, d)
                for f, d in zip(case.findings, drawn, strict=True)
                if (f.kind == "mass") == (kind == "Mass")
            ]
            if not mine:  # a normal image, listed with assessment 1
                rows.append(case_row(kind, case, None, 1, image_path, "", "", rng))
                continue
            for abn, (finding, where) in enumerate(mine, start=1):
                crop_path = roi_path = ""
                if self.rois:
                    crop_path, roi_path = self._write_rois(
                        f"{folder}_{abn}", image, where, case, person
                    )
                    if rng.uniform() < 0.2:  # seen in the wild: swapped columns
                        crop_path, roi_path = roi_path, crop_path
                rows.append(
                    case_row(
                        kind, case, finding, abn, image_path, crop_path, roi_path, rng
                    )
                )

    def _write_full_image(
        self, folder: str, case: Case, person: dict[str, str], encoded: EncodedImage
    ) -> str:
        """Writes the full mammogram; returns its path as the CSVs give it."""
        study_uid = dicom_uid(self.seed, folder, "study")
        series_uid = dicom_uid(self.seed, folder, "series")
        self._write_series(
            folder,
            0,
            encoded,
            case,
            person,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=dicom_uid(self.seed, folder, "sop"),
            sop_class=MG_SOP_CLASS,
            description=FULL_IMAGE_DESCRIPTION,
        )
        self.written += 1
        return csv_file_path(folder, study_uid, series_uid, 0)

    def _write_rois(
        self,
        folder: str,
        image: np.ndarray,
        where: RenderedFinding,
        case: Case,
        person: dict[str, str],
    ) -> tuple[str, str]:
        """Writes a finding's crop and ROI mask in ``folder``; returns their
        paths as the CSVs give them."""
        study_uid = dicom_uid(self.seed, folder, "study")
        crop, mask = crop_and_mask(image, where, self.spacing)
        paths = []
        for index, (encoded, description) in enumerate(
            (
                (EncodedImage(crop, "MONOCHROME2", 12), "cropped images"),
                (EncodedImage(mask, "MONOCHROME2", 8), "ROI mask images"),
            )
        ):
            series_uid = dicom_uid(self.seed, folder, description)
            self._write_series(
                folder,
                index,
                encoded,
                case,
                person,
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=dicom_uid(self.seed, folder, description, "sop"),
                sop_class=SC_SOP_CLASS,
                description=description,
            )
            paths.append(csv_file_path(folder, study_uid, series_uid, index))
        return paths[0], paths[1]

    def _write_series(
        self,
        folder: str,
        index: int,
        encoded: EncodedImage,
        case: Case,
        person: dict[str, str],
        *,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        sop_class: str,
        description: str,
    ) -> None:
        """Writes file ``index`` of a series and its ``metadata.csv`` row."""
        series = self.layout.series_dir(folder, study_uid, series_uid, description)
        rel = os.path.join(series, self.layout.file_name(index))
        size = write_dicom(
            os.path.join(self.out_dir, rel),
            encoded,
            person=person,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            sop_class=sop_class,
            series_description=description,
            laterality=case.laterality[0],
            view=case.view,
            spacing=self.spacing,
        )
        self.metadata_rows.append(
            metadata_row(folder, study_uid, series_uid, description, series, size)
        )
