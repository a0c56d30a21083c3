"""Argument types shared by the benchmark scripts (no TensorFlow import)."""

from __future__ import annotations

import argparse


def _int_at_least(text: str, minimum: int, requirement: str) -> int:
    """``text`` as an integer ``>= minimum``; else argparse's error, saying
    ``requirement`` and the text received."""
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{requirement}. Received: {text}")
    return value


def front_chunks(text: str) -> int:
    """``--front-chunks``: slices of the batch the front is recomputed in, a
    positive integer (1: the first front block, whole batch)."""
    return _int_at_least(
        text, 1, "must be a positive integer (1: the first front block, whole batch)"
    )


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. a thread count where 0 leaves the choice to the
    library)."""
    return _int_at_least(text, 0, "must be an integer >= 0")


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of runs, steps or pixels)."""
    return _int_at_least(text, 1, "must be a positive integer")
