"""What a synthetic ChestX-ray14 tree holds: its patients, images and findings.

:func:`plan_images` draws every image's CSV values and findings;
:mod:`~morphhr_tf.synthetic.chestxray14` writes them and
:mod:`~morphhr_tf.synthetic.chestxray14_render` draws the pictures.

Labels follow the real data: about half the images say ``No Finding`` (more
of the AP ones: sicker, bed-side patients). The first finding of an image is
drawn with the real per-label frequencies (``frequencies="nih"``: Infiltration
most common, Hernia rarest, 227 of ~112k images) or with equal ones
(``"uniform"``: a small set then has positives of every finding). Further
findings are likelier when they go together (Effusion with Atelectasis,
Cardiomegaly, Edema or Infiltration; Mass with Nodule; ...): each is added
with a base rate (``"nih"``: proportional to its real frequency;
``"uniform"``: the mean of those rates, the same for every finding), times
:data:`LINK_BOOST` when linked to a finding already there. Patients have 1-8
images (follow-ups); a chronic finding usually stays on the next one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from morphhr_tf.data.adapters.chestxray14 import FINDINGS, NO_FINDING

__all__ = [
    "FREQUENCIES",
    "FREQUENCY",
    "NO_FINDING",
    "PlannedImage",
    "check_frequencies",
    "plan_images",
]

FREQUENCIES = ("nih", "uniform")
TEST_FRACTION = 0.2
RGBA_FRACTION = 0.02
# Images per label in the real data (Wang et al. 2017): first-finding weights.
_COUNTS = (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516)
FREQUENCY = dict(zip(FINDINGS, _COUNTS + (1686, 3385, 227)))
# Pairs that go together more often than chance.
LINKED = {
    frozenset(pair.split("+"))
    for pair in (
        "Effusion+Atelectasis Effusion+Cardiomegaly Effusion+Infiltration "
        "Effusion+Edema Effusion+Consolidation Atelectasis+Infiltration "
        "Consolidation+Infiltration Pneumonia+Infiltration Edema+Cardiomegaly "
        "Edema+Infiltration Mass+Nodule Emphysema+Pneumothorax"
    ).split()
}
CHRONIC = frozenset(
    ("Cardiomegaly", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
    + ("Mass", "Nodule")
)
NO_FINDING_RATE = {"PA": 0.65, "AP": 0.48}
EXTRA_RATE, LINK_BOOST, KEEP_CHRONIC = 0.1, 3.0, 0.7
SPACINGS = ("0.143", "0.14300000000000002", "0.139", "0.168", "0.171", "0.194")


@dataclasses.dataclass(frozen=True)
class PlannedImage:
    """One image of the tree: its CSV values and what to draw."""

    name: str
    patient_id: int
    follow_up: int
    findings: tuple[str, ...]  # in FINDINGS order; () for No Finding
    age: int
    bad_age: bool  # written as age + 400 in the 2017 CSV
    sex: str
    view: str
    original_size: tuple[int, int]
    spacing: str
    test: bool
    rgba: bool

    @property
    def labels(self) -> str:
        """The ``Finding Labels`` value."""
        return "|".join(sorted(self.findings)) or NO_FINDING


@dataclasses.dataclass(frozen=True)
class _Rates:
    """``first``: probabilities of an image's first finding, in FINDINGS order;
    ``extra``: each finding's base rate of joining the ones already there."""

    first: np.ndarray
    extra: dict[str, float]


def check_frequencies(frequencies: Any) -> None:
    """Raises ValueError unless ``frequencies`` is one of :data:`FREQUENCIES`."""
    if not isinstance(frequencies, str) or frequencies not in FREQUENCIES:
        raise ValueError(
            f"frequencies must be one of {FREQUENCIES}. "
            f"Received: frequencies={frequencies!r}"
        )


def _rates(frequencies: str) -> _Rates:
    """The finding rates of ``frequencies`` (``nih`` or ``uniform``)."""
    top = max(FREQUENCY.values())
    if frequencies == "nih":
        weights = np.array([FREQUENCY[f] for f in FINDINGS], dtype=np.float64)
        extra = {f: EXTRA_RATE * FREQUENCY[f] / top for f in FINDINGS}
        return _Rates(weights / weights.sum(), extra)
    mean = float(np.mean([EXTRA_RATE * FREQUENCY[f] / top for f in FINDINGS]))
    first = np.full(len(FINDINGS), 1.0 / len(FINDINGS))
    return _Rates(first, dict.fromkeys(FINDINGS, mean))


def plan_images(
    rng: np.random.Generator, patients: int, frequencies: str = "nih"
) -> list[PlannedImage]:
    """Draws the patients, their follow-ups and findings, sorted by name.

    Args:
        rng: the only source of randomness.
        patients: number of patients (IDs 1..patients).
        frequencies: ``nih`` (the real data set's finding frequencies) or
            ``uniform`` (every finding equally likely).

    Returns:
        One :class:`PlannedImage` per image, sorted by name.

    Raises:
        ValueError: for an unknown ``frequencies``.
    """
    check_frequencies(frequencies)
    rates = _rates(frequencies)
    n_test = max(1, round(TEST_FRACTION * patients)) if patients > 1 else 0
    test = set(rng.permutation(patients)[:n_test].tolist())
    plan = []
    for index in range(patients):
        pid = index + 1
        age, sex = int(np.clip(rng.normal(47, 17), 1, 95)), rng.choice(["M", "F"])
        previous: tuple[str, ...] = ()
        for follow_up in range(int(min(rng.geometric(0.45), 8))):
            view = "AP" if rng.uniform() < 0.4 else "PA"
            previous = _sample_findings(rng, previous, view, rates)
            plan.append(
                PlannedImage(
                    name=f"{pid:08d}_{follow_up:03d}.png",
                    patient_id=pid,
                    follow_up=follow_up,
                    findings=previous,
                    age=age + follow_up // 3,
                    bad_age=bool(rng.uniform() < 0.003),
                    sex=str(sex),
                    view=view,
                    original_size=(
                        int(rng.integers(2000, 3057)),
                        int(rng.integers(2000, 3057)),
                    ),
                    spacing=SPACINGS[int(rng.integers(len(SPACINGS)))],
                    test=index in test,
                    rgba=False,
                )
            )
    n_rgba = max(1, round(RGBA_FRACTION * len(plan)))
    rgba = set(rng.choice(len(plan), n_rgba, replace=False).tolist())
    return [dataclasses.replace(p, rgba=i in rgba) for i, p in enumerate(plan)]


def _sample_findings(
    rng: np.random.Generator, previous: tuple[str, ...], view: str, rates: _Rates
) -> tuple[str, ...]:
    """The findings of one image, given the patient's previous image."""
    found = {f for f in previous if f in CHRONIC and rng.uniform() < KEEP_CHRONIC}
    if not found:
        if rng.uniform() < NO_FINDING_RATE[view]:
            return ()
        found.add(FINDINGS[int(rng.choice(len(FINDINGS), p=rates.first))])
    for finding in FINDINGS:
        linked = any(frozenset((finding, f)) in LINKED for f in found)
        rate = rates.extra[finding] * (LINK_BOOST if linked else 1.0)
        if finding not in found and rng.uniform() < rate:
            found.add(finding)
    return tuple(f for f in FINDINGS if f in found)
