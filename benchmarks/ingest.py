"""Ingest throughput benchmark (a script, not a test).

Measures images per second, in one run, for

1. bare decode: ``pydicom.dcmread(path).pixel_array`` + area resize;
2. our reader + preprocessing as the ingest runs them: ``open_mammogram``
   (header checks, LUT table; pixels mapped lazily) + ``MammogramPreprocessor``
   (segmentation on a subsampled copy, crop, LUT on the crop only,
   orientation, resize, 16 bit); and the same with the eager
   ``read_mammogram`` (every pixel mapped first), for reference;
3. the Beam ingest (``run_ingest``: read, preprocess, PNG, tf.Example,
   uncompressed TFRecords, then the splits rewritten as gzip files in
   canonical order, ``record_order``) with 1 worker, 2 worker processes and 2 worker threads; each
   end to end and in steady state (first to last processed image, i.e.
   without start-up);
4. CPU costs that do not depend on the machine's load: a worker's start-up
   imports with and without TensorFlow, and per image the tf.Example encode
   (``example_writer``, TensorFlow-free) and the gzip at level 6 that Beam's
   gzip TFRecord writer does (TFX's ExampleGen still writes that way;
   ``run_ingest`` no longer does).

Usage::

    .venv/bin/python benchmarks/ingest.py [--patients 8] [--rows 2048] [--image-size 896]
        [--rounds 3] [--no-beam]

Bare and ours alternate for ``--rounds`` rounds; each prints its best round
(the machine may be shared: compare the ratios printed by one run).
Targets (issue 16): ours >= 80% of bare decode; 2 workers >= 1.6x one end to
end on 400 images (``--patients 100``). Results: ``docs/performance.md``.
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


def bench_bare(paths, size):
    import numpy as np
    import pydicom

    from morphhr_tf.data.preprocessing import area_resize

    start = time.perf_counter()
    for path in paths:
        arr = pydicom.dcmread(path).pixel_array
        area_resize(arr.astype(np.float32), size, size)
    return len(paths) / (time.perf_counter() - start)


def bench_ours(records, size, reader):
    from morphhr_tf.data import MammogramPreprocessor

    pre = MammogramPreprocessor(image_size=size)
    start = time.perf_counter()
    for record in records:
        image, meta = reader(record.path)
        pre(image, record.laterality or meta["laterality"])
    return len(records) / (time.perf_counter() - start)


def warm_page_cache(paths):
    """Reads every file once and returns ``(bytes, seconds)``: otherwise the
    first timed path (bare decode) pays for the disk where the others read
    the page cache, which made one ``--rounds 1`` run print 110 % of bare
    and the next 54 % on the same files."""
    start, total = time.perf_counter(), 0
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
    return total, time.perf_counter() - start


def bench_decode(records, size, rounds):
    """Best-of-``rounds`` img/s of bare, ingest-path and eager reading."""
    from morphhr_tf.data.dicom_reader import open_mammogram, read_mammogram

    paths = [r.path for r in records]
    total, seconds = warm_page_cache(paths)
    print(f"page cache warmed: {total / 2**20:.0f} MB read in {seconds:.1f} s")
    bench_bare(paths[:2], size)  # warm caches and imports
    bench_ours(records[:2], size, open_mammogram)
    best = {"bare": 0.0, "ours": 0.0, "eager": 0.0}
    for _ in range(rounds):
        best["bare"] = max(best["bare"], bench_bare(paths, size))
        best["ours"] = max(best["ours"], bench_ours(records, size, open_mammogram))
        best["eager"] = max(best["eager"], bench_ours(records, size, read_mammogram))
    return best


def _cpu_ms(fn, items, rounds=3):
    """Best-of-``rounds`` CPU milliseconds (this process) per item of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, (time.process_time() - start) / len(items) * 1e3)
    return best


