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
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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
  if not built():
    return 'the C++ kernels are not built (run `bash setup.sh`, which needs g++)'
  return _load()


@functools.cache
def _source_hash() -> str:
  with open(SOURCE, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def version() -> str:
  """The kernels' version: the start of their source's hash (a library built from another source
  is not loaded, so this is also what runs)."""
  return _source_hash()[:12]


@functools.cache
def _load() -> str | None:
  """Loads and registers the library once; None, or why it could not."""
  source_hash = _source_hash()
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


def set_vector_level(level: int) -> int:
  """Sets the widest registers depthwise.cc's hand-vectorised loops may use (0: the plain loops,
  1: AVX, 2: AVX-512, capped at what the CPU has) and returns the level used before. By default
  the CPU's best; every level gives bitwise the same results (the tests compare them). Needs
  the kernels loaded (`available()`)."""
  if not available():
    raise RuntimeError(unavailable_reason())
  return int(ctypes.cdll.LoadLibrary(LIBRARY).MobilenetJaxDepthwiseVectorLevel(int(level)))


def _call(target: str, out_shape: tuple[int, ...], a: jax.Array, b: jax.Array, stride: int,
          pads) -> jax.Array:
  (top, bottom), (left, right) = pads
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32))(
      a, b, stride=np.int64(stride), pad_top=np.int64(top), pad_bottom=np.int64(bottom),
      pad_left=np.int64(left), pad_right=np.int64(right))


def _forward_shape(x_shape, kernel_hw, stride, pads):
  n, h, w, c = x_shape
  (top, bottom), (left, right) = pads
  return (n, (h + top + bottom - kernel_hw[0]) // stride + 1,
          (w + left + right - kernel_hw[1]) // stride + 1, c)


# The three calls, each a function of two arrays and the static (stride, pads, size): the kernel's
# (kh, kw) for the forward pass and the kernel gradient, the input's (h, w) for the input gradient.
def _forward_call(x, kernel, stride, pads, size):
  return _call('mobilenet_jax_depthwise_forward', _forward_shape(x.shape, size, stride, pads),
               x, kernel, stride, pads)


def _input_grad_call(grad_out, kernel, stride, pads, size):
  return _call('mobilenet_jax_depthwise_input_grad', (grad_out.shape[0], *size, kernel.shape[3]),
               grad_out, kernel, stride, pads)


def _kernel_grad_call(x, grad_out, stride, pads, size):
  return _call('mobilenet_jax_depthwise_kernel_grad', (*size, 1, x.shape[3]), x, grad_out,
               stride, pads)


def _partitioned(call, reduces_batch: bool):
  """`call` split over the batch dimension of a data-parallel program instead of gathered.

  Each device runs the kernel on its own images: the first argument keeps its batch sharding,
  the second follows it (the kernel gradient: output gradient) or is replicated (the kernel),
  and the kernel gradient's per-device sums are added with a psum. Anything else (a sharded
  spatial or channel axis, a batch that does not split evenly) is gathered first, as XLA would.
  """
  def shardings(mesh, arg_shapes):
    """(mesh, the batch's mesh axes or None, batch-sharded, replicated)."""
    sharding = arg_shapes[0].sharding
    if mesh.empty:  # shardings not in terms of a mesh: replicate over a mesh of our own
      mesh = Mesh(np.array(sorted(sharding.device_set, key=lambda d: d.id)), ('devices',))
      batch = None
    else:
      spec = getattr(sharding, 'spec', None)
      batch = spec[0] if spec else None
      axes = (batch,) if isinstance(batch, str) else tuple(batch or ())
      if arg_shapes[0].shape[0] % int(np.prod([mesh.shape[a] for a in axes])):
        batch = None
    replicated = NamedSharding(mesh, P())
    return mesh, batch, (replicated if batch is None else NamedSharding(mesh, P(batch))), replicated

  def partition(stride, pads, size, mesh, arg_shapes, result_shape):
    del result_shape
    mesh, batch, sharded, replicated = shardings(mesh, arg_shapes)
    if reduces_batch:
      def lower(a, b):
        out = call(a, b, stride, pads, size)
        return out if batch is None else lax.psum(out, batch)
      return mesh, lower, replicated, (sharded, sharded)
    return (mesh, lambda a, b: call(a, b, stride, pads, size), sharded,
            (sharded, replicated))

  def infer_sharding_from_operands(stride, pads, size, mesh, arg_shapes, result_shape):
    del stride, pads, size, result_shape
    _, _, sharded, replicated = shardings(mesh, arg_shapes)
    return replicated if reduces_batch else sharded

  partitioned = custom_partitioning(call, static_argnums=(2, 3, 4))
  # Shardy's rule: only the batch factor b may be sharded (Shardy wants the others in order).
  rule = 'b h w c, b p q c -> i j o c' if reduces_batch else 'b h w c, i j o c -> b p q c'
  others = tuple(f for f in dict.fromkeys(rule.replace(',', ' ').split()) if f not in ('b', '->'))
  partitioned.def_partition(
      partition, infer_sharding_from_operands=infer_sharding_from_operands, sharding_rule=rule,
      reduction_factors=('b',) if reduces_batch else (), need_replication_factors=others)
  return partitioned


_forward_op = _partitioned(_forward_call, reduces_batch=False)
_input_grad_op = _partitioned(_input_grad_call, reduces_batch=False)
_kernel_grad_op = _partitioned(_kernel_grad_call, reduces_batch=True)


def _static_pads(pads):
  return tuple(tuple(int(p) for p in axis) for axis in pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
  """Depthwise convolution of NHWC `x` with a (kh, kw, 1, C) kernel, explicit (possibly
  asymmetric) padding ((top, bottom), (left, right)); computed in float32 on CPU. Not for
  jax.vmap (custom partitioning has no batching rule): the batch is the first axis already."""
  out = _forward_op(x.astype(jnp.float32), kernel.astype(jnp.float32), int(stride),
                    _static_pads(pads), tuple(kernel.shape[:2]))
  return out.astype(x.dtype)


def _forward(x, kernel, stride, pads):
  return depthwise(x, kernel, stride, pads), (x, kernel)


def _backward(stride, pads, residuals, grad_out):
  x, kernel = residuals
  stride, pads = int(stride), _static_pads(pads)
  grad_out = grad_out.astype(jnp.float32)
  grad_x = _input_grad_op(grad_out, kernel.astype(jnp.float32), stride, pads,
                          tuple(x.shape[1:3]))
  grad_kernel = _kernel_grad_op(x.astype(jnp.float32), grad_out, stride, pads,
                                tuple(kernel.shape[:2]))
  return grad_x.astype(x.dtype), grad_kernel.astype(kernel.dtype)


depthwise.defvjp(_forward, _backward)
