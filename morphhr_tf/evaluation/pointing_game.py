"""Do saliency maps point at the lesion? The pointing game and map mass.

For each image with a known lesion mask (in the coordinates of the model
input, as the map):

- **hit**: the map's peak (:func:`peak`) lies inside the lesion, or within
  ``tolerance`` pixels (Euclidean distance) of it (Zhang et al., 2018,
  "Top-down neural attention by excitation backprop"). When several pixels
  share the maximum (the plateau a coarse map leaves after upsampling), the
  peak is the one nearest their centroid, not the first in row-major order
  (which would always sit in a plateau's top-left corner). A flat map
  (maximum equal to minimum, e.g. all zeros) points nowhere and counts as a
  miss;
- **mass fraction**: the share of the map's total inside the lesion (0 for a
  map that sums to 0);
- **random baseline**: the hit probability of a point drawn uniformly from
  the image (or from a ``region`` such as the breast), computed exactly as
  the area fraction ``|dilated lesion & region| / |region|``; a uniform map's
  mass fraction is the same number.

:func:`pointing_game` summarizes a set of images with 95% percentile
bootstrap confidence intervals over images, including the paired excess of
hits over the random baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "bootstrap_ci",
    "dilate",
    "mass_fraction",
    "peak",
    "pointing_game",
    "pointing_hit",
    "random_hit_rate",
]


def _check_pair(saliency, mask) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(saliency, np.float64)
    m = np.asarray(mask, bool)
    if s.ndim != 2 or s.shape != m.shape or s.size == 0:
        raise ValueError(
            "saliency and mask must be 2-D arrays of the same non-empty shape. "
            f"Received: saliency shape={np.shape(saliency)}, mask shape={np.shape(mask)}"
        )
    return np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0), m


def _check_tolerance(tolerance) -> float:
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(
            f"tolerance must be a finite number >= 0 (pixels). Received: "
            f"tolerance={tolerance!r}"
        )
    return float(tolerance)


def dilate(mask: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """The pixels within ``tolerance`` (Euclidean, in pixels) of ``mask``.

    Args:
        mask: 2-D boolean mask.
        tolerance: distance in pixels; 0 returns the mask itself.

    Returns:
        A boolean array of the mask's shape.

    Raises:
        ValueError: on a negative or non-finite tolerance.
    """
    tolerance = _check_tolerance(tolerance)
    mask = np.asarray(mask, bool)
    if tolerance == 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= tolerance


def peak(saliency: np.ndarray) -> tuple[int, int]:
    """The map's peak ``(row, col)``: of the maximal pixels, the one nearest
    their centroid.

    Args:
        saliency: 2-D map (non-finite values count as 0).

    Returns:
        The pixel's ``(row, col)``.

    Raises:
        ValueError: on an empty or non-2-D map.
    """
    s = np.asarray(saliency, np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(
            f"saliency must be a non-empty 2-D array. Received: shape={s.shape}"
        )
    s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    ties = np.argwhere(s == s.max())
    nearest = np.argmin(((ties - ties.mean(axis=0)) ** 2).sum(axis=1))
    return int(ties[nearest][0]), int(ties[nearest][1])


def pointing_hit(
    saliency: np.ndarray, mask: np.ndarray, *, tolerance: float = 0.0
) -> bool:
    """Whether the map's maximum lies in the lesion (within ``tolerance`` px).

    Args:
        saliency: 2-D map.
        mask: 2-D boolean lesion mask of the same shape.
        tolerance: allowed distance in pixels from the mask.

    Returns:
        True for a hit; a flat map is a miss.

    Raises:
        ValueError: on mismatched shapes or a bad tolerance.
    """
    s, m = _check_pair(saliency, mask)
    if s.max() == s.min():
        return False
    r, c = peak(s)
    return bool(dilate(m, tolerance)[r, c])


def mass_fraction(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The share of the (rectified) map's total inside ``mask``.

    Args:
        saliency: 2-D map (negative values count as 0).
        mask: 2-D boolean lesion mask of the same shape.

    Returns:
        A number in [0, 1]; 0 for a map that sums to 0.

    Raises:
        ValueError: on mismatched shapes.
    """
    s, m = _check_pair(saliency, mask)
    s = np.maximum(s, 0.0)
    total = float(s.sum())
    return float(s[m].sum() / total) if total > 0 else 0.0


