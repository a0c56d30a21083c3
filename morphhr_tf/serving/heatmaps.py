"""The predict CLI's ``--heatmaps DIR``: a saliency overlay and map per image.

For every image it scores, :class:`HeatmapWriter` calls the SavedModel's
``explain_png`` signature (:mod:`morphhr_tf.serving.explain`) on the same
PNG, smooths and scales the map to [0, 1] (:func:`~morphhr_tf.serving.
explain.finish_maps`) and writes ``DIR/<row>.png`` (the image at the model's
resolution with the map in colour, a colour bar and the map's peak) and
``DIR/<row>.npy`` (the map) with :func:`morphhr_tf.evaluation.overlays.
write_heatmaps`. Files are named by the row's index in the CSV (``00000``,
``00001``, ...), never by the input's file name, which may carry a patient
identifier; the CSV's ``heatmap`` column gives each row's file.

The map explains output column 0 of a binary model; for a multi-label model
the ``label`` given, else each image's most probable label (the CSV's
``heatmap_label`` column says which).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from morphhr_tf.data.image_ops import decode_and_resize
from morphhr_tf.serving.explain import CLASS_INPUT, EXPLAIN_PNG, SALIENCY, finish_maps
from morphhr_tf.serving.input_checks import PNG_INPUT

HEATMAP = "heatmap"
HEATMAP_LABEL = "heatmap_label"


class HeatmapWriter:
    """Writes the heatmaps of scored batches (see the module docstring).

    Args:
        loaded: the ``tf.saved_model.load`` result (with ``explain_png``).
        out_dir: the folder to write into (created).
        label_names: a multi-label model's label names (``None``: binary).
        label: the label to explain (multi-label only; ``None``: each
            image's most probable one).

    Raises:
        ValueError: if the SavedModel has no ``explain_png`` signature (it
            predates it: export it again), or ``label`` is not a label name.
    """

    def __init__(
        self,
        loaded,
        out_dir: str,
        label_names: Sequence[str] | None = None,
        label: str | None = None,
    ):
        if EXPLAIN_PNG not in loaded.signatures:
            raise ValueError(
                f"--heatmaps needs the SavedModel's {EXPLAIN_PNG!r} signature; this "
                f"one has {sorted(loaded.signatures)}. Export it again with "
                "morphhr_tf.training.export.export_serving_model."
            )
        names = list(label_names or [])
        if label is not None and label not in names:
            raise ValueError(
                f"--heatmap-label must be one of the model's labels {names}. "
                f"Received: {label!r}"
            )
        self._explain = loaded.signatures[EXPLAIN_PNG]
        self._side = int(loaded.resolution.numpy())
        self._names = names
        self._label = label
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)

    def _column(self, probs: np.ndarray) -> int:
        if not self._names:
            return 0
        if self._label is not None:
            return self._names.index(self._label)
        return int(np.argmax(probs))

    def write(
        self, rows: Sequence[int], pngs: Sequence[bytes], probs: np.ndarray
    ) -> dict[int, dict[str, str]]:
        """Writes the heatmaps of one scored batch.

        Args:
            rows: each image's row index in the CSV.
            pngs: the PNG bytes the model scored.
            probs: ``[B, L]`` the probabilities it returned.

        Returns:
            ``{row: {"heatmap": file name, "heatmap_label": label}}``.
        """
        from morphhr_tf.evaluation.overlays import write_heatmaps

        columns = [self._column(p) for p in probs]
        out = {}
        for column in sorted(set(columns)):
            picked = [i for i, c in enumerate(columns) if c == column]
            batch = tf.constant([pngs[i] for i in picked])
            raw = self._explain(
                **{PNG_INPUT: batch, CLASS_INPUT: tf.constant(column, tf.int32)}
            )[SALIENCY].numpy()
            images = np.stack(
                [decode_and_resize(pngs[i], self._side).numpy()[..., 0] for i in picked]
            )
            stems = [f"{rows[i]:05d}" for i in picked]
            label = self._names[column] if self._names else ""
            titles = [f"row {s}" + (f": {label}" if label else "") for s in stems]
            write_heatmaps(finish_maps(raw), images, stems, self.out_dir, titles=titles)
            for i, stem in zip(picked, stems):
                out[rows[i]] = {HEATMAP: f"{stem}.png", HEATMAP_LABEL: label}
        return out
