"""The fine-detail signal drawn into a full synthetic mammogram.

The same number of sub-millimetre specks in every image: one tight cluster
in an image with a malignant finding, scattered over the breast otherwise,
plus quantum-like white noise, so that resolution carries information. The
specks are drawn by :func:`morphhr_tf.synthetic.fine_detail.draw_specks`, the
renderer of the fine-detail task, at that task's physical scale.
"""

from __future__ import annotations

import numpy as np

#: Fine-detail mode: speck sigma, cluster radius (mm) and speck brightness,
#: and white noise of this standard deviation in a 0.8 mm pixel (it scales as
#: 1 / pixel side, like quantum noise), as in `morphhr_tf.synthetic.fine_detail`
#: at 256 px over the 204.8 mm field.
FINE_DETAIL_SPECK_MM = 0.48
FINE_DETAIL_CLUSTER_MM = 9.0
FINE_DETAIL_AMPLITUDE = 0.45
FINE_DETAIL_NOISE = 0.03


def add_fine_detail(
    rng: np.random.Generator, image: np.ndarray, spacing: float, *, malignant: bool
) -> None:
    """Draws the specks and the noise into ``image`` (in place, kept in [0, 1]).

    Args:
        rng: the stream of this image's fine detail.
        image: float image in [0, 1], background near 0.
        spacing: pixel spacing in mm.
        malignant: cluster the specks (else scatter them over the breast).
    """
    from scipy import ndimage

    from morphhr_tf.synthetic.fine_detail import SPECKS, draw_specks

    breast = ndimage.binary_erosion(image > 0.1, iterations=max(int(3 / spacing), 1))
    draw_specks(
        rng,
        image,
        inside=breast,
        clustered=malignant,
        n=int(rng.integers(SPECKS[0], SPECKS[1] + 1)),
        sigma=FINE_DETAIL_SPECK_MM / spacing,
        amplitude=FINE_DETAIL_AMPLITUDE,
        cluster_radius=FINE_DETAIL_CLUSTER_MM / spacing,
        center_inside=ndimage.binary_erosion(
            breast, iterations=max(int(FINE_DETAIL_CLUSTER_MM / spacing), 1)
        ),
    )
    noise = FINE_DETAIL_NOISE * 0.8 / spacing
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
    np.clip(image, 0.0, 1.0, out=image)
