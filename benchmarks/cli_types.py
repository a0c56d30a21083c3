"""Argument types shared by the benchmark scripts (no TensorFlow import)."""

from __future__ import annotations

import argparse


def front_chunks(text: str) -> int:
    """``--front-chunks``: slices of the batch the front is recomputed in, a
    positive integer (1: the first front block, whole batch)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            "must be a positive integer (1: the first front block, whole "
            f"batch). Received: {text}"
        )
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. a thread count where 0 leaves the choice to the
    library)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0. Received: {text}")
    return value
