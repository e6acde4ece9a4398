#!/usr/bin/env bash
# Builds the C++ kernels (depthwise.cc) into build/, against the FFI headers of the jaxlib of the
# Python that runs it; mobilenet_jax/ops/kernels/__init__.py loads the library. Called by
# setup.sh. Idempotent: rebuilds only when the source, the flags, the compiler or jaxlib change.
# Plain -O3 (no -march=native): the library may run on another machine than the one that built it;
# depthwise.cc picks its AVX or AVX-512 loops at run time. -ffp-contract=off: no multiply-add is
# fused, so every path sums bitwise alike; -Wno-psabi: the AVX-512 helpers are always inlined,
# so the vector-ABI note GCC gives for them does not apply.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v g++ >/dev/null 2>&1; then
  echo "C++ kernels not built: no g++ (apt-get install g++, then bash setup.sh); 'ffi' unavailable"
  exit 0
fi
# jaxlib's FFI headers (where jax.ffi.include_dir() points) and its version, without importing jax.
{ read -r include; read -r jaxlib_version; } < <(python -c 'import os, jaxlib.version as v
print(os.path.join(os.path.dirname(v.__file__), "include")); print(v.__version__)')
if [ ! -f "$include/xla/ffi/api/ffi.h" ]; then
  echo "C++ kernels not built: no XLA FFI headers in this Python's jaxlib (${include:-none})" >&2
  exit 1
fi
flags=(-std=c++17 -O3 -ffp-contract=off -shared -fPIC -Wall -Wextra -Wno-psabi)
source_hash="$(sha256sum depthwise.cc | cut -d' ' -f1)"
build_hash="$( (echo "${flags[*]}"; g++ --version | head -1; echo "$jaxlib_version") \
  | sha256sum | cut -d' ' -f1)"
stamp="$source_hash $build_hash"
if [ -f build/libdepthwise.so ] && [ "$(cat build/stamp 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
mkdir -p build
g++ "${flags[@]}" -isystem "$include" depthwise.cc -o build/libdepthwise.so.tmp
mv build/libdepthwise.so.tmp build/libdepthwise.so
echo "$stamp" > build/stamp  # its first field is what __init__.py checks the source against
echo "built mobilenet_jax/ops/kernels/build/libdepthwise.so"
