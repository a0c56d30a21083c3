"""Who is in a synthetic CBIS-DDSM download: patients, images and findings.

:func:`plan_cases` draws, patient by patient, the split, breast density, the
side with findings and what they are, the four images (CC and MLO of both
breasts) and realistic-looking fake identifiers, so de-identification is
tested for real. Nothing is rendered or written here.
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np

from morphhr_tf.synthetic.render import Finding

_FIRST = [
    "MARGARET",
    "LINDA",
    "SUSAN",
    "PATRICIA",
    "DOROTHY",
    "EVELYN",
    "JOAN",
    "BARBARA",
    "CAROL",
    "JUDITH",
    "ROSALIND",
    "HENRIETTA",
    "GLORIA",
    "NADINE",
]
_LAST = [
    "HOLLOWAY",
    "FITZGERALD",
    "KOWALCZYK",
    "ABERNATHY",
    "DELACROIX",
    "PEMBERTON",
    "OKONKWO",
    "VANTERPOOL",
    "MCALLISTER",
    "STRZELECKI",
    "THORNBURY",
    "QUINTANILLA",
]
_INSTITUTIONS = [
    "Saint Brigid Regional Medical Center",
    "Lakeshore Womens Imaging Clinic",
    "Harrowgate County Hospital",
    "Mount Calloway Breast Centre",
]
_PHYSICIANS = ["WHITFIELD^ALAN", "BRANDVOLD^ESTHER", "OYELARAN^TUNDE", "KASPRZAK^IRENA"]


@dataclasses.dataclass
class Case:
    """One image of one patient, with the CSV rows that describe it."""

    patient_id: str
    laterality: str
    view: str
    density: str
    split: str  # "Training" or "Test"
    findings: tuple[Finding, ...]
    kinds: tuple[str, ...]  # which CSVs list it: "Mass", "Calc"

    @property
    def malignant(self) -> bool:
        """Whether any finding is malignant (CBIS-DDSM's image label)."""
        return any(f.malignant for f in self.findings)


def plan_cases(
    rng: np.random.Generator,
    patients: int,
    malignant_fraction: float,
    test_fraction: float,
) -> tuple[list[Case], list[dict[str, str]]]:
    """Draws the images of ``patients`` patients and their identifiers.

    Returns:
        ``(cases, people)``: four :class:`Case` per patient (CC and MLO of
        the breast with findings, then of the normal contralateral breast,
        listed in the calc CSV only) and one dict of DICOM identifiers per
        patient, keyed by ``patient_id`` and DICOM keywords.
    """
    cases: list[Case] = []
    people: list[dict[str, str]] = []
    number = 0
    for _ in range(patients):
        number += int(rng.integers(1, 4))
        pid = f"P_{number:05d}"
        split = "Test" if rng.uniform() < test_fraction else "Training"
        density = str(int(rng.choice([1, 2, 3, 4], p=[0.12, 0.4, 0.33, 0.15])))
        side = str(rng.choice(["LEFT", "RIGHT"]))
        other = "RIGHT" if side == "LEFT" else "LEFT"
        findings, kinds = _draw_findings(rng, malignant_fraction)
        for view in ("CC", "MLO"):
            cases.append(Case(pid, side, view, density, split, findings, kinds))
        for view in ("CC", "MLO"):
            cases.append(Case(pid, other, view, density, split, (), ("Calc",)))
        people.append(_fake_identity(rng, pid))
    return cases, people


def _draw_findings(
    rng: np.random.Generator, malignant_fraction: float
) -> tuple[tuple[Finding, ...], tuple[str, ...]]:
    """The findings of one breast and the CSVs ("Mass", "Calc") listing them."""
    if rng.uniform() < malignant_fraction:
        kind = str(rng.choice(["mass", "calc", "both"], p=[0.4, 0.4, 0.2]))
        findings = {
            "mass": (Finding("mass", True),),
            "calc": (Finding("calcification", True),),
            "both": (Finding("mass", True), Finding("calcification", False)),
        }[kind]
    else:
        kind = str(rng.choice(["mass", "calc"]))
        findings = (
            (Finding("mass", False),)
            if kind == "mass"
            else (Finding("calcification", False),)
        )
    kinds = {"mass": ("Mass",), "calc": ("Calc",), "both": ("Mass", "Calc")}[kind]
    return findings, kinds


def _fake_identity(rng: np.random.Generator, pid: str) -> dict[str, str]:
    """Fake but realistic identifiers of patient ``pid`` (to de-identify)."""
    birth = datetime.date(1935, 1, 1) + datetime.timedelta(
        days=int(rng.integers(0, 40 * 365))
    )
    study = datetime.date(2004, 1, 1) + datetime.timedelta(
        days=int(rng.integers(0, 12 * 365))
    )
    return {
        "patient_id": pid,
        "PatientName": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}^{chr(65 + int(rng.integers(0, 26)))}",
        "PatientID": f"MRN{int(rng.integers(10**7, 10**8))}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "AccessionNumber": f"ACC{int(rng.integers(10**9, 10**10))}",
        "InstitutionName": str(rng.choice(_INSTITUTIONS)),
        "StudyDate": study.strftime("%Y%m%d"),
        "ReferringPhysicianName": str(rng.choice(_PHYSICIANS)),
    }
