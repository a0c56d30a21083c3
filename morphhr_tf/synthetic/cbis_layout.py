"""Where the files of a synthetic CBIS-DDSM download go.

Folder and file names of the three layouts seen in real downloads (see
DATASETS.md): ``uid`` (``CBIS-DDSM/<case>/<StudyUID>/<SeriesUID>/1-1.dcm``),
``date`` (``<case>/10-04-2016-DDSM-30104/1-full mammogram images-14172/
000000.dcm``) and ``date_v2`` (``CBIS-DDSM/<case>/07-20-2016-DDSM-94258/
1.000000-full mammogram images-07312/1-1.dcm``), and the paths the
case-description CSVs give, which follow none of them.
"""

from __future__ import annotations

import os

import numpy as np

from morphhr_tf.synthetic.cbis_plan import Case

LAYOUTS = ("uid", "date", "date_v2")


def case_folder(kind: str, case: Case) -> str:
    """The case folder of a full image, e.g. ``Mass-Training_P_00001_LEFT_CC``."""
    return f"{kind}-{case.split}_{case.patient_id}_{case.laterality}_{case.view}"


def csv_file_path(folder: str, study_uid: str, series_uid: str, index: int) -> str:
    """A file's path as the case-description CSVs write it."""
    return f"{folder}/{study_uid}/{series_uid}/{index:06d}.dcm"


class Layout:
    """Series folders and file names of one layout.

    The date layouts draw their dates and numbers from ``rng``, one series
    after another, so the order of :meth:`series_dir` calls matters.
    """

    def __init__(self, layout: str, rng: np.random.Generator):
        self.layout = layout
        self.rng = rng

    def series_dir(
        self, case_folder: str, study_uid: str, series_uid: str, description: str
    ) -> str:
        """Series folder relative to the output root."""
        if self.layout == "uid":
            return os.path.join("CBIS-DDSM", case_folder, study_uid, series_uid)
        date = f"{int(self.rng.integers(1, 13)):02d}-{int(self.rng.integers(1, 29)):02d}-2016"
        study = f"{date}-DDSM-{int(self.rng.integers(0, 10**5)):05d}"
        number = f"{int(self.rng.integers(0, 10**5)):05d}"
        if self.layout == "date":
            return os.path.join(case_folder, study, f"1-{description}-{number}")
        return os.path.join(
            "CBIS-DDSM", case_folder, study, f"1.000000-{description}-{number}"
        )

    def file_name(self, index: int) -> str:
        """Name of the ``index``-th file of a series."""
        return f"{index:06d}.dcm" if self.layout == "date" else f"1-{index + 1}.dcm"
