"""Where the synthetic CBIS-like generator drew each lesion, in model-input pixels.

Nothing is put into the images: the lesions are found again by rerunning the
generator's own placement with the same seed, then moved through the same
geometry as the image.

1. :func:`synthetic_cbis_lesions` replans the patients
   (:func:`morphhr_tf.synthetic.cbis_plan.plan_cases` with the seed and
   fractions :func:`morphhr_tf.synthetic.cbis_ddsm.generate` was called with)
   and rerenders the chosen images, which gives each finding's
   :class:`~morphhr_tf.synthetic.render.RenderedFinding`; its full-size mask
   is the ROI mask the generator writes
   (:func:`morphhr_tf.synthetic.cbis_writer.crop_and_mask`). With
   ``fine_detail=True``, the speck cluster of a malignant image is placed
   again with :func:`morphhr_tf.synthetic.fine_detail.draw_specks` on the
   image's own stream and checked bit for bit against
   :func:`~morphhr_tf.synthetic.fine_detail_mammogram.add_fine_detail`; its
   mask is the box of the speck centres padded by three speck sigmas (as
   :func:`morphhr_tf.synthetic.fine_detail.render` boxes its clusters).
2. :func:`input_geometry` finds the crop box and the flip that ingest's
   :class:`~morphhr_tf.data.preprocessing.MammogramPreprocessor` applies to
   the decoded DICOM (checked against its :class:`CropToBreast`), and
   :func:`mask_to_input` moves a full-size mask through them and the two area
   resizes (to the stored ``image_size``, then to the model's
   ``resolution``). A model-input pixel is in the lesion when at least half
   of it is covered.
3. :func:`load_example` reads one image as the model sees it (the DICOM
   reader, the preprocessor, 16 bits, the area resize of the input pipeline)
   with its lesion mask and breast mask at that resolution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from morphhr_tf.data.preprocessing import (
    CanonicalOrientation,
    CropToBreast,
    MammogramPreprocessor,
    area_resize,
)

__all__ = [
    "InputGeometry",
    "Lesion",
    "input_geometry",
    "load_example",
    "mask_to_input",
    "synthetic_cbis_lesions",
]

#: A model-input pixel belongs to the lesion when this share of it is covered.
COVERAGE = 0.5


@dataclasses.dataclass(frozen=True)
class Lesion:
    """One lesion of one image: what it is and its full-size boolean mask."""

    kind: str  # "mass", "calcification" or "fine_detail_cluster"
    malignant: bool
    mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class InputGeometry:
    """The crop box ``(r0, r1, c0, c1)`` and left-right flip of preprocessing."""

    box: tuple[int, int, int, int]
    flip: bool


def synthetic_cbis_lesions(
    *,
    seed: int,
    patients: int,
    rows: int,
    fine_detail: bool,
    malignant_fraction: float = 0.5,
    test_fraction: float = 0.2,
    markers: float = 0.5,
    split: str | None = "Test",
    malignant_only: bool = True,
) -> dict[str, list[Lesion]]:
    """The lesions of a synthetic CBIS-DDSM tree, by image id.

    Args:
        seed, patients, rows, fine_detail, malignant_fraction, test_fraction,
            markers: exactly as given to
            :func:`morphhr_tf.synthetic.cbis_ddsm.generate`.
        split: the official split to keep (``"Training"``, ``"Test"`` or
            ``None`` for both).
        malignant_only: keep the images with a malignant finding only.

    Returns:
        ``{image_id: [Lesion, ...]}``, ``image_id`` as the CBIS-DDSM adapter
        names records (``P_00001_LEFT_CC``); every finding of the image, and
        the fine-detail cluster of a malignant image.

    Raises:
        ValueError: on a bad split, or when the fine-detail replay disagrees
            with the generator (the generator changed).
    """
    from morphhr_tf.synthetic.cbis_ddsm import _render_image
    from morphhr_tf.synthetic.cbis_plan import plan_cases
    from morphhr_tf.synthetic.cbis_writer import crop_and_mask
    from morphhr_tf.synthetic.render import matrix_for_rows

    if split not in (None, "Training", "Test"):
        raise ValueError(
            f"split must be None, 'Training' or 'Test'. Received: {split!r}"
        )
    rows, _, spacing = matrix_for_rows(rows)
    cases, _ = plan_cases(
        np.random.default_rng(seed), patients, malignant_fraction, test_fraction
    )
    out: dict[str, list[Lesion]] = {}
    for index, case in enumerate(cases):
        if (split and case.split != split) or (malignant_only and not case.malignant):
            continue
        # The generator's streams: marker from [seed, 2, i], anatomy and
        # findings from [seed, 3, i], fine detail from [seed, 4, i].
        crng = np.random.default_rng([seed, 2, index])
        image, drawn = _render_image(
            seed, index, case, rows, spacing, crng, markers, False
        )
        lesions = [
            Lesion(d.kind, d.malignant, crop_and_mask(image, d, spacing)[1] > 0)
            for d in drawn
        ]
        if fine_detail and case.malignant:
            rng = np.random.default_rng([seed, 4, index])
            box = _fine_detail_box(rng, image, spacing)
            lesions.append(Lesion("fine_detail_cluster", True, box))
        out[f"{case.patient_id}_{case.laterality}_{case.view}"] = lesions
    return out


def _fine_detail_box(rng: np.random.Generator, image: np.ndarray, spacing: float):
    """The box of a malignant image's speck cluster, replayed and checked."""
    from morphhr_tf.synthetic import fine_detail_mammogram as fdm
    from morphhr_tf.synthetic.fine_detail import SPECKS, draw_specks

    mine, theirs = image.copy(), image.copy()
    state = rng.bit_generator.state
    breast = ndimage.binary_erosion(mine > 0.1, iterations=max(int(3 / spacing), 1))
    sigma = fdm.FINE_DETAIL_SPECK_MM / spacing
    points = draw_specks(
        rng,
        mine,
        inside=breast,
        clustered=True,
        n=int(rng.integers(SPECKS[0], SPECKS[1] + 1)),
        sigma=sigma,
        amplitude=fdm.FINE_DETAIL_AMPLITUDE,
        cluster_radius=fdm.FINE_DETAIL_CLUSTER_MM / spacing,
        center_inside=ndimage.binary_erosion(
            breast, iterations=max(int(fdm.FINE_DETAIL_CLUSTER_MM / spacing), 1)
        ),
    )
    noise = fdm.FINE_DETAIL_NOISE * 0.8 / spacing
    mine += rng.standard_normal(mine.shape, dtype=np.float32) * np.float32(noise)
    np.clip(mine, 0.0, 1.0, out=mine)
    replay = np.random.default_rng()
    replay.bit_generator.state = state
    fdm.add_fine_detail(replay, theirs, spacing, malignant=True)
    if not np.array_equal(mine, theirs):
        raise ValueError(
            "The fine-detail replay no longer matches add_fine_detail: update "
            "morphhr_tf.evaluation.lesion_masks._fine_detail_box."
        )
    half = np.ceil(3 * sigma) + 1
    lo = np.floor(points.min(0) - half).astype(int)
    hi = np.ceil(points.max(0) + half).astype(int) + 1
    mask = np.zeros(image.shape, bool)
    mask[max(lo[0], 0) : hi[0], max(lo[1], 0) : hi[1]] = True
    return mask