def random_hit_rate(
    mask: np.ndarray, *, region: np.ndarray | None = None, tolerance: float = 0.0
) -> float:
    """Exact hit probability of a point drawn uniformly from ``region``.

    Args:
        mask: 2-D boolean lesion mask.
        region: 2-D boolean mask of where the point is drawn (default: the
            whole image), e.g. the breast.
        tolerance: as in :func:`pointing_hit`.

    Returns:
        ``|dilate(mask, tolerance) & region| / |region|``.

    Raises:
        ValueError: on mismatched shapes or an empty region.
    """
    m = np.asarray(mask, bool)
    r = np.ones_like(m) if region is None else np.asarray(region, bool)
    if m.ndim != 2 or r.shape != m.shape:
        raise ValueError(
            "mask and region must be 2-D arrays of the same shape. Received: "
            f"mask shape={np.shape(mask)}, region shape={np.shape(region)}"
        )
    if not r.any():
        raise ValueError("region is empty: no point can be drawn from it.")
    return float((dilate(m, tolerance) & r).sum() / r.sum())


def bootstrap_ci(
    values, *, n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile bootstrap interval over items.

    Args:
        values: 1-D numbers (one per image).
        n_bootstrap: resamples.
        seed: the resampling seed.
        level: the interval's coverage.

    Returns:
        ``(mean, low, high)``.

    Raises:
        ValueError: on empty values or a bad ``n_bootstrap`` or ``level``.
    """
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("values is empty: nothing to bootstrap.")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(
            f"n_bootstrap must be a positive integer. Received: {n_bootstrap!r}"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1). Received: level={level!r}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_bootstrap, v.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(v.mean()), float(low), float(high)


def pointing_game(
    maps,
    masks,
    *,
    regions=None,
    tolerance: float = 0.0,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hit rate and mass fraction of a set of maps, beside the random baseline.

    Args:
        maps: ``[N, H, W]`` saliency maps.
        masks: ``[N, H, W]`` boolean lesion masks.
        regions: optional ``[N, H, W]`` boolean masks the random point is
            drawn from (default: the whole image).
        tolerance: hit tolerance in pixels.
        n_bootstrap, seed: of the 95% bootstrap intervals over images.

    Returns:
        A dict: ``n``, ``tolerance``, ``flat_maps`` (maps that point nowhere),
        and ``[mean, low, high]`` lists for ``hit_rate``, ``mass_fraction``,
        ``random_hit_rate`` (= a uniform map's mass fraction; exact per image,
        its CI over images), ``excess_hit_rate`` (hit minus the image's
        random rate, paired) and ``excess_mass_fraction``; ``per_image``
        holds the hits, mass fractions and random rates.

    Raises:
        ValueError: on mismatched or empty inputs.
    """
    maps = np.asarray(maps)
    masks = np.asarray(masks, bool)
    if maps.ndim != 3 or maps.shape != masks.shape or len(maps) == 0:
        raise ValueError(
            "maps and masks must be [N, H, W] arrays of the same shape with N >= 1. "
            f"Received: maps shape={maps.shape}, masks shape={masks.shape}"
        )
    regions = [None] * len(maps) if regions is None else np.asarray(regions, bool)
    if regions[0] is not None and regions.shape != masks.shape:
        raise ValueError(
            f"regions must have the masks' shape {masks.shape}. "
            f"Received: regions shape={regions.shape}"
        )
    hits = np.array(
        [pointing_hit(s, m, tolerance=tolerance) for s, m in zip(maps, masks)]
    )
    mass = np.array([mass_fraction(s, m) for s, m in zip(maps, masks)])
    rand = np.array(
        [
            random_hit_rate(m, region=r, tolerance=tolerance)
            for m, r in zip(masks, regions)
        ]
    )
    rand_mass = np.array([random_hit_rate(m, region=r) for m, r in zip(masks, regions)])
    flat = int(sum(float(s.max()) == float(s.min()) for s in maps))

    def ci(values):
        return list(bootstrap_ci(values, n_bootstrap=n_bootstrap, seed=seed))

    return {
        "n": len(maps),
        "tolerance": float(tolerance),
        "flat_maps": flat,
        "hit_rate": ci(hits.astype(np.float64)),
        "mass_fraction": ci(mass),
        "random_hit_rate": ci(rand),
        "random_mass_fraction": ci(rand_mass),
        "excess_hit_rate": ci(hits - rand),
        "excess_mass_fraction": ci(mass - rand_mass),
        "per_image": {
            "hit": hits.astype(int).tolist(),
            "mass_fraction": mass.round(6).tolist(),
            "random_hit_rate": rand.round(6).tolist(),
        },
    }
