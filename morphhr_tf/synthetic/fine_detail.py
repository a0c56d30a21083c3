"""A fine-detail task: the label is visible at high resolution only.

Every image is a breast-shaped region of power-law tissue texture (the
``1/f**beta`` spectrum of mammographic parenchyma) with quantum-like white
noise, and the same number of bright, about one-pixel specks
(calcification-like). In a **positive** image the specks form one tight
cluster; in a **negative** image they are scattered over the breast. Mean
brightness and the speck count carry no information; only the *spatial
arrangement of one-pixel structures* does. At the full resolution (``size``)
a few lines of numpy find the cluster (:func:`oracle_scores`); after ``k x k``
area averaging (``size / k``, e.g. k = 4) each speck sinks into the noise and
the same detector is near chance. That contrast is what makes any gain from
resolution interpretable; `benchmarks/fine_detail_oracle.py` prints it.

The ground truth of where each speck was drawn is returned beside the images
(never inside them) as ``(row, col)`` centres and a cluster box.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

#: Specks per image, drawn uniformly from this range, the same in both classes.
SPECKS = (10, 14)


@dataclasses.dataclass(frozen=True)
class FineDetailConfig:
    """Knobs of the fine-detail task, in units of the full-resolution pixel.

    Attributes:
        size: side of the square full-resolution image.
        speck_sigma: Gaussian sigma of a speck (pixels at ``size``).
        speck_amplitude: peak brightness added by a speck.
        noise_std: white-noise standard deviation per full-resolution pixel.
        tissue_std: standard deviation of the power-law tissue texture.
        cluster_radius: cluster radius as a fraction of ``size``.
        beta: spectral exponent of the tissue texture.
    """

    size: int = 256
    speck_sigma: float = 0.6
    speck_amplitude: float = 0.3
    noise_std: float = 0.03
    tissue_std: float = 0.1
    cluster_radius: float = 0.045
    beta: float = 3.0

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 32:
            raise ValueError(
                f"size must be an integer >= 32. Received: size={self.size!r}"
            )
        for name in ("speck_sigma", "speck_amplitude", "cluster_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name} must be > 0. Received: {name}={getattr(self, name)!r}"
                )


def _power_law(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    f = np.fft.fftfreq(size).astype(np.float32)
    f2 = f[:, None] ** 2 + np.fft.rfftfreq(size).astype(np.float32)[None, :] ** 2
    amp = (f2 + (1.0 / size) ** 2) ** np.float32(-beta / 4.0)
    amp[0, 0] = 0.0
    spec = rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
    field = np.fft.irfft2(spec * amp, s=(size, size)).astype(np.float32)
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


def _breast(rng: np.random.Generator, size: int):
    r = np.arange(size, dtype=np.float32)[:, None]
    c = np.arange(size, dtype=np.float32)[None, :]
    cy = size * rng.uniform(0.45, 0.55)
    a, b = size * rng.uniform(0.42, 0.48), size * rng.uniform(0.75, 0.9)
    rho = np.sqrt(((r - cy) / a) ** 2 + (c / b) ** 2)
    return rho, (cy, a, b)


def _frame(h: int, w: int, margin: int = 2) -> np.ndarray:
    keep = np.zeros((h, w), bool)
    keep[margin : h - margin, margin : w - margin] = True
    return keep


def _in_frame(point, shape, margin: float = 2.0) -> bool:
    return all(margin <= v < side - margin for v, side in zip(point, shape))


def draw_specks(
    rng: np.random.Generator,
    image: np.ndarray,
    *,
    inside: np.ndarray,
    clustered: bool,
    n: int,
    sigma: float,
    amplitude: float,
    cluster_radius: float,
    center_inside: np.ndarray | None = None,
) -> np.ndarray:
    """Adds ``n`` Gaussian specks to `image` in place; returns their centres.

    Args:
        rng: the random stream.
        image: float ``(H, W)`` image, changed in place.
        inside: boolean ``(H, W)`` mask of where specks may fall.
        clustered: one tight cluster (normal offsets of sd
            ``cluster_radius / 2``, cut at ``cluster_radius``) or scattered
            uniformly over `inside`.
        n: number of specks.
        sigma: Gaussian sigma of a speck, in pixels.
        amplitude: peak brightness of a speck (each drawn 0.8-1.2 times it).
        cluster_radius: in pixels.
        center_inside: where a cluster centre may fall (default `inside`).

    Returns:
        ``(n, 2)`` float32 speck centres (row, col).
    """
    h, w = image.shape
    candidates = np.argwhere(inside & _frame(h, w))
    centers = np.argwhere(
        (inside if center_inside is None else center_inside) & _frame(h, w, 8)
    )
    if not len(candidates) or not len(centers):
        raise ValueError("the mask leaves no room for specks")
    points = []
    if clustered:
        cr, cc = centers[rng.integers(len(centers))] + 0.5
        while len(points) < n:
            dr, dc = rng.normal(0.0, cluster_radius / 2.0, 2)
            p = (cr + dr, cc + dc)
            if dr * dr + dc * dc <= cluster_radius**2 and _in_frame(p, (h, w)):
                points.append(p)
    else:
        picks = candidates[rng.integers(len(candidates), size=n)]
        points = [tuple(v) for v in picks + rng.uniform(0, 1, (n, 2))]
    points = np.asarray(points, np.float32)
    half = int(np.ceil(3 * sigma)) + 1
    for pr, pc in points:
        r0, c0 = int(pr) - half, int(pc) - half
        rr = np.arange(r0, r0 + 2 * half + 1)[:, None]
        cc = np.arange(c0, c0 + 2 * half + 1)[None, :]
        amp = amplitude * rng.uniform(0.8, 1.2)
        patch = amp * np.exp(
            -((rr + 0.5 - pr) ** 2 + (cc + 0.5 - pc) ** 2) / (2 * sigma**2)
        )
        rs = slice(max(r0, 0), min(r0 + 2 * half + 1, h))
        cs = slice(max(c0, 0), min(c0 + 2 * half + 1, w))
        image[rs, cs] += patch[
            rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0
        ]
    return points


def render(seed, label: int, config: FineDetailConfig = FineDetailConfig()):
    """Renders one image.

    Args:
        seed: an int or `np.random.SeedSequence`.
        label: 1 (clustered specks) or 0 (scattered specks).
        config: the task's knobs.

    Returns:
        ``(image, specks, box)``: float32 ``(size, size)`` in [0, 1]; the
        ``(n, 2)`` float array of speck centres (row, col); the cluster box
        ``(r0, c0, r1, c1)`` for a positive image, else ``None``.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1. Received: label={label!r}")
    rng = np.random.default_rng(seed)
    size = config.size
    rho, _ = _breast(rng, size)
    inside = rho < 1.0
    tissue = _power_law(rng, size, config.beta)
    image = (0.45 + config.tissue_std * tissue) * inside + 0.02
    image += rng.standard_normal((size, size)).astype(np.float32) * config.noise_std

    points = draw_specks(
        rng,
        image,
        inside=rho < 0.9,
        clustered=bool(label),
        n=int(rng.integers(SPECKS[0], SPECKS[1] + 1)),
        sigma=config.speck_sigma,
        amplitude=config.speck_amplitude,
        cluster_radius=config.cluster_radius * size,
        center_inside=rho < 0.75,
    )
    half = int(np.ceil(3 * config.speck_sigma)) + 1
    box = None
    if label:
        lo, hi = points.min(0) - half, points.max(0) + half
        box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    return np.clip(image, 0.0, 1.0).astype(np.float32), points, box


