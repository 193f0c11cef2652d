#!/usr/bin/env bash
# Wheels that bench/gpu_check.py needs on the device machine and its image lacks (TRL and what TRL
# needs beyond the image: datasets, dill, multiprocess), for its Python 3.12, into .whl/ (git-ignored).
# The device call then carries .whl and installs them with --no-index --no-deps (bench/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls -l .whl
