"""Renders synthetic frontal chest radiographs with the 14 ChestX-ray14 findings.

Bright = dense, as the NIH PNGs display: the air around the body and in the
lungs is dark; the mediastinum, heart, bones and the abdomen below the
diaphragm are bright. The patient's right is on the image's left (the
radiological convention). Lengths are fractions of the image side, so an image
looks the same at any ``size``; only the pixel count changes.

Anatomy: the torso and neck, two lung fields (ellipses cut by the diaphragm
domes, the right dome higher) with vascular markings from power-law noise,
denser near the hila; the heart (an ellipse reaching further to the patient's
left), the mediastinum and spine, posterior ribs, clavicles, and noise. An AP
view magnifies the heart (1.12 x), shortens the lungs (a poorer inspiration)
and raises the clavicles.

Findings, by scale: Cardiomegaly (the heart enlarged 1.3-1.5 x: a
cardiothoracic ratio above 0.5), Effusion (fluid in a costophrenic angle with a
meniscus, one or both sides), Edema (bilateral perihilar haze and Kerley B
lines) and Emphysema (larger, darker lungs with sparse markings and a flat
diaphragm) are large; Infiltration (patchy, ill-defined), Pneumonia,
Consolidation (dense, homogeneous), Atelectasis (a plate-like band),
Pneumothorax (an apical rim without markings behind a pleural line), Fibrosis
(a basal, peripheral reticular net), Pleural_Thickening (an apical cap) and
Hernia (a retrocardiac sac with an air-fluid level) are medium; Mass (radius
2.5-5 % of the side) and Nodule (0.6-1.4 %: a few pixels at 256) are small.

Each drawn finding reports a box ``(x, y, w, h)`` in pixels (x = column,
y = row): the pixels where the finding's own region reaches a quarter of its peak (the
whole heart for Cardiomegaly, both lungs for Emphysema). The boxes are kept
beside the image, never drawn into it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from morphhr_tf.data.adapters.chestxray14 import FINDINGS
from morphhr_tf.synthetic.render import power_law_noise

VIEWS = ("PA", "AP")
MIN_SIZE = 64
CHEST_WIDTH_MM = 430.0  # detector width the image covers (power-law scale)
AP_MAGNIFICATION = 1.12  # heart magnification of an AP (front-to-back) view


@dataclasses.dataclass(frozen=True)
class DrawnFinding:
    """Where a finding was drawn: ``bbox`` is ``(x, y, w, h)`` in pixels."""

    finding: str
    bbox: tuple[float, float, float, float]


def _sigmoid(z):
    return (0.5 + 0.5 * np.tanh(0.5 * z)).astype(np.float32)


class _Chest:
    """Grids (in fractions of the side), geometry and the image being drawn."""

    def __init__(self, rng, size, view, findings):
        self.size = size
        self.y = (np.arange(size, dtype=np.float32)[:, None] + 0.5) / size
        self.x = (np.arange(size, dtype=np.float32)[None, :] + 0.5) / size
        self.edge = max(0.8 / size, 0.003)
        self.ap = ap = view == "AP"
        emphysema = "Emphysema" in findings
        self.cx = rng.uniform(0.48, 0.52)
        self.top = rng.uniform(0.1, 0.15) + (0.03 if ap else 0.0)
        height = rng.uniform(0.58, 0.64) * (0.93 if ap else 1.0)
        height *= 1.08 if emphysema else 1.0
        step = rng.uniform(0.015, 0.035)  # the right dome sits higher
        self.dome = (self.top + height, self.top + height + step)
        self.dome_depth = rng.uniform(0.05, 0.08) * (0.3 if emphysema else 1.0)
        self.lung_w = rng.uniform(0.14, 0.17) * (1.05 if emphysema else 1.0)
        self.gap = rng.uniform(0.045, 0.06)  # half the mediastinum's width
        self.lateral = (-1.0, 1.0)  # image direction of each lung's outer wall
        self.lung_x = tuple(self.cx + s * (self.gap + self.lung_w) for s in (-1, 1))
        mag = AP_MAGNIFICATION if ap else 1.0
        grow = rng.uniform(1.3, 1.5)
        grow = grow if "Cardiomegaly" in findings else 1.0
        hry = rng.uniform(0.1, 0.12) * mag * (1.0 + 0.4 * (grow - 1.0))
        self.heart_c = (self.cx + 0.035, self.dome[1] - 0.8 * hry)
        self.heart_r = (rng.uniform(0.15, 0.17) * mag * grow, hry)
        self.heart = self.ellipse(*self.heart_c, *self.heart_r)
        self.lungs = [self.lung(side) for side in (0, 1)]
        self.image = np.zeros((size, size), np.float32)
        self.markings = np.zeros((size, size), np.float32)

    def ellipse(self, cx, cy, rx, ry, angle=0.0, soft=None):
        """A smooth ellipse mask in [0, 1] with an edge ``soft`` wide."""
        dx, dy = self.x - cx, self.y - cy
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        return _sigmoid((1.0 - r) * min(rx, ry) / (soft or self.edge))

    def band(self, p0, p1, width):
        """A Gaussian band of half-width ``width`` along the segment p0-p1."""
        (x0, y0), (x1, y1) = p0, p1
        vx, vy = x1 - x0, y1 - y0
        t = ((self.x - x0) * vx + (self.y - y0) * vy) / max(vx * vx + vy * vy, 1e-9)
        t = np.clip(t, 0.0, 1.0)
        d2 = (self.x - x0 - t * vx) ** 2 + (self.y - y0 - t * vy) ** 2
        return np.exp(-d2 / (width * width)).astype(np.float32)

    def lung(self, side, shrink=0.0):
        """Lung ``side`` (0: patient's right), ``shrink`` narrower all round."""
        half_h = (self.dome[side] + self.dome_depth + 0.03 - self.top) / 2.0
        cx = self.lung_x[side] - self.lateral[side] * shrink * 0.5
        cy = self.top + half_h + shrink * 0.5
        mask = self.ellipse(cx, cy, self.lung_w - shrink, half_h - shrink)
        reach = (self.x - self.lung_x[side]) / self.lung_w
        floor = self.dome[side] + self.dome_depth * reach**2 - shrink * 0.3
        return mask * _sigmoid((floor - self.y) / self.edge)

    def point_in_lung(self, rng, side=None, zone=(0.0, 1.0)):
        """``(side, x, y)``: a random point well inside a lung, in ``zone``
        (fractions of the apex-to-dome height)."""
        side = int(rng.integers(2)) if side is None else side
        span = self.dome[side] - self.top
        rows = (self.y >= self.top + zone[0] * span) & (
            self.y <= self.top + zone[1] * span
        )
        ok = np.flatnonzero((self.lungs[side] > 0.9) & (self.heart < 0.3) & rows)
        if ok.size == 0:
            return side, self.lung_x[side], self.top + 0.5 * span
        r, c = divmod(int(ok[rng.integers(ok.size)]), self.size)
        return side, self.x[0, c], self.y[r, 0]


def render_chest(
    seed: int | np.random.SeedSequence,
    *,
    size: int = 256,
    view: str = "PA",
    findings: tuple[str, ...] = (),
) -> tuple[np.ndarray, list[DrawnFinding]]:
    """Renders one synthetic frontal chest radiograph.

    Args:
        seed: deterministic seed; the anatomy, the findings and the noise use
            separate streams.
        size: the side of the square image in pixels (at least 64).
        view: ``PA`` or ``AP``.
        findings: names from :data:`FINDINGS` to draw.

    Returns:
        ``(image, drawn)``: a float32 ``size x size`` image in [0, 1] (bright =
        dense) and a :class:`DrawnFinding` per drawn region (two for a
        bilateral effusion), in :data:`FINDINGS` order.

    Raises:
        ValueError: for invalid arguments.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE}. Received: {size!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}. Received: view={view!r}")
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown:
        raise ValueError(f"findings must be among FINDINGS. Received: {unknown}")
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    anatomy_seq, findings_seq, noise_seq = seed.spawn(3)
    arng = np.random.default_rng(anatomy_seq)
    chest = _Chest(arng, size, view, set(findings))
    _draw_anatomy(arng, chest)
    frng = np.random.default_rng(findings_seq)
    drawn = []
    for name in FINDINGS:
        if name in findings:
            for region in _DRAW[name](frng, chest):
                box = _bbox(region)
                if box is not None:
                    drawn.append(DrawnFinding(name, box))
    nrng = np.random.default_rng(noise_seq)
    image = chest.image + nrng.standard_normal(chest.image.shape, np.float32) * 0.012
    image = np.clip(image, 0.0, 1.0) ** np.float32(nrng.uniform(0.85, 1.15))
    return image.astype(np.float32), drawn


def _draw_anatomy(rng, c):
    """Body, lungs with markings, heart, mediastinum, spine, ribs, clavicles."""
    x, y, size = c.x, c.y, c.size
    neck = _sigmoid((c.top - 0.02 - y) / 0.03)
    half_w = 0.45 - 0.32 * neck
    body = _sigmoid((half_w - np.abs(x - c.cx)) / (3 * c.edge))
    lungs = c.lungs[0] + c.lungs[1]
    field = power_law_noise(rng, (size, size), 3.0, CHEST_WIDTH_MM / size)
    hila = sum(
        np.exp(-((x - hx) ** 2 + (y - c.heart_c[1] + 0.12) ** 2) / 0.03)
        for hx in (c.cx - 0.09, c.cx + 0.09)
    )
    c.markings = (0.05 * field * (0.4 + 0.6 * hila)).astype(np.float32)
    mediastinum = _sigmoid((c.gap - np.abs(x - c.cx)) / c.edge) * _sigmoid(
        (c.dome[0] - y) / 0.02
    )
    spine = _sigmoid((0.028 - np.abs(x - c.cx)) / c.edge) * (
        0.7 + 0.3 * np.cos(2 * np.pi * y / 0.035)
    )
    spacing = (c.dome[0] - c.top) / 9.0
    phase = (y - c.top + 0.02 - 2.0 * (np.abs(x - c.cx) - 0.08) ** 2) / spacing
    thorax = c.ellipse(c.cx, (c.top + c.dome[1]) / 2 + 0.02, 0.42, 0.4, soft=0.02)
    ribs = _sigmoid((np.cos(2 * np.pi * phase) - 0.55) / 0.12) * thorax
    ribs *= (phase > 0) & (phase < 10)
    lift = 0.04 if c.ap else 0.0  # AP: the clavicles project higher
    clavicles = sum(
        c.band(
            (c.cx + s * 0.04, c.top + 0.03 - lift),
            (c.cx + s * 0.3, c.top - lift),
            0.012,
        )
        for s in (-1, 1)
    )
    image = 0.04 + 0.58 * body
    image -= 0.36 * lungs * (1.0 - 0.5 * c.heart)
    image += 0.22 * c.heart * (1.0 - 0.7 * mediastinum)
    image += 0.12 * mediastinum + 0.04 * spine
    image += 0.07 * ribs + 0.1 * clavicles + lungs * c.markings
    c.image = image.astype(np.float32)


def _bbox(region):
    """``(x, y, w, h)`` of the pixels at a quarter of the region's peak, or None."""
    peak = float(region.max())
    if not peak > 0.0:
        return None
    mask = region >= 0.25 * peak
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    )


