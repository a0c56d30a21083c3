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
        image = _as_2d(image)
        step = max(1, int(np.ceil(max(image.shape) / self.work_size)))
        small = np.asarray(image[::step, ::step], dtype=np.float32)
        small = ndimage.uniform_filter(small, size=3, mode="nearest")
        if self.threshold is None:
            sample = small[::2, ::2]
            background, top = (float(v) for v in np.percentile(sample, [1, 99]))
            if top - background < 1e-3:
                return np.zeros(small.shape, dtype=bool), step
            relative = background + self.relative_threshold * (top - background)
            threshold = min(_otsu(sample), relative)
        else:
            threshold = self.threshold
        labels, count = ndimage.label(small > threshold)
        if count == 0:
            return np.zeros(small.shape, dtype=bool), step
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
        return _fill_holes(mask), step


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
        image = _as_2d(image)
        mask, step = self.mask(image)
        if mask.sum() < self.min_fraction * mask.size:
            raise ValueError(
                "no breast found: the largest bright region covers "
                f"{mask.mean():.2%} of the image"
            )
        mask = ndimage.binary_dilation(mask, iterations=2)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        h, w = image.shape
        pad_r = int(self.margin * (rows[-1] - rows[0] + 1) * step)
        pad_c = int(self.margin * (cols[-1] - cols[0] + 1) * step)
        r0 = max(0, rows[0] * step - pad_r)
        r1 = min(h, (rows[-1] + 1) * step + pad_r)
        c0 = max(0, cols[0] * step - pad_c)
        c1 = min(w, (cols[-1] + 1) * step + pad_c)
        crop = image[r0:r1, c0:c1]
        ri = np.minimum(np.arange(r0, r1) // step, mask.shape[0] - 1)
        ci = np.minimum(np.arange(c0, c1) // step, mask.shape[1] - 1)
        box = (slice(ri[0], ri[-1] + 1), slice(ci[0], ci[-1] + 1))
        if self._others_in_box(image, mask, step, box):
            # Blank labels/markers inside the box: expand the mask to the crop.
            crop = np.array(crop, dtype=np.float32)
            crop[~mask[np.ix_(ri, ci)]] = 0.0
        return np.asarray(crop, dtype=np.float32)

    @staticmethod
    def _others_in_box(image, mask, step, box) -> bool:
        small = np.asarray(image[::step, ::step])[box]
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
    image = np.asarray(_as_2d(image), dtype=np.float32)
    h, w = image.shape
    out = image
    if height != h:
        out = area_matrix(h, height) @ out
    if width != w:
        out = (area_matrix(w, width) @ out.T).T
    return np.ascontiguousarray(out, dtype=np.float32)


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
        far less at the output size.
        """
        image = _as_2d(image)
        if self.mode == "square":
            out = area_resize(image, self.size, self.size)
            return np.ascontiguousarray(out[:, ::-1]) if flip else out
        h, w = image.shape
        scale = self.size / max(h, w)
        nh = min(self.size, max(1, round(h * scale)))
        nw = min(self.size, max(1, round(w * scale)))
        resized = area_resize(image, nh, nw)
        if flip:
            resized = resized[:, ::-1]
        out = np.zeros((self.size, self.size), dtype=np.float32)
        top = (self.size - nh) // 2
        out[top : top + nh, :nw] = resized
        return out


class ToUint16:
    """Maps [0, 1] floats to ``uint16`` (0..65535), clipping and rounding."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


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
        image = _as_2d(image)
        if self._crop is not None:
            image = self._crop(image)
        flip = (
            self._orient is not None
            and self._orient.chest_wall_side(image, laterality) != self.chest_wall
        )
        return self._quantize(self._resize(image, flip=flip))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fills holes: background regions that do not touch the border."""
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask
    border = np.unique(
        np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    )
    keep = np.zeros(count + 1, dtype=bool)
    keep[border] = True
    keep[0] = True  # label 0 is the mask itself
    return mask | ~keep[labels]


def _as_2d(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D image. Received: shape={arr.shape}")
    return arr