def make_dataset(
    num_images: int,
    *,
    seed: int = 0,
    config: FineDetailConfig = FineDetailConfig(),
    positive_fraction: float = 0.5,
):
    """Renders ``num_images`` images with balanced-ish labels.

    Returns:
        ``(images, labels, boxes)``: float32 ``(n, size, size)``, int
        ``(n,)`` and a list of cluster boxes (``None`` for negatives).
    """
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(
            f"num_images must be a positive integer. Received: {num_images!r}"
        )
    children = np.random.SeedSequence(seed).spawn(num_images + 1)
    labels = (
        np.random.default_rng(children[-1]).random(num_images) < positive_fraction
    ).astype(np.int64)
    images = np.empty((num_images, config.size, config.size), np.float32)
    boxes = []
    for i in range(num_images):
        images[i], _, box = render(children[i], int(labels[i]), config)
        boxes.append(box)
    return images, labels, boxes


def area_downsample(images: np.ndarray, k: int) -> np.ndarray:
    """``k x k`` area averaging of ``(n, H, W)`` images (H, W multiples of k)."""
    n, h, w = images.shape
    if h % k or w % k:
        raise ValueError(f"image sides {h}x{w} are not multiples of k={k}")
    return images.reshape(n, h // k, k, w // k, k).mean(axis=(2, 4))


def oracle_scores(
    images: np.ndarray, *, cluster_diameter: float, threshold: float = 4.0
) -> np.ndarray:
    """A non-learned cluster detector: the most specks found in one window.

    High-pass each image (minus a Gaussian blur of sigma 2 px), estimate the
    noise by the median absolute deviation, mark local maxima above
    ``threshold`` sigmas, and score the image by the largest number of marks
    inside any ``cluster_diameter`` x ``cluster_diameter`` window (in pixels
    of the given images).
    """
    window = max(int(round(cluster_diameter)), 1)
    scores = np.empty(len(images), np.float64)
    for i, image in enumerate(images):
        smooth = ndimage.gaussian_filter(image, 2.0)
        hp = image - smooth
        # Skin line and background: keep only pixels well inside the breast.
        breast = ndimage.binary_erosion(smooth > 0.2, iterations=4)
        inner = hp[breast] if breast.any() else hp.ravel()
        sigma = 1.4826 * np.median(np.abs(inner - np.median(inner))) + 1e-12
        peaks = (hp > threshold * sigma) & (hp == ndimage.maximum_filter(hp, 3))
        peaks &= breast
        counts = ndimage.uniform_filter(peaks.astype(np.float32), window) * window**2
        scores[i] = counts.max()
    return scores