def _opacity(rng, c, radius, contrast, patchy, soft, zone=(0.0, 1.0)):
    """A rounded air-space opacity in one lung; ``patchy`` in [0, 1] mottles it."""
    side, px, py = c.point_in_lung(rng, zone=zone)
    r = rng.uniform(*radius)
    blob = c.ellipse(
        px, py, r, r * rng.uniform(0.7, 1.3), rng.uniform(0, np.pi), soft=r * soft
    )
    texture = power_law_noise(rng, c.image.shape, 2.2, CHEST_WIDTH_MM / c.size)
    region = blob * c.lungs[side] * (1.0 - patchy + patchy * _sigmoid(texture / 0.4))
    c.image += contrast * region
    return [region]


def _atelectasis(rng, c):
    side, px, py = c.point_in_lung(rng, zone=(0.45, 0.9))
    half, angle = rng.uniform(0.05, 0.09), rng.uniform(-0.35, 0.35)
    dx, dy = half * np.cos(angle), half * np.sin(angle)
    region = c.band((px - dx, py - dy), (px + dx, py + dy), rng.uniform(0.01, 0.022))
    region *= c.lungs[side]
    c.image += 0.22 * region
    return [region]


def _cardiomegaly(rng, c):
    return [c.heart]  # enlarged when the anatomy was drawn


