"""Tests of morphhr_tf.evaluation.pointing_game and .lesion_masks."""

from __future__ import annotations

import glob
import os

import numpy as np
import pydicom
import pytest

from morphhr_tf.evaluation.lesion_masks import (
    InputGeometry,
    input_geometry,
    mask_to_input,
    synthetic_cbis_lesions,
)
from morphhr_tf.evaluation.pointing_game import (
    bootstrap_ci,
    dilate,
    mass_fraction,
    peak,
    pointing_game,
    pointing_hit,
    random_hit_rate,
)


def _peak_map(shape=(5, 5), peak=(1, 1)) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[peak] = 1.0
    m[0, 4] = 0.5
    return m


def _mask(shape, *points) -> np.ndarray:
    m = np.zeros(shape, bool)
    for p in points:
        m[p] = True
    return m


def test_pointing_hit_by_hand():
    saliency = _peak_map()
    assert pointing_hit(saliency, _mask((5, 5), (1, 1)))
    assert not pointing_hit(saliency, _mask((5, 5), (3, 3)))
    # (1, 1) to (3, 3) is sqrt(8) = 2.83 px away.
    assert not pointing_hit(saliency, _mask((5, 5), (3, 3)), tolerance=2.8)
    assert pointing_hit(saliency, _mask((5, 5), (3, 3)), tolerance=2.83)


def test_a_plateau_peaks_at_its_centre_not_its_corner():
    saliency = np.zeros((8, 8))
    saliency[4:8, 4:8] = 1.0  # a 2 x 2 map's upsampled maximum
    assert peak(saliency) == (5, 5)
    assert pointing_hit(saliency, _mask((8, 8), (5, 5), (5, 6), (6, 5), (6, 6)))
    assert peak(_peak_map()) == (1, 1)


def test_a_flat_map_points_nowhere():
    mask = np.ones((4, 4), bool)
    assert not pointing_hit(np.zeros((4, 4)), mask)
    assert not pointing_hit(np.full((4, 4), 0.3), mask)


def test_mass_fraction_by_hand():
    saliency = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert mass_fraction(saliency, np.array([[True, False], [False, True]])) == 0.5
    assert (
        mass_fraction(np.array([[-3.0, 1.0], [1.0, 2.0]]), _mask((2, 2), (1, 1))) == 0.5
    )
    assert mass_fraction(np.zeros((2, 2)), np.ones((2, 2), bool)) == 0.0


def test_random_hit_rate_is_the_area_fraction():
    mask = _mask((4, 4), (0, 0), (1, 1))
    assert random_hit_rate(mask) == 2 / 16
    region = np.zeros((4, 4), bool)
    region[:2] = True
    assert random_hit_rate(mask, region=region) == 2 / 8
    centre = _mask((5, 5), (2, 2))
    assert random_hit_rate(centre, tolerance=1.0) == 5 / 25  # the centre's cross
    assert random_hit_rate(centre, tolerance=1.5) == 9 / 25


def test_random_hit_rate_agrees_with_sampling():
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 40), bool)
    mask[5:12, 20:31] = True
    region = np.zeros((40, 40), bool)
    region[:, :30] = True
    points = rng.integers(0, 40, (40000, 2))
    points = points[region[points[:, 0], points[:, 1]]]
    sampled = dilate(mask, 2.0)[points[:, 0], points[:, 1]].mean()
    assert abs(random_hit_rate(mask, region=region, tolerance=2.0) - sampled) < 0.01


def test_pointing_game_summary_by_hand():
    maps = np.stack([_peak_map(), _peak_map()])
    masks = np.stack([_mask((5, 5), (1, 1)), _mask((5, 5), (4, 4), (4, 3))])
    out = pointing_game(maps, masks, n_bootstrap=200)
    assert out["n"] == 2 and out["flat_maps"] == 0
    assert out["per_image"]["hit"] == [1, 0]
    assert out["hit_rate"][0] == 0.5
    assert out["per_image"]["random_hit_rate"] == [1 / 25, 2 / 25]
    assert out["random_hit_rate"][0] == pytest.approx(1.5 / 25)
    assert out["excess_hit_rate"][0] == pytest.approx(0.5 - 1.5 / 25)
    assert out["mass_fraction"][0] == pytest.approx((1 / 1.5 + 0.0) / 2)
    assert 0.0 <= out["hit_rate"][1] <= 0.5 <= out["hit_rate"][2] <= 1.0


def test_bootstrap_ci_of_constant_values_is_a_point():
    assert bootstrap_ci([0.25] * 7) == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level=1.5"):
        bootstrap_ci([1.0], level=1.5)


