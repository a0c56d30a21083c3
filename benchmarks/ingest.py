"""Ingest throughput benchmark (a script, not a test).

Measures images per second, in one run, for

1. bare decode: ``pydicom.dcmread(path).pixel_array`` + area resize;
2. our reader + preprocessing: ``read_mammogram`` (LUTs, inversion) +
   ``MammogramPreprocessor`` (segmentation, crop, orientation, resize, 16 bit);
3. the Beam ingest (``run_ingest``: read, preprocess, PNG, tf.Example, gzip
   TFRecords) with 1 and with 2 worker processes; both end to end and in
   steady state (first to last processed image, i.e. without start-up).

Usage::

    .venv/bin/python benchmarks/ingest.py [--patients 8] [--rows 2048] [--image-size 896]

Targets (issue 4): ours >= 80% of bare decode; 2 workers >= 1.8x one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

import morphhr_tf  # noqa: F401  (runtime policy first)
from morphhr_tf.data.preprocessing import DEFAULT_IMAGE_SIZE


def _files(listing):
    return [r.path for r in listing.records]


def bench_bare(paths, size):
    import numpy as np
    import pydicom

    from morphhr_tf.data.preprocessing import area_resize

    start = time.perf_counter()
    for path in paths:
        arr = pydicom.dcmread(path).pixel_array
        area_resize(arr.astype(np.float32), size, size)
    return len(paths) / (time.perf_counter() - start)


def bench_ours(records, size):
    from morphhr_tf.data import MammogramPreprocessor, read_mammogram

    pre = MammogramPreprocessor(image_size=size)
    start = time.perf_counter()
    for record in records:
        image, meta = read_mammogram(record.path)
        pre(image, record.laterality or meta["laterality"])
    return len(records) / (time.perf_counter() - start)


def bench_beam(root, out, size, workers, total):
    from morphhr_tf.data.ingest import run_ingest

    progress = os.path.join(out, ".ingest_tmp", "progress")
    marks = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                count = sum(
                    os.path.getsize(os.path.join(progress, n))
                    for n in os.listdir(progress)
                )
            except OSError:
                count = 0
            now = time.perf_counter()
            if count >= 1 and "first" not in marks:
                marks["first"] = (now, count)
            if count >= total and "last" not in marks:
                marks["last"] = (now, count)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    summary = run_ingest(
        "cbis_ddsm", root, out, image_size=size, num_workers=workers, progress=False
    )
    end = time.perf_counter()
    done.set()
    watcher.join()
    assert summary["ingested"] == total, summary
    steady = float("nan")
    if "first" in marks and "last" in marks and marks["last"][0] > marks["first"][0]:
        (t0, n0), (t1, n1) = marks["first"], marks["last"]
        steady = (n1 - n0) / (t1 - t0)
    return total / (end - start), steady


def _to_jpeg2000(paths):
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        ds.save_as(path, enforce_file_format=True)
    print(f"re-encoded {len(paths)} files as JPEG 2000 lossless")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8, help="4 images each")
    parser.add_argument("--rows", type=int, default=2048, help="synthetic image height")
    parser.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help="the stored image size (ingest output side)",
    )
    parser.add_argument("--root", help="existing CBIS-shaped tree (else synthetic)")
    parser.add_argument(
        "--jpeg2000",
        action="store_true",
        help="re-encode the synthetic files as JPEG 2000 lossless (like RSNA)",
    )
    args = parser.parse_args(argv)

    from morphhr_tf.data import load_source
    from morphhr_tf.synthetic.cbis_ddsm import generate

    os.environ.setdefault("MORPHHR_SALT", "benchmark-salt")
    with tempfile.TemporaryDirectory(prefix="morphhr_bench_") as tmp:
        root = args.root
        if root is None:
            root = os.path.join(tmp, "cbis")
            gen = generate(
                root, patients=args.patients, seed=0, rows=args.rows, rois=False
            )
            print(
                f"synthetic: {gen['distinct_images']} images {gen['rows']}x"
                f"{gen['columns']} at {gen['images_per_second']:.2f} img/s"
            )
        listing = load_source("cbis_ddsm", root)
        records = listing.records
        if args.jpeg2000 and args.root is None:
            _to_jpeg2000([r.path for r in records])
        paths = _files(listing)
        print(
            f"images: {len(records)}  output: {args.image_size}x{args.image_size}  cpus: {os.cpu_count()}"
        )
        bench_bare(paths[:2], args.image_size)  # warm caches and imports
        bare = bench_bare(paths, args.image_size)
        ours = bench_ours(records, args.image_size)
        print(f"bare pydicom.pixel_array + resize : {bare:7.2f} img/s")
        print(
            f"read_mammogram + preprocessing   : {ours:7.2f} img/s  ({ours / bare:.0%} of bare)"
        )
        results = {}
        for workers in (1, 2):
            out = os.path.join(tmp, f"out{workers}")
            results[workers] = bench_beam(
                root, out, args.image_size, workers, len(records)
            )
            total, steady = results[workers]
            print(
                f"beam ingest, {workers} worker(s)        : {total:7.2f} img/s end to end, "
                f"{steady:7.2f} img/s steady"
            )
        (t1, s1), (t2, s2) = results[1], results[2]
        print(
            f"2 workers / 1 worker             : {t2 / t1:.2f}x end to end, {s2 / s1:.2f}x steady"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