def _effusion(rng, c):
    sides = (0, 1) if rng.uniform() < 0.3 else (int(rng.integers(2)),)
    regions = []
    for side in sides:
        depth = rng.uniform(0.1, 0.2)  # fluid height at the lateral wall
        outward = (c.x - c.lung_x[side]) * c.lateral[side] / c.lung_w
        level = c.dome[side] + c.dome_depth - depth * (0.6 + 0.4 * outward)
        fluid = c.lungs[side] * _sigmoid((c.y - level) / (3 * c.edge))
        c.image += 0.3 * fluid
        regions.append(fluid)
    return regions


def _infiltration(rng, c):
    return _opacity(rng, c, (0.07, 0.12), 0.14, 0.8, 0.45)


def _mass(rng, c):
    _, px, py = c.point_in_lung(rng, zone=(0.1, 0.85))
    dx, dy = c.x - px, c.y - py
    theta = np.arctan2(dy, dx)
    wobble = 1.0 + sum(
        rng.uniform(0.03, 0.08) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        for k in (2, 3, 5)
    )
    boundary = rng.uniform(0.025, 0.05) * wobble
    region = _sigmoid((boundary - np.sqrt(dx * dx + dy * dy)) / (1.5 * c.edge))
    c.image += 0.24 * region
    return [region]


