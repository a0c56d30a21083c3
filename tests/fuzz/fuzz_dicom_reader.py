"""Coverage-guided fuzzing of ``read_mammogram`` with atheris (libFuzzer).

Run (not collected by pytest)::

    .venv/bin/python tests/fuzz/fuzz_dicom_reader.py -atheris_runs=2000
    .venv/bin/python tests/fuzz/fuzz_dicom_reader.py -max_total_time=120 CORPUS_DIR

With no corpus folder on the command line, a seed corpus is written to a
temporary folder first: small MG files from ``tests/security/hostile_corpus``
(uncompressed, MONOCHROME1, JPEG 2000, RLE) and the small pydicom test files
(CT, MR, big endian, implicit VR, RLE, JPEG-LS, JPEG, deflated).

The property: the reader returns a finite float32 2-D image in [0, 1] or
raises ``DicomRejected`` with a non-empty one-line reason. Anything else
propagates and libFuzzer reports it as a crash, with the input saved as
``crash-<sha1>``. ``max_pixels`` is 16 MP so one input cannot allocate
gigabytes (add ``-rss_limit_mb=4096`` to libFuzzer to be sure).
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "security"))

with atheris.instrument_imports():
    import numpy as np
    import pydicom  # noqa: F401

    from morphhr_tf.data.dicom_reader import DicomRejected, read_mammogram

MAX_PIXELS = 16_000_000
_SCRATCH = os.path.join(
    "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
    f"morphhr_fuzz_{os.getpid()}.dcm",
)


def write_seed_corpus(folder: str) -> int:
    """Writes the seed files into ``folder``; returns how many."""
    import test_fuzz_reader  # tests/security: builds the same seeds

    os.makedirs(folder, exist_ok=True)
    for index, data in enumerate(test_fuzz_reader.SEEDS):
        with open(os.path.join(folder, f"seed_{index:02d}.dcm"), "wb") as f:
            f.write(data)
    return len(test_fuzz_reader.SEEDS)


def TestOneInput(data: bytes) -> None:  # noqa: N802  (the name atheris expects)
    with open(_SCRATCH, "wb") as f:
        f.write(data)
    try:
        image, _meta = read_mammogram(_SCRATCH, modalities=None, max_pixels=MAX_PIXELS)
    except DicomRejected as err:
        reason = str(err)
        if not reason.strip() or "\n" in reason:
            raise AssertionError(f"bad rejection reason {reason!r}") from err
        return
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.size == 0:
        raise AssertionError(
            f"not a 2-D image: {type(image)} {getattr(image, 'shape', '')}"
        )
    if image.dtype != np.float32 or not np.all(np.isfinite(image)):
        raise AssertionError(f"bad pixels: dtype {image.dtype}")
    if image.min() < 0.0 or image.max() > 1.0:
        raise AssertionError(f"pixels outside [0, 1]: {image.min()}..{image.max()}")


def main() -> None:
    argv = list(sys.argv)
    if not any(os.path.isdir(a) for a in argv[1:] if not a.startswith("-")):
        seeds = tempfile.mkdtemp(prefix="morphhr_fuzz_corpus_")
        count = write_seed_corpus(seeds)
        print(f"seed corpus: {count} files in {seeds}", file=sys.stderr)
        argv.append(seeds)
    atheris.Setup(argv, TestOneInput)
    try:
        atheris.Fuzz()
    finally:
        if os.path.exists(_SCRATCH):
            os.remove(_SCRATCH)


if __name__ == "__main__":
    main()
