"""Renders synthetic mammograms: breast, parenchyma, masses, calcifications.

Physical sizes are in millimetres, so the same findings appear at any matrix
size: only the pixel spacing changes. Intensities are in [0, 1] with bright =
dense tissue (the orientation of a MONOCHROME2 "for presentation" image).

Model, per DATASETS.md:

- a half-ellipse breast against the chest wall (left edge; flipped for a
  right breast), thinning over its last centimetre, with a skin line;
- parenchyma from power-law noise (power spectrum ``K / f**beta``, beta about
  2.8), thresholded softly into fibroglandular tissue by breast density;
- the pectoral muscle, a bright triangle at the top of the chest wall, on MLO;
- masses: smooth round/oval (benign) or irregular with spicules (malignant);
- calcifications: tight clusters of 5-20 fine, varied specks 0.1-0.5 mm
  (malignant) or a few coarse, scattered 1-2.5 mm ones (benign);
- optionally a burned-in laterality marker in a far corner.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft

BREAST_HEIGHT_MM = 204.8  # detector height the default matrix covers
ASPECT = 0.8125  # columns / rows (2048 x 1664 by default)
DENSITY_BIAS = {"1": -1.3, "2": -0.5, "3": 0.25, "4": 1.0}
# Lesion contrasts (added intensity, image in [0, 1]). Calcifications are the
# densest structures in a mammogram: fine malignant specks (0.15-0.5 mm, in
# tight clusters) are drawn at 0.5-0.8 and survive only at high resolution;
# coarse benign ones (1-2.5 mm, scattered) at 0.5 and are visible at any size.
MALIGNANT_MASS_CONTRAST = 0.3
BENIGN_MASS_CONTRAST = 0.1


@dataclasses.dataclass(frozen=True)
class Finding:
    """A lesion to draw: ``kind`` is ``mass`` or ``calcification``."""

    kind: str
    malignant: bool


@dataclasses.dataclass
class RenderedFinding:
    """Where a finding was drawn (pixel coordinates of the returned image)."""

    kind: str
    malignant: bool
    center: tuple[float, float]
    radius_px: float
    specks: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)

    def bbox(self, margin_px: float = 0.0) -> tuple[int, int, int, int]:
        """``(r0, r1, c0, c1)`` around the finding (and its specks)."""
        rs = [self.center[0]] + [s[0] for s in self.specks]
        cs = [self.center[1]] + [s[1] for s in self.specks]
        extra = self.radius_px if not self.specks else 0.0
        pad = extra + margin_px
        return (
            int(np.floor(min(rs) - pad)),
            int(np.ceil(max(rs) + pad)) + 1,
            int(np.floor(min(cs) - pad)),
            int(np.ceil(max(cs) + pad)) + 1,
        )


def matrix_for_rows(rows: int) -> tuple[int, int, float]:
    """``(rows, cols, spacing_mm)`` of a detector ``rows`` pixels tall."""
    if not isinstance(rows, int) or rows < 64:
        raise ValueError(f"rows must be an integer >= 64. Received: rows={rows!r}")
    cols = int(round(rows * ASPECT))
    return rows, cols, BREAST_HEIGHT_MM / rows


def power_law_noise(
    rng: np.random.Generator, shape: tuple[int, int], beta: float, spacing_mm: float
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise with power spectrum ``1/f**beta``."""
    h, w = shape
    fy = sfft.fftfreq(h, d=spacing_mm).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(w, d=spacing_mm).astype(np.float32)[None, :]
    f2 = fy * fy + fx * fx
    f0 = np.float32(1.0 / 60.0)  # flatten below ~1/(6 cm): no giant blobs
    amp = (f2 + f0 * f0) ** np.float32(-beta / 4.0)
    amp[0, 0] = 0.0
    spec = rng.standard_normal((h, w // 2 + 1), dtype=np.float32) + 1j * (
        rng.standard_normal((h, w // 2 + 1), dtype=np.float32)
    )
    spec *= amp
    field = sfft.irfft2(spec.astype(np.complex64), s=(h, w))
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field.astype(np.float32)


def _speck_patch(
    rng: np.random.Generator,
    diameter_px: float,
    elongation: float,
    frac_r: float,
    frac_c: float,
    supersample: int = 4,
) -> np.ndarray:
    """Pixel coverage (0..1) of a rotated ellipse, by supersampling."""
    a = diameter_px / 2.0 * np.sqrt(elongation)
    b = diameter_px / 2.0 / np.sqrt(elongation)
    half = int(np.ceil(a)) + 1
    n = 2 * half + 1
    s = supersample
    grid = (np.arange(n * s) + 0.5) / s - half - 0.5
    yy = grid[:, None] - (frac_r - 0.5)
    xx = grid[None, :] - (frac_c - 0.5)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return inside.reshape(n, s, n, s).mean(axis=(1, 3)).astype(np.float32)


def _add_patch(image: np.ndarray, patch: np.ndarray, r0: int, c0: int, amp: float):
    h, w = image.shape
    ph, pw = patch.shape
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + ph, h), min(c0 + pw, w)
    if rr1 <= rr0 or cc1 <= cc0:
        return
    image[rr0:rr1, cc0:cc1] += amp * patch[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]


class _Geometry:
    def __init__(self, rng, rows, cols, view):
        self.rows, self.cols = rows, cols
        if view == "MLO":
            self.cy = rows * rng.uniform(0.45, 0.52)
            self.a = rows * rng.uniform(0.44, 0.49)
            self.b = cols * rng.uniform(0.55, 0.7)
            self.pec_w = cols * rng.uniform(0.22, 0.35)
            self.pec_h = rows * rng.uniform(0.35, 0.55)
        else:
            self.cy = rows * rng.uniform(0.46, 0.54)
            self.a = rows * rng.uniform(0.34, 0.42)
            self.b = cols * rng.uniform(0.55, 0.75)
            self.pec_w = self.pec_h = 0.0

    def rho(self, r, c):
        return np.sqrt(((r - self.cy) / self.a) ** 2 + (c / self.b) ** 2)

    def in_pectoral(self, r, c):
        if self.pec_h <= 0:
            return False
        return c < self.pec_w * (1.0 - r / self.pec_h)

    def sample_point(self, rng, max_rho, min_c_frac=0.1):
        for _ in range(1000):
            r = rng.uniform(0, self.rows)
            c = rng.uniform(self.b * min_c_frac, self.b)
            if self.rho(r, c) < max_rho and not self.in_pectoral(r, c):
                return r, c
        return self.cy, self.b * 0.4


def render_mammogram(
    seed: int | np.random.SeedSequence,
    *,
    rows: int = 2048,
    view: str = "CC",
    laterality: str = "L",
    density: str = "2",
    findings: tuple[Finding, ...] = (),
    draw_findings: bool = True,
    marker: bool = False,
) -> tuple[np.ndarray, list[RenderedFinding], float]:
    """Renders one synthetic mammogram.

    Args:
        seed: deterministic seed; the anatomy and the findings use separate
            streams, so ``draw_findings=False`` gives the same image without
            the lesions (for measuring their contrast).
        rows: matrix height; columns are ``rows * 0.8125`` and the pixel
            spacing ``204.8 mm / rows`` (0.1 mm at the default 2048).
        view: ``CC`` or ``MLO`` (MLO adds the pectoral muscle).
        laterality: ``L`` (chest wall on the image's left) or ``R`` (right).
        density: ``1``-``4``.
        findings: the lesions to draw.
        draw_findings: set False to leave the lesions out.
        marker: burn a laterality marker into a far corner.

    Returns:
        ``(image, rendered, spacing_mm)``: float32 image in [0, 1], where
        each finding was drawn, and the pixel spacing.
    """
    if view not in ("CC", "MLO"):
        raise ValueError(f"view must be 'CC' or 'MLO'. Received: view={view!r}")
    if laterality not in ("L", "R"):
        raise ValueError(
            f"laterality must be 'L' or 'R'. Received: laterality={laterality!r}"
        )
    if density not in DENSITY_BIAS:
        raise ValueError(f"density must be one of 1-4. Received: density={density!r}")
    rows, cols, spacing = matrix_for_rows(rows)
    seq = (
        seed
        if isinstance(seed, np.random.SeedSequence)
        else np.random.SeedSequence(seed)
    )
    anatomy_seq, findings_seq, noise_seq = seq.spawn(3)
    rng = np.random.default_rng(anatomy_seq)
    geo = _Geometry(rng, rows, cols, view)

    r = np.arange(rows, dtype=np.float32)[:, None]
    c = np.arange(cols, dtype=np.float32)[None, :]
    rho = np.sqrt(((r - geo.cy) / geo.a) ** 2 + (c / geo.b) ** 2)
    inside = rho < 1.0
    edge_mm = (1.0 - rho) * (min(geo.a, geo.b) * spacing)
    thickness = np.clip(edge_mm / 12.0, 0.0, 1.0) ** 0.5

    beta = rng.uniform(2.5, 3.1)
    field = power_law_noise(rng, (rows, cols), beta, spacing)
    bias = DENSITY_BIAS[density] - 0.9 * rho * rho
    gland = 1.0 / (1.0 + np.exp(-(field + bias) / 0.7))
    image = thickness * (0.28 + 0.36 * gland + 0.03 * field)
    image += 0.12 * np.exp(-((edge_mm / 0.8) ** 2)) * inside  # skin line
    image *= inside
    if view == "MLO":
        pec = c < geo.pec_w * (1.0 - r / geo.pec_h)
        muscle = 0.74 + 0.03 * field
        image = np.where(pec & inside, muscle, image)
    image += 0.02 * (~inside)

    rendered: list[RenderedFinding] = []
    frng = np.random.default_rng(findings_seq)
    for finding in findings:
        if finding.kind == "mass":
            rendered.append(
                _draw_mass(frng, image, geo, spacing, finding, draw_findings)
            )
        elif finding.kind == "calcification":
            rendered.append(
                _draw_calcs(frng, image, geo, spacing, finding, draw_findings)
            )
        else:
            raise ValueError(
                "finding kind must be 'mass' or 'calcification'. "
                f"Received: {finding.kind!r}"
            )
    if marker:
        _draw_marker(image, laterality, spacing)
    nrng = np.random.default_rng(noise_seq)
    image += nrng.standard_normal(image.shape, dtype=np.float32) * np.float32(0.004)
    np.clip(image, 0.0, 1.0, out=image)
    if laterality == "R":
        image = np.ascontiguousarray(image[:, ::-1])
        for item in rendered:
            item.center = (item.center[0], cols - 1 - item.center[1])
            item.specks = [(sr, cols - 1 - sc, d) for sr, sc, d in item.specks]
    return image.astype(np.float32), rendered, spacing


def _draw_mass(rng, image, geo, spacing, finding, draw):
    malignant = finding.malignant
    radius_mm = rng.uniform(5.0, 12.0) if malignant else rng.uniform(3.0, 12.0)
    rp = radius_mm / spacing
    cr, cc = geo.sample_point(rng, 0.6, min_c_frac=0.2)
    reach = rp * (3.6 if malignant else 1.6)
    r0, r1 = int(max(cr - reach, 0)), int(min(cr + reach, image.shape[0]))
    c0, c1 = int(max(cc - reach, 0)), int(min(cc + reach, image.shape[1]))
    yy = np.arange(r0, r1, dtype=np.float32)[:, None] - cr
    xx = np.arange(c0, c1, dtype=np.float32)[None, :] - cc
    theta = np.arctan2(yy, xx)
    dist = np.sqrt(yy * yy + xx * xx)
    if malignant:
        boundary = np.ones_like(theta)
        for k in range(2, 8):
            boundary += rng.uniform(0.03, 0.09) * np.cos(
                k * theta + rng.uniform(0, 6.3)
            )
        edge = max(0.25 / spacing, 0.6)
        body = 1.0 / (1.0 + np.exp(np.clip((dist - rp * boundary) / edge, -50, 50)))
        spic = np.zeros_like(body)
        for _ in range(int(rng.integers(8, 17))):
            angle = rng.uniform(0, 2 * np.pi)
            length = rp * rng.uniform(1.0, 2.5)
            width = max(rng.uniform(0.3, 0.8) / spacing, 0.7)
            ux, uy = np.cos(angle), np.sin(angle)
            along = xx * ux + yy * uy
            across = np.abs(-xx * uy + yy * ux)
            t = np.clip((along - 0.6 * rp) / length, 0.0, 1.0)
            on = (along > 0.6 * rp) & (along < 0.6 * rp + length)
            taper = width * (1.0 - t)
            spic = np.maximum(
                spic,
                on * np.clip(1.0 - across / np.maximum(taper, 0.3), 0, 1) * (1 - t),
            )
        # High density and spiculated: the two classic signs of malignancy.
        patch = MALIGNANT_MASS_CONTRAST * body + 0.2 * spic * (1 - body)
    else:
        aspect = rng.uniform(0.7, 1.0)
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        d = np.sqrt((u / rp) ** 2 + (v / (rp * aspect)) ** 2)
        edge = max(0.8 / spacing, 0.8) / rp
        # Circumscribed and about iso-dense with the surrounding tissue.
        patch = BENIGN_MASS_CONTRAST / (
            1.0 + np.exp(np.clip((d - 1.0) / edge, -50, 50))
        )
    if draw:
        image[r0:r1, c0:c1] += patch.astype(np.float32)
    return RenderedFinding("mass", malignant, (cr, cc), rp)


def _draw_calcs(rng, image, geo, spacing, finding, draw):
    specks = []
    if finding.malignant:
        cr, cc = geo.sample_point(rng, 0.6, min_c_frac=0.2)
        cluster_mm = rng.uniform(3.0, 8.0)
        n = int(rng.integers(12, 31))
        for _ in range(n):
            rad = cluster_mm * np.sqrt(rng.uniform(0, 1))
            ang = rng.uniform(0, 2 * np.pi)
            specks.append(
                (
                    cr + rad * np.sin(ang) / spacing,
                    cc + rad * np.cos(ang) / spacing,
                    rng.uniform(0.15, 0.5) / spacing,
                    rng.uniform(1.0, 3.0),
                    rng.uniform(0.5, 0.8),
                )
            )
        radius = cluster_mm / spacing
    else:
        cr, cc = geo.sample_point(rng, 0.8)
        n = int(rng.integers(2, 7))
        for _ in range(n):
            sr, sc = geo.sample_point(rng, 0.85)
            specks.append(
                (sr, sc, rng.uniform(1.0, 2.5) / spacing, rng.uniform(1.0, 1.4), 0.5)
            )
        radius = 2.5 / spacing
    for sr, sc, diam, elong, amp in specks:
        ir, ic = int(np.floor(sr)), int(np.floor(sc))
        patch = _speck_patch(rng, diam, elong, sr - ir, sc - ic)
        half = patch.shape[0] // 2
        if draw:
            _add_patch(image, patch, ir - half, ic - half, amp)
    return RenderedFinding(
        "calcification",
        finding.malignant,
        (cr, cc),
        radius,
        [(sr, sc, d) for sr, sc, d, _, _ in specks],
    )


def _draw_marker(image, laterality, spacing):
    """A bright blocky letter in the top corner away from the chest wall.

    Drawn before the final flip, so with the chest wall on the left the
    marker goes top right.
    """
    h, w = image.shape
    size = max(int(12.0 / spacing), 6)
    stroke = max(size // 5, 1)
    r0 = max(int(8.0 / spacing), 1)
    c0 = w - r0 - size
    if c0 < 0 or r0 + size > h:
        return
    image[r0 : r0 + size, c0 : c0 + size] = 0.12
    image[r0 : r0 + size, c0 : c0 + stroke] = 0.95
    image[r0 + size - stroke : r0 + size, c0 : c0 + size] = 0.95
    if laterality == "R":
        image[r0 : r0 + stroke, c0 : c0 + size] = 0.95
