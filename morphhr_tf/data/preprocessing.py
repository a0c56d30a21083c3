"""Array transforms from a decoded mammogram to the model's input.

Each transform is a small callable with its parameters in ``__init__`` and a
pure ``__call__`` (MONAI style). :class:`MammogramPreprocessor` chains them:
crop to the breast, canonical orientation, anti-aliased resize, 16 bits.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage, sparse

RESIZE_MODES = ("square", "pad")
#: The stored image size (pixels per side) ingest writes when none is given:
#: the highest resolution of the MorphHR paper.
DEFAULT_IMAGE_SIZE = 896


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centers[int(np.argmax(between))])


class BreastMask:
    """Segments the breast: threshold, then the largest connected component.

    Works on a subsampled copy (longest side about ``work_size`` pixels), so
    its cost does not grow with the detector. Burned-in labels and markers are
    separate components and are dropped; holes in the breast are filled.

    Args:
        threshold: intensity in [0, 1] separating breast from background;
            ``None`` picks the lower of Otsu's threshold and
            ``background + relative_threshold * (p99 - background)``.
        relative_threshold: used by the automatic threshold.
        work_size: longest side of the subsampled copy.

    Returns (``__call__``):
        ``(mask, step)``: a boolean mask of the subsampled grid
        ``image[::step, ::step]`` (all False when nothing is found).
    """

    def __init__(
        self,
        threshold: float | None = None,
        relative_threshold: float = 0.1,
        work_size: int = 512,
    ):
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1). Received: {threshold}")
        if work_size < 16:
            raise ValueError(f"work_size must be at least 16. Received: {work_size}")
        self.threshold = threshold
        self.relative_threshold = relative_threshold
        self.work_size = work_size

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        mask, step, _ = self.segment(image)
        return mask, step

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """``(mask, step, image[::step, ::step])``: :meth:`__call__`'s result
        and the subsampled copy it was computed on (before smoothing).

        ``image`` may also be a lazily mapped image (see :func:`_as_image`):
        only the subsampled pixels are read.
        """
        image = _as_image(image)
        step = max(1, int(np.ceil(max(image.shape) / self.work_size)))
        sub = np.asarray(image[::step, ::step])
        small = np.ascontiguousarray(sub, dtype=np.float32)
        small = ndimage.uniform_filter(small, size=3, mode="nearest")
        if self.threshold is None:
            sample = small[::2, ::2]
            background, top = (float(v) for v in np.percentile(sample, [1, 99]))
            if top - background < 1e-3:
                return np.zeros(small.shape, dtype=bool), step, sub
            relative = background + self.relative_threshold * (top - background)
            threshold = min(_otsu(sample), relative)
        else:
            threshold = self.threshold
        labels, count = ndimage.label(small > threshold)
        if count == 0:
            return np.zeros(small.shape, dtype=bool), step, sub
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
        return _fill_holes(mask), step, sub


class CropToBreast:
    """Crops to the breast's bounding box and blanks everything outside it.

    Pixels outside the (slightly dilated) breast component are set to 0, so
    labels and markers inside the box disappear too.

    Args:
        mask: the segmenter (default :class:`BreastMask`).
        margin: extra border kept around the box, as a fraction of its size.
        min_fraction: a breast smaller than this fraction of the image is
            treated as not found.

    Raises (``__call__``):
        ValueError: when no breast is found.
    """

    def __init__(
        self,
        mask: BreastMask | None = None,
        margin: float = 0.02,
        min_fraction: float = 0.005,
    ):
        self.mask = mask if mask is not None else BreastMask()
        self.margin = margin
        self.min_fraction = min_fraction

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The crop, float32; ``image`` may be lazily mapped (only the
        subsampled copy and the crop are then read, see :func:`_as_image`)."""
        image = _as_image(image)
        mask, step, sub = self.mask.segment(image)
        if mask.sum() < self.min_fraction * mask.size:
            raise ValueError(
                "no breast found: the largest bright region covers "
                f"{mask.mean():.2%} of the image"
            )
        mask = _dilate_cross(mask, iterations=2)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        h, w = image.shape
        pad_r = int(self.margin * (rows[-1] - rows[0] + 1) * step)
        pad_c = int(self.margin * (cols[-1] - cols[0] + 1) * step)
        r0 = max(0, rows[0] * step - pad_r)
        r1 = min(h, (rows[-1] + 1) * step + pad_r)
        c0 = max(0, cols[0] * step - pad_c)
        c1 = min(w, (cols[-1] + 1) * step + pad_c)
        crop = np.asarray(image[r0:r1, c0:c1], dtype=np.float32)
        ri = np.minimum(np.arange(r0, r1) // step, mask.shape[0] - 1)
        ci = np.minimum(np.arange(c0, c1) // step, mask.shape[1] - 1)
        box = (slice(ri[0], ri[-1] + 1), slice(ci[0], ci[-1] + 1))
        if self._others_in_box(sub, mask, box):
            # Blank labels/markers inside the box: expand the mask to the crop.
            if not crop.flags.owndata:  # a view of the caller's image
                crop = crop.copy()
            np.multiply(crop, _expand(mask[box], ri - ri[0], ci - ci[0]), out=crop)
        return crop

    @staticmethod
    def _others_in_box(small, mask, box) -> bool:
        small = small[box]
        outside = small[~mask[box]]
        if outside.size == 0:
            return False
        inside = small[mask[box]]
        level = float(np.percentile(inside, 5)) if inside.size else 0.0
        return bool((outside > 0.5 * level).any())


class CanonicalOrientation:
    """Flips images so every breast has its chest wall on the same side.

    Uses the laterality (stored mammograms put a left breast's chest wall on
    the image's left and a right breast's on the right). Without laterality,
    or when the image clearly contradicts it (one half holds more than
    ``contradiction_ratio`` times the other's tissue), the side with more
    tissue is taken as the chest wall.

    Args:
        chest_wall: ``"left"`` or ``"right"``: where the chest wall ends up.
        contradiction_ratio: tissue ratio between halves beyond which the
            image overrides the laterality.
    """

    def __init__(self, chest_wall: str = "left", contradiction_ratio: float = 1.5):
        if chest_wall not in ("left", "right"):
            raise ValueError(
                f"chest_wall must be 'left' or 'right'. Received: {chest_wall!r}"
            )
        if contradiction_ratio <= 1.0:
            raise ValueError(
                "contradiction_ratio must exceed 1. "
                f"Received: contradiction_ratio={contradiction_ratio}"
            )
        self.chest_wall = chest_wall
        self.contradiction_ratio = contradiction_ratio

    def chest_wall_side(self, image: np.ndarray, laterality: str = "") -> str:
        """Where the chest wall is in ``image``: ``"left"`` or ``"right"``."""
        image = _as_2d(image)
        step = max(1, max(image.shape) // 256)
        small = np.asarray(image[::step, ::step], dtype=np.float64)
        half = small.shape[1] // 2
        left = float(small[:, :half].sum())
        right = float(small[:, small.shape[1] - half :].sum())
        by_mass = "left" if left >= right else "right"
        lat = str(laterality or "").upper()[:1]
        if lat not in ("L", "R"):
            return by_mass
        by_header = "left" if lat == "L" else "right"
        lo, hi = sorted((left, right))
        if by_header != by_mass and hi > self.contradiction_ratio * max(lo, 1e-12):
            return by_mass
        return by_header

    def __call__(self, image: np.ndarray, laterality: str = "") -> np.ndarray:
        if self.chest_wall_side(image, laterality) != self.chest_wall:
            return np.ascontiguousarray(image[:, ::-1])
        return image


@functools.lru_cache(maxsize=64)
def area_matrix(n_in: int, n_out: int) -> sparse.csr_matrix:
    """The ``n_out x n_in`` matrix of area (box) resampling along one axis.

    Row ``i`` averages the input interval ``[i, i + 1) * n_in / n_out``,
    weighting partly covered pixels by their overlap: anti-aliased when
    shrinking, nearest-neighbour-like when enlarging. Rows sum to 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(
            f"sizes must be positive. Received: n_in={n_in}, n_out={n_out}"
        )
    scale = n_in / n_out
    starts = np.arange(n_out) * scale
    ends = starts + scale
    first = np.floor(starts).astype(np.int64)
    last = np.minimum(np.ceil(ends).astype(np.int64), n_in)
    width = int((last - first).max())
    cols = first[:, None] + np.arange(width)[None, :]
    lo = np.maximum(cols, starts[:, None])
    hi = np.minimum(cols + 1, ends[:, None])
    weights = np.clip(hi - lo, 0.0, None) / scale
    valid = (cols < n_in) & (weights > 0)
    rows = np.broadcast_to(np.arange(n_out)[:, None], cols.shape)
    return sparse.csr_matrix(
        (weights[valid].astype(np.float32), (rows[valid], cols[valid])),
        shape=(n_out, n_in),
    )


def area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a 2-D image by area averaging (exact box filter), as float32."""
    return np.ascontiguousarray(_area_resize(image, height, width))


def _area_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`area_resize` in whatever memory order the product leaves (the
    caller's next copy makes it contiguous)."""
    image = np.asarray(_as_2d(image), dtype=np.float32)
    h, w = image.shape
    out = image
    if height != h:
        out = area_matrix(h, height) @ out
    if width != w:
        out = (area_matrix(w, width) @ out.T).T
    return np.asarray(out, dtype=np.float32)


class Resize:
    """Anti-aliased resize to ``size x size``.

    Args:
        size: output side in pixels.
        mode: ``"square"`` stretches to a square (as in the MorphHR paper);
            ``"pad"`` keeps the aspect ratio, fitting the longer side, and pads
            with 0 (background) to the right and equally above and below (the
            chest wall stays on the left edge after canonical orientation).
    """

    def __init__(self, size: int, mode: str = "square"):
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an integer >= 8. Received: size={size!r}")
        if mode not in RESIZE_MODES:
            raise ValueError(
                f"mode must be one of {RESIZE_MODES}. Received: mode={mode!r}"
            )
        self.size = size
        self.mode = mode

    def __call__(self, image: np.ndarray, flip: bool = False) -> np.ndarray:
        """Resizes ``image``; ``flip=True`` also mirrors it left-right.

        Mirroring after the box filter equals mirroring before it, and costs
        far less at the output size. The float32 result may be a strided view
        (:class:`ToUint16` copies it into a contiguous array).
        """
        image = _as_2d(image)
        if self.mode == "square":
            out = _area_resize(image, self.size, self.size)
            return out[:, ::-1] if flip else out  # ToUint16 makes it contiguous
        h, w = image.shape
        scale = self.size / max(h, w)
        nh = min(self.size, max(1, round(h * scale)))
        nw = min(self.size, max(1, round(w * scale)))
        resized = _area_resize(image, nh, nw)
        if flip:
            resized = resized[:, ::-1]
        out = np.zeros((self.size, self.size), dtype=np.float32)
        top = (self.size - nh) // 2
        out[top : top + nh, :nw] = resized
        return out


class ToUint16:
    """Maps [0, 1] floats to ``uint16`` (0..65535), clipping and rounding."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        np.multiply(out, 65535.0, out=out)
        return np.rint(out, out=out).astype(np.uint16, order="C")


class MammogramPreprocessor:
    """Crop to the breast, orient, resize and quantize to 16 bits.

    With ``crop=False, orient=False`` it only resizes and quantizes: the
    setting of the other radiographs (ChestX-ray14).

    Args:
        image_size: the stored image size, the output side in pixels
            (:data:`DEFAULT_IMAGE_SIZE`, the paper's highest resolution).
        resize_mode: ``"square"`` or ``"pad"`` (see :class:`Resize`).
        chest_wall: side the chest wall is put on.
        crop: whether to crop to the breast (off for non-mammograms).
        orient: whether to flip the chest wall to ``chest_wall`` (off for
            non-mammograms, which keep the orientation they are stored in).

    Example:
        >>> pre = MammogramPreprocessor(image_size=64)
        >>> out = pre(image, laterality="R")  # doctest: +SKIP
        >>> out.shape, out.dtype  # doctest: +SKIP
        ((64, 64), dtype('uint16'))
    """

    def __init__(
        self,
        image_size: int = DEFAULT_IMAGE_SIZE,
        resize_mode: str = "square",
        chest_wall: str = "left",
        crop: bool = True,
        orient: bool = True,
    ):
        self.image_size = image_size
        self.resize_mode = resize_mode
        self.chest_wall = chest_wall
        self.crop = crop
        self.orient = orient
        self._crop = CropToBreast() if crop else None
        self._orient = CanonicalOrientation(chest_wall) if orient else None
        self._resize = Resize(image_size, resize_mode)
        self._quantize = ToUint16()

    def __call__(self, image: np.ndarray, laterality: str = "") -> np.ndarray:
        """The stored image: ``uint16`` ``image_size`` x ``image_size``.

        ``image`` is a 2-D array in [0, 1], or a lazily mapped image such as
        :class:`morphhr_tf.data.dicom_reader.MappedImage` (then only the
        pixels the crop keeps are mapped; the output is the same).
        """
        image = _as_image(image)
        if self._crop is not None:
            image = self._crop(image)
        else:
            image = _as_2d(image)
        flip = (
            self._orient is not None
            and self._orient.chest_wall_side(image, laterality) != self.chest_wall
        )
        return self._quantize(self._resize(image, flip=flip))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fills holes: background regions that do not touch the border.

    Only the mask's bounding box, one pixel wider, is labelled: outside it
    all is background connected to the border, and a hole lies inside it.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask
    box = (
        slice(max(rows[0] - 1, 0), rows[-1] + 2),
        slice(max(cols[0] - 1, 0), cols[-1] + 2),
    )
    part = mask[box]
    labels, count = ndimage.label(~part)
    if count == 0:
        return mask
    border = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )
    keep = np.zeros(count + 1, dtype=bool)
    keep[border] = True
    keep[0] = True  # label 0 is the mask itself
    out = mask.copy()
    out[box] = part | ~keep[labels]
    return out


def _dilate_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=...)`` (3 x 3 cross,
    outside = False) with whole-array shifts: the same mask, faster."""
    out = np.asarray(mask, dtype=bool)
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _expand(mask: np.ndarray, ri: np.ndarray, ci: np.ndarray) -> np.ndarray:
    """``mask[np.ix_(ri, ci)]`` for non-decreasing ``ci`` (runs of repeated
    column indices): a repeat along the columns, then a gather of rows."""
    cols = np.bincount(ci, minlength=mask.shape[1])
    return np.repeat(mask, cols, axis=1)[ri]


def _as_image(image):
    """A lazily mapped image as is (not an ndarray; ``ndim == 2``, ``shape``,
    basic slices give float32 arrays: e.g.
    :class:`morphhr_tf.data.dicom_reader.MappedImage`), else :func:`_as_2d`."""
    if isinstance(image, np.ndarray) or getattr(image, "ndim", None) != 2:
        return _as_2d(image)
    if not hasattr(image, "__getitem__") or 0 in tuple(image.shape):
        raise ValueError(
            "expected a non-empty 2-D image. "
            f"Received: {type(image).__name__} of shape {getattr(image, 'shape', None)}"
        )
    return image


def _as_2d(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D image. Received: shape={arr.shape}")
    return arr