def _import_cpu_seconds(modules):
    """CPU seconds (user + system) a fresh interpreter spends importing."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = "import morphhr_tf\n" + "\n".join(f"import {m}" for m in modules)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_worker_costs(records, size):
    """CPU costs of a Beam worker (load-independent, unlike the wall times):
    start-up imports (what a worker imports, and that plus TensorFlow, which
    workers imported until the writer did without it), and per image the
    encode (``example_writer.encode_example``) and the gzip of Beam's gzip
    TFRecord writer (zlib level 6, fixed by Beam; the ExampleGen's writer,
    no longer ``run_ingest``'s)."""
    import zlib

    from morphhr_tf.data import MammogramPreprocessor
    from morphhr_tf.data.dicom_reader import open_mammogram
    from morphhr_tf.data.example_writer import encode_example

    worker = [
        "apache_beam",
        "morphhr_tf.data.ingest_transform",
        "morphhr_tf.data.example_writer",
        "pydicom",
        "scipy",
    ]
    light = _import_cpu_seconds(worker)
    heavy = _import_cpu_seconds([*worker, "tensorflow"])
    pre = MammogramPreprocessor(image_size=size)
    pixels = [pre(open_mammogram(r.path)[0], "L") for r in records[:8]]
    keys = dict(label=0, patient_key="p", image_key="i")
    tf_ms = _cpu_ms(lambda p: encode_example(p, **keys), pixels)
    examples = [encode_example(p, **keys) for p in pixels]
    gzip_ms = _cpu_ms(
        lambda e: zlib.compressobj(6, zlib.DEFLATED, 31).compress(e), examples
    )
    print(
        f"worker imports, CPU s             : {heavy:7.2f} with TensorFlow, {light:.2f} without"
    )
    print(f"encode per image, CPU ms          : {tf_ms:7.1f} example_writer")
    print(f"gzip TFRecord per image, CPU ms   : {gzip_ms:7.1f} (ExampleGen only)")


def bench_beam(root, out, size, workers, mode, total):
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
        "cbis_ddsm",
        root,
        out,
        image_size=size,
        num_workers=workers,
        worker_mode=mode,
        progress=False,
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
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating decode rounds"
    )
    parser.add_argument(
        "--no-beam", action="store_true", help="skip the Beam ingest runs"
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
        print(
            f"images: {len(records)}  output: {args.image_size}x{args.image_size}  "
            f"cpus: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}"
        )
        best = bench_decode(records, args.image_size, max(1, args.rounds))
        bare, ours, eager = best["bare"], best["ours"], best["eager"]
        print(f"bare pydicom.pixel_array + resize : {bare:7.2f} img/s")
        print(
            f"open_mammogram + preprocessing   : {ours:7.2f} img/s  ({ours / bare:.0%} of bare)"
        )
        print(
            f"read_mammogram + preprocessing   : {eager:7.2f} img/s  ({eager / bare:.0%} of bare)"
        )
        if args.no_beam:
            bench_worker_costs(records, args.image_size)
            return 0
        results = {}
        for workers, mode in ((1, "processes"), (2, "processes"), (2, "threads")):
            out = os.path.join(tmp, f"out{workers}{mode}")
            results[workers, mode] = bench_beam(
                root, out, args.image_size, workers, mode, len(records)
            )
            total, steady = results[workers, mode]
            what = "1 worker" if workers == 1 else f"{workers} worker {mode}"
            print(
                f"beam ingest, {what:19}: {total:7.2f} img/s end to end, "
                f"{steady:7.2f} img/s steady"
            )
        t1, s1 = results[1, "processes"]
        for mode in ("processes", "threads"):
            t2, s2 = results[2, mode]
            print(
                f"2 worker {mode:9} / 1 worker  : {t2 / t1:.2f}x end to end, "
                f"{s2 / s1:.2f}x steady"
            )
        print(f"load average at the end           : {os.getloadavg()[0]:.1f}")
        bench_worker_costs(records, args.image_size)  # imports TensorFlow: last
    return 0


if __name__ == "__main__":
    sys.exit(main())