def _nodule(rng, c):
    _, px, py = c.point_in_lung(rng, zone=(0.05, 0.85))
    r = max(rng.uniform(0.006, 0.014), 1.2 / c.size)
    region = c.ellipse(px, py, r, r, soft=0.7 * c.edge)
    c.image += 0.25 * region
    return [region]


def _pneumonia(rng, c):
    return _opacity(rng, c, (0.08, 0.12), 0.2, 0.5, 0.3)


def _pneumothorax(rng, c):
    side = int(rng.integers(2))
    rim = rng.uniform(0.03, 0.07)
    collapsed = c.lung(side, shrink=rim)
    upper = _sigmoid((c.top + 0.55 * (c.dome[side] - c.top) - c.y) / 0.02)
    region = c.lungs[side] * (1.0 - collapsed) * upper
    c.image -= region * (c.markings + 0.05)  # no markings, more air
    line = collapsed * (1.0 - collapsed) * 4.0 * upper * c.lungs[side]
    c.image += 0.1 * line  # the visceral pleural line
    return [region]


def _consolidation(rng, c):
    return _opacity(rng, c, (0.06, 0.1), 0.26, 0.15, 0.12, zone=(0.3, 1.0))


def _edema(rng, c):
    haze = sum(
        np.exp(-((c.x - hx) ** 2 + (c.y - c.heart_c[1] + 0.1) ** 2) / 0.02)
        for hx in (c.cx - c.gap - 0.06, c.cx + c.gap + 0.06)
    )
    region = haze * (c.lungs[0] + c.lungs[1])
    for side in (0, 1):  # Kerley B lines: short horizontal lines at the bases
        wall = c.lung_x[side] + c.lateral[side] * (c.lung_w - 0.02)
        for k in range(int(rng.integers(3, 6))):
            yk = c.dome[side] - 0.02 - 0.015 * k
            line = c.band((wall, yk), (wall - c.lateral[side] * 0.03, yk), 0.003)
            region += 0.5 * line * c.lungs[side]
    c.image += 0.16 * region
    return [region]


def _emphysema(rng, c):
    lungs = c.lungs[0] + c.lungs[1]  # enlarged, with a flat diaphragm
    c.image -= lungs * (0.06 + 0.6 * c.markings)
    return [lungs]


def _fibrosis(rng, c):
    fine = power_law_noise(rng, c.image.shape, 1.5, CHEST_WIDTH_MM / c.size)
    net = np.exp(-((fine / 0.3) ** 2))
    lungs = c.lungs[0] + c.lungs[1]
    basal = _sigmoid((c.y - (c.top + c.dome[0]) / 2) / 0.06)
    peripheral = _sigmoid((np.abs(c.x - c.cx) - c.gap - 0.6 * c.lung_w) / 0.04)
    region = lungs * basal * peripheral
    c.image += 0.12 * net * region
    return [region]


def _pleural_thickening(rng, c):
    side = int(rng.integers(2))
    inner = c.lung(side, shrink=rng.uniform(0.012, 0.025))
    apex = _sigmoid((c.top + 0.3 * (c.dome[side] - c.top) - c.y) / 0.03)
    region = c.lungs[side] * (1.0 - inner) * apex
    c.image += 0.22 * region
    return [region]


def _hernia(rng, c):
    r = rng.uniform(0.035, 0.055)
    hx, hy = c.cx + 0.03, c.dome[0] - 0.6 * r
    sac = c.ellipse(hx, hy, r * rng.uniform(1.0, 1.3), r)
    air = sac * _sigmoid((hy - 0.2 * r - c.y) / c.edge)  # the air-fluid level
    c.image += 0.14 * (sac - air) - 0.12 * air
    return [sac]


_DRAW = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}