def test_bad_shapes_raise_value_errors_that_echo_them():
    with pytest.raises(ValueError, match=r"mask shape=\(4, 4\)"):
        pointing_hit(np.zeros((5, 5)), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"masks shape=\(1, 4, 4\)"):
        pointing_game(np.zeros((2, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="tolerance=-1"):
        dilate(np.ones((2, 2), bool), -1)
    with pytest.raises(ValueError, match="region is empty"):
        random_hit_rate(np.ones((2, 2), bool), region=np.zeros((2, 2), bool))


def test_mask_to_input_crops_flips_and_resizes():
    full = np.zeros((10, 8), bool)
    full[2:6, 0:4] = True  # the top-left quarter of the crop below
    geometry = InputGeometry(box=(2, 10, 0, 8), flip=False)
    expected = np.array([[True, False], [False, False]])
    got = mask_to_input(full, geometry, image_size=4, resolution=2)
    np.testing.assert_array_equal(got, expected)
    flipped = InputGeometry(box=(2, 10, 0, 8), flip=True)
    got = mask_to_input(full, flipped, image_size=4, resolution=2)
    np.testing.assert_array_equal(got, expected[:, ::-1])


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_input_geometry_reproduces_the_preprocessor(laterality):
    from morphhr_tf.data.preprocessing import MammogramPreprocessor, Resize, ToUint16
    from morphhr_tf.synthetic.render import render_mammogram

    image, _, _ = render_mammogram(3, rows=256, laterality=laterality, marker=True)
    geometry = input_geometry(image, laterality)
    r0, r1, c0, c1 = geometry.box
    assert geometry.flip == (laterality == "R")
    mine = ToUint16()(Resize(64)(image[r0:r1, c0:c1], flip=geometry.flip))
    theirs = MammogramPreprocessor(image_size=64)(image, laterality)
    breast = theirs > 0  # the preprocessor blanks a marker inside the box
    np.testing.assert_array_equal(mine[breast], theirs[breast])
    assert breast.mean() > 0.5


@pytest.fixture(scope="module")
def synthetic_tree(tmp_path_factory):
    from morphhr_tf.synthetic.cbis_ddsm import generate

    root = str(tmp_path_factory.mktemp("cbis"))
    generate(root, patients=4, seed=5, rows=256, fine_detail=True)
    return root


def test_replayed_findings_match_the_written_roi_masks(synthetic_tree):
    lesions = synthetic_cbis_lesions(
        seed=5, patients=4, rows=256, fine_detail=True, split=None,
        malignant_only=False,
    )  # fmt: skip
    assert lesions
    compared = 0
    for image_id, found in lesions.items():
        findings = [les for les in found if les.kind != "fine_detail_cluster"]
        pattern = os.path.join(synthetic_tree, "CBIS-DDSM", f"*_{image_id}_[0-9]", "*")
        written = []
        for path in sorted(glob.glob(os.path.join(pattern, "*", "*.dcm"))):
            ds = pydicom.dcmread(path)
            if "ROI" in str(ds.SeriesDescription):
                written.append(ds.pixel_array > 0)
        mine = sorted((m.mask for m in findings), key=lambda m: m.tobytes())
        written = sorted(written, key=lambda m: m.tobytes())
        assert len(mine) == len(written), image_id
        for a, b in zip(mine, written):
            np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared >= 4


def test_replayed_fine_detail_cluster_covers_the_drawn_specks():
    from morphhr_tf.synthetic.cbis_ddsm import _render_image
    from morphhr_tf.synthetic.cbis_plan import plan_cases
    from morphhr_tf.synthetic.render import matrix_for_rows

    seed, patients = 5, 4
    lesions = synthetic_cbis_lesions(
        seed=seed, patients=patients, rows=256, fine_detail=True, split=None
    )
    rows, _, spacing = matrix_for_rows(256)
    cases, _ = plan_cases(np.random.default_rng(seed), patients, 0.5, 0.2)
    checked = 0
    for index, case in enumerate(cases):
        image_id = f"{case.patient_id}_{case.laterality}_{case.view}"
        if image_id not in lesions:
            continue
        box = [
            les.mask for les in lesions[image_id] if les.kind == "fine_detail_cluster"
        ]
        assert len(box) == 1
        args = (seed, index, case, rows, spacing)
        with_specks, _ = _render_image(
            *args, np.random.default_rng([seed, 2, index]), 0.5, True
        )
        without, _ = _render_image(
            *args, np.random.default_rng([seed, 2, index]), 0.5, False
        )
        specks = (with_specks - without) > 0.25  # noise sd 0.03 at 0.8 mm
        assert specks.any() and not (specks & ~box[0]).any(), image_id
        checked += 1
    assert checked >= 2
