#!/usr/bin/env bash
# Sets up everything the project needs on a Debian machine with Python 3.11, in the Python that
# runs it (a virtual environment or not): the pinned packages, the test-only PyTorch references,
# the offline Fashion-MNIST files, tcmalloc and, where g++ exists, the C++ kernels.
# Idempotent: a second call takes about a second.
set -euo pipefail
cd "$(dirname "$0")"

# Python packages, unless this environment already has exactly these requirement files.
stamp="$(python -c 'import sys; print(sys.prefix)')/.mobilenet_jax_requirements"
wanted="$(cat requirements.txt requirements-reference.txt setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  pip_install() { python -m pip install -q --disable-pip-version-check "$@"; }
  pip_install -r requirements.txt
  # PyTorch references for the speed comparison and the weight-import tests: the CPU build of
  # torch, then torchvision and timm without their dependencies (the registry's torchvision is a
  # CUDA build, made importable next to the CPU torch by mobilenet_jax/interop/torch_reference.py;
  # timm's other dependencies are here already or unused by the tests).
  pip_install -r requirements-reference.txt
  pip_install --no-deps torchvision==0.28.0 timm==1.0.31
  echo "$wanted" > "$stamp"
fi

# Debian packages: Fashion-MNIST's IDX files, for training offline, and tcmalloc, which the
# train, evaluate, export and benchmark commands preload (mobilenet_jax/tools/allocator.py).
debs=(dataset-fashion-mnist libtcmalloc-minimal4)
if ! dpkg -s "${debs[@]}" >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${debs[@]}" >/dev/null
fi

# The C++ kernels (model.depthwise_implementation='ffi'), built into
# mobilenet_jax/ops/kernels/build/ where g++ exists (skipped with a note otherwise); rebuilt only
# when their source, flags, compiler or jaxlib change.
bash mobilenet_jax/ops/kernels/build.sh
