"""C++ kernels called through XLA's FFI: depthwise convolution on CPU (depthwise.cc).

`bash setup.sh` builds the library into build/ where g++ exists (build.sh); it is loaded with
ctypes the first time `available()` is asked, and its three handlers (forward, input gradient,
kernel gradient) registered as FFI targets for the CPU platform. MOBILENET_JAX_KERNELS=off makes
everything behave as if the library had not been built. A library built from another version of
depthwise.cc than the one beside it is not loaded (`unavailable_reason()` says so).
"""

import ctypes
import functools
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(DIRECTORY, 'depthwise.cc')
LIBRARY = os.path.join(DIRECTORY, 'build', 'libdepthwise.so')
STAMP = os.path.join(DIRECTORY, 'build', 'stamp')  # build.sh: "<sha256 of the source> ..."
ENV_SWITCH = 'MOBILENET_JAX_KERNELS'

# FFI target name -> symbol in the library.
_TARGETS = {
    'mobilenet_jax_depthwise_forward': 'MobilenetJaxDepthwiseForward',
    'mobilenet_jax_depthwise_input_grad': 'MobilenetJaxDepthwiseInputGrad',
    'mobilenet_jax_depthwise_kernel_grad': 'MobilenetJaxDepthwiseKernelGrad',
}


def built() -> bool:
  """Whether build.sh has left a library (loadable or not)."""
  return os.path.exists(LIBRARY)


def available() -> bool:
  return unavailable_reason() is None


def unavailable_reason() -> str | None:
  """None when the kernels are registered, else why not (one line)."""
  if os.environ.get(ENV_SWITCH, 'on') == 'off':
    return f'{ENV_SWITCH}=off is set'
  return _load()


@functools.cache
def _load() -> str | None:
  if not built():
    return ('the C++ kernels are not built (run `bash setup.sh`, which needs g++, to build '
            f'{os.path.relpath(LIBRARY, os.path.dirname(os.path.dirname(DIRECTORY)))})')
  with open(SOURCE, 'rb') as f:
    source_hash = hashlib.sha256(f.read()).hexdigest()
  try:
    with open(STAMP) as f:
      stamped = f.read().split()[:1]
  except OSError:
    stamped = []
  if stamped != [source_hash]:
    return 'the C++ kernels were built from another depthwise.cc (run `bash setup.sh` again)'
  try:
    library = ctypes.cdll.LoadLibrary(LIBRARY)
    for name, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)),
                                  platform='cpu')
  except (OSError, AttributeError) as error:
    return f'the C++ kernels in {LIBRARY} could not be loaded ({error}; run `bash setup.sh`)'
  return None


def _call(target: str, out_shape: tuple[int, ...], a: jax.Array, b: jax.Array, stride: int,
          pads) -> jax.Array:
  (top, bottom), (left, right) = pads
  # 'sequential': under vmap, one call per batch element (correct, not fast).
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32),
                          vmap_method='sequential')(
      a.astype(jnp.float32), b.astype(jnp.float32), stride=np.int64(stride),
      pad_top=np.int64(top), pad_bottom=np.int64(bottom), pad_left=np.int64(left),
      pad_right=np.int64(right))


def _output_shape(x_shape, kernel_shape, stride: int, pads) -> tuple[int, ...]:
  n, h, w, c = x_shape
  (top, bottom), (left, right) = pads
  return (n, (h + top + bottom - kernel_shape[0]) // stride + 1,
          (w + left + right - kernel_shape[1]) // stride + 1, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  """Depthwise convolution of NHWC `x` with a (kh, kw, 1, C) kernel, explicit (possibly
  asymmetric) padding ((top, bottom), (left, right)); computed in float32 on CPU."""
  pads = tuple(tuple(int(p) for p in axis) for axis in pads)
  out = _call('mobilenet_jax_depthwise_forward',
              _output_shape(x.shape, kernel.shape, stride, pads), x, kernel, stride, pads)
  return out.astype(x.dtype)


def _forward(x, kernel, stride, pads):
  return depthwise(x, kernel, stride, pads), (x, kernel)


def _backward(stride, pads, residuals, grad_out):
  x, kernel = residuals
  pads = tuple(tuple(int(p) for p in axis) for axis in pads)
  grad_x = _call('mobilenet_jax_depthwise_input_grad', x.shape, grad_out, kernel, stride, pads)
  grad_kernel = _call('mobilenet_jax_depthwise_kernel_grad', kernel.shape, x, grad_out, stride,
                      pads)
  return grad_x.astype(x.dtype), grad_kernel.astype(kernel.dtype)


depthwise.defvjp(_forward, _backward)