def input_geometry(
    image: np.ndarray, laterality: str = "", *, chest_wall: str = "left"
) -> InputGeometry:
    """The crop box and flip ingest's preprocessing applies to ``image``.

    Mirrors :class:`~morphhr_tf.data.preprocessing.CropToBreast` (default
    segmenter and margin) and :class:`CanonicalOrientation`, and checks the
    box against the crop :class:`CropToBreast` returns.

    Args:
        image: the decoded 2-D image in [0, 1].
        laterality: ``L`` / ``R`` as given to the preprocessor.
        chest_wall: the preprocessor's chest-wall side.

    Returns:
        An :class:`InputGeometry`.

    Raises:
        ValueError: when no breast is found, or when the mirrored box does not
            reproduce :class:`CropToBreast`'s crop (preprocessing changed).
    """
    crop_to_breast = CropToBreast()
    crop = crop_to_breast(image)
    mask, step = crop_to_breast.mask(image)
    mask = ndimage.binary_dilation(mask, iterations=2)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = image.shape
    pad_r = int(crop_to_breast.margin * (rows[-1] - rows[0] + 1) * step)
    pad_c = int(crop_to_breast.margin * (cols[-1] - cols[0] + 1) * step)
    r0, r1 = max(0, rows[0] * step - pad_r), min(h, (rows[-1] + 1) * step + pad_r)
    c0, c1 = max(0, cols[0] * step - pad_c), min(w, (cols[-1] + 1) * step + pad_c)
    mine = np.asarray(image[r0:r1, c0:c1], np.float32)
    kept = crop != 0
    if crop.shape != mine.shape or not np.array_equal(crop[kept], mine[kept]):
        raise ValueError(
            "input_geometry's crop box no longer matches CropToBreast: update "
            "morphhr_tf.evaluation.lesion_masks.input_geometry. Received: crop "
            f"shape {crop.shape}, box shape {mine.shape}"
        )
    side = CanonicalOrientation(chest_wall).chest_wall_side(crop, laterality)
    return InputGeometry((int(r0), int(r1), int(c0), int(c1)), side != chest_wall)


