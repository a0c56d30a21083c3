"""Saliency maps written to disk: an overlay PNG and the raw ``.npy`` per image.

:func:`write_heatmaps` is what a ``--heatmaps DIR`` option of the predict CLI
calls after :func:`morphhr_tf.evaluation.saliency.grad_cam` or
:func:`~morphhr_tf.evaluation.saliency.gradient_x_input`: for image ``name``
it writes ``DIR/name.png`` (the grey image, the map in a colour map on top,
a colour bar, the map's peak as a white cross, optionally a lesion
outline) and ``DIR/name.npy`` (the float32
map as computed, at the input resolution).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from morphhr_tf.evaluation.pointing_game import peak  # noqa: E402

__all__ = ["write_heatmaps"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def write_heatmaps(
    maps: np.ndarray,
    images: np.ndarray,
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    outlines: np.ndarray | None = None,
    titles: Sequence[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.45,
) -> list[str]:
    """Writes one overlay PNG and one ``.npy`` map per image.

    Args:
        maps: ``[N, H, W]`` saliency maps in [0, 1].
        images: ``[N, H, W]`` or ``[N, H, W, 1]`` grey images (any range; shown
            between their own minimum and maximum).
        names: ``N`` file stems: letters, digits, ``.``, ``_``, ``-`` (no
            path separators), unique.
        out_dir: output folder (created).
        outlines: optional ``[N, H, W]`` boolean masks drawn as a white
            contour (e.g. the lesion).
        titles: optional ``N`` titles (default: the names).
        cmap: a matplotlib colour map for the saliency.
        alpha: opacity of the saliency over the image, in [0, 1].

    Returns:
        The paths written, PNG then ``.npy`` for each image.

    Raises:
        ValueError: on mismatched shapes, unsafe or duplicate names, or a bad
            ``alpha``.
    """
    maps = np.asarray(maps, np.float32)
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    names = list(names)
    if maps.ndim != 3 or images.shape != maps.shape or len(names) != len(maps):
        raise ValueError(
            "maps and images must be [N, H, W] of the same shape with N names. "
            f"Received: maps shape={maps.shape}, images shape={images.shape}, "
            f"{len(names)} names"
        )
    bad = [n for n in names if not isinstance(n, str) or not _SAFE_NAME.match(n)]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            "names must be unique file stems of letters, digits, '.', '_' and '-'. "
            f"Received: {bad[:3] or names[:3]}"
        )
    if outlines is not None and np.shape(outlines) != maps.shape:
        raise ValueError(
            f"outlines must have the maps' shape {maps.shape}. "
            f"Received: {np.shape(outlines)}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]. Received: alpha={alpha!r}")
    titles = names if titles is None else list(titles)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i, name in enumerate(names):
        png = os.path.join(out_dir, f"{name}.png")
        npy = os.path.join(out_dir, f"{name}.npy")
        outline = None if outlines is None else np.asarray(outlines[i], bool)
        _draw(images[i], maps[i], outline, titles[i], png, cmap, alpha)
        np.save(npy, maps[i])
        written += [png, npy]
    return written


def _draw(image, saliency, outline, title, path, cmap, alpha) -> None:
    """One overlay figure: grey image, saliency, colour bar, outline."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(image, cmap="gray", interpolation="nearest")
    shown = ax.imshow(
        np.nan_to_num(saliency), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0,
        interpolation="nearest",
    )  # fmt: skip
    if outline is not None and outline.any():
        ax.contour(
            outline.astype(np.float32), levels=[0.5], colors="white", linewidths=1
        )
    if saliency.max() > saliency.min():  # a flat map points nowhere
        row, col = peak(saliency)
        ax.plot(col, row, marker="+", color="white", markersize=10, mew=2)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="saliency")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
