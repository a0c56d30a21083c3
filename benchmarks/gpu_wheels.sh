#!/usr/bin/env bash
# Downloads, here, the wheels the GPU check needs on a machine with Python 3.12,
# JAX and numpy but no Keras: keras and the two small packages it needs that
# such a machine lacks (namex, optree). They go to .whl/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
keras_version=$(sed -n 's/^keras==//p' requirements.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "keras==${keras_version}" \
  "namex==$(sed -n 's/^namex==//p' requirements.txt)" \
  "optree==$(sed -n 's/^optree==//p' requirements.txt)"
ls .whl