def mask_to_input(
    mask: np.ndarray, geometry: InputGeometry, *, image_size: int, resolution: int
) -> np.ndarray:
    """A full-size mask in model-input pixels: crop, flip, two area resizes.

    Args:
        mask: 2-D boolean mask of the decoded image.
        geometry: from :func:`input_geometry` on that image.
        image_size: the stored image size of the ingest.
        resolution: the model's input size.

    Returns:
        Boolean ``[resolution, resolution]``: pixels at least
        :data:`COVERAGE` covered.
    """
    r0, r1, c0, c1 = geometry.box
    cover = area_resize(
        np.asarray(mask, np.float32)[r0:r1, c0:c1], image_size, image_size
    )
    if geometry.flip:
        cover = cover[:, ::-1]
    if resolution != image_size:
        cover = area_resize(cover, resolution, resolution)
    return np.ascontiguousarray(cover >= COVERAGE - 1e-6)


def load_example(
    path: str,
    laterality: str,
    masks: list[np.ndarray],
    *,
    image_size: int,
    resolution: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image as the model takes it, with its lesion and breast masks.

    Args:
        path: the full mammogram's DICOM file.
        laterality: ``L`` or ``R``.
        masks: full-size boolean lesion masks (their union is the lesion).
        image_size: the stored image size of the ingest.
        resolution: the model's input size.

    Returns:
        ``(image, lesion, breast)``: float32 ``[resolution, resolution]`` in
        [0, 1] (ingest's pixels, area-resized as the input pipeline does) and
        two boolean masks of that shape; the breast is where the model input
        is above 0.05 after filling holes.

    Raises:
        ValueError: on an empty ``masks`` or an unreadable image.
    """
    from morphhr_tf.data.dicom_reader import read_mammogram
    from morphhr_tf.data.image_ops import resize_image

    if not masks:
        raise ValueError(f"masks is empty: image {path!r} has no lesion to point at.")
    decoded, _ = read_mammogram(path)
    geometry = input_geometry(decoded, laterality)
    stored = MammogramPreprocessor(image_size=image_size)(decoded, laterality)
    image = resize_image(stored[..., None].astype(np.float32) / 65535.0, resolution)
    image = np.asarray(image)[..., 0]
    union = np.logical_or.reduce([np.asarray(m, bool) for m in masks])
    lesion = mask_to_input(
        union, geometry, image_size=image_size, resolution=resolution
    )
    breast = ndimage.binary_fill_holes(image > 0.05)
    return image.astype(np.float32), lesion, breast
