// Depthwise convolution on XLA:CPU through XLA's FFI: forward, input gradient and kernel gradient.
//
// Layouts: x, y, dy NHWC float32; the kernel (kh, kw, 1, C), the layout of
// mobilenet_jax.ops.depthwise. Attributes: stride and the explicit padding (top, bottom, left,
// right). Padding is handled by skipping the taps that fall outside the input (no padded copy).
// Every inner loop runs over channels, contiguous in memory. Where the CPU has AVX or AVX-512
// (checked at run time: the library is built without -march, for any x86-64), the columns away
// from the padding and the kernel gradient's sums take hand-vectorised loops (8 or 16 channels
// a register, 4 output columns at a time so that each weight load serves four); elsewhere plain
// loops that the compiler vectorises for the baseline ISA. Every path does the same multiplies
// and adds in the same order (no fused multiply-add), so their results are bitwise the same.
//
// Work runs on XLA's intra-op thread pool (the FFI ThreadPool context) when XLA provides one.
// The handlers are asynchronous: they schedule their parts, run one part on the calling thread
// and return a future completed by the last part to finish, so no thread waits on another.
// Every output element is summed in a fixed order whatever the split, and the kernel gradient
// sums per-chunk buffers whose chunks depend on the shapes only (not on the number of threads
// or the scheduling), in chunk order: results are bitwise reproducible.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define MOBILENET_JAX_AVX 1
#define AVX_INLINE __attribute__((target("avx"), always_inline)) inline
#else
#define MOBILENET_JAX_AVX 0
#endif

namespace ffi = xla::ffi;

namespace {

// Channels summed in local accumulators at a time (registers, once the loop is unrolled).
constexpr int64_t kBlock = 16;
// Multiply-adds below which a part is not worth a task on the thread pool.
constexpr int64_t kMinTaskWork = 1 << 16;
// Most partial sums the kernel gradient reduces (each kh * kw * C floats).
constexpr int64_t kMaxKernelGradChunks = 32;

struct Shape {
  int64_t n, h, w, c;  // input
  int64_t oh, ow;      // output
  int64_t kh, kw;
  int64_t stride, top, left;
};

// Checks the buffers' dimensions against each other and the attributes.
using Dims = ffi::AnyBuffer::Dimensions;

ffi::Error MakeShape(Dims x, Dims k, Dims y, int64_t stride,
                     int64_t top, int64_t bottom, int64_t left, int64_t right, Shape* s) {
  if (stride < 1 || top < 0 || bottom < 0 || left < 0 || right < 0) {
    return ffi::Error::InvalidArgument("depthwise: stride must be >= 1 and pads >= 0");
  }
  *s = Shape{x[0], x[1], x[2], x[3], y[1], y[2], k[0], k[1], stride, top, left};
  const int64_t want_oh = (s->h + top + bottom - s->kh) / stride + 1;
  const int64_t want_ow = (s->w + left + right - s->kw) / stride + 1;
  if (k[2] != 1 || k[3] != s->c || y[0] != s->n || y[3] != s->c || s->kh < 1 || s->kw < 1 ||
      s->h + top + bottom < s->kh || s->w + left + right < s->kw || s->oh != want_oh ||
      s->ow != want_ow) {
    return ffi::Error::InvalidArgument(
        "depthwise: shapes of input " + std::to_string(x[0]) + "x" + std::to_string(x[1]) +
        "x" + std::to_string(x[2]) + "x" + std::to_string(x[3]) + ", kernel " +
        std::to_string(k[0]) + "x" + std::to_string(k[1]) + "x" + std::to_string(k[2]) + "x" +
        std::to_string(k[3]) + " and output " + std::to_string(y[0]) + "x" +
        std::to_string(y[1]) + "x" + std::to_string(y[2]) + "x" + std::to_string(y[3]) +
        " do not match the stride and padding");
  }
  return ffi::Error::Success();
}

ffi::Future Ready(ffi::Error error = ffi::Error::Success()) {
  ffi::Promise promise;
  ffi::Future future(promise);
  if (error.success()) {
    promise.SetAvailable();
  } else {
    promise.SetError(std::move(error));
  }
  return future;
}

// Runs part(begin, end) over [0, units) in contiguous ranges, on up to the pool's number of
// threads (fewer where a part would do less than kMinTaskWork), then finish(); the future
// completes after finish().
template <typename Part, typename Finish>
ffi::Future ParallelFor(ffi::ThreadPool& pool, int64_t units, int64_t work_per_unit, Part part,
                        Finish finish) {
  const int64_t by_work = std::max<int64_t>(1, units * work_per_unit / kMinTaskWork);
  const int64_t parts = std::min({units, by_work, std::max<int64_t>(1, pool.num_threads())});
  if (parts <= 1) {
    if (units > 0) part(0, units);
    finish();
    return Ready();
  }
  struct State {
    explicit State(int64_t parts) : remaining(parts) {}
    std::atomic<int64_t> remaining;
    ffi::Promise promise;
  };
  auto state = std::make_shared<State>(parts);
  ffi::Future future(state->promise);
  auto run = [state, part, finish, units, parts](int64_t p) {
    part(units * p / parts, units * (p + 1) / parts);
    if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      finish();
      state->promise.SetAvailable();
    }
  };
  for (int64_t p = 1; p < parts; ++p) pool.Schedule([run, p] { run(p); });
  run(0);
  return future;
}

// One output (or input-gradient) pixel: out[c] = sum over taps t of a[t][c] * b[t][c], the taps
// in the order given.
inline void SumOfProducts(const float* const* a, const float* const* b, int64_t taps,
                          int64_t channels, float* __restrict out) {
  int64_t c0 = 0;
  for (; c0 + kBlock <= channels; c0 += kBlock) {
    float acc[kBlock] = {};
    for (int64_t t = 0; t < taps; ++t) {
      const float* __restrict at = a[t] + c0;
      const float* __restrict bt = b[t] + c0;
      for (int64_t c = 0; c < kBlock; ++c) acc[c] += at[c] * bt[c];
    }
    for (int64_t c = 0; c < kBlock; ++c) out[c0 + c] = acc[c];
  }
  if (c0 < channels) {
    for (int64_t c = c0; c < channels; ++c) out[c] = 0.0f;
    for (int64_t t = 0; t < taps; ++t) {
      const float* __restrict at = a[t];
      const float* __restrict bt = b[t];
      for (int64_t c = c0; c < channels; ++c) out[c] += at[c] * bt[c];
    }
  }
}

#if MOBILENET_JAX_AVX
// The widest registers the hand-vectorised loops use: 0 (the plain loops), 1 (AVX) or 2
// (AVX-512F): the CPU's best unless lowered (MobilenetJaxDepthwiseVectorLevel, for the tests
// that compare the paths).
int BestVectorLevel() {
  return __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;
}
std::atomic<int> vector_level{BestVectorLevel()};

// 8 and 16 floats: an AVX and an AVX-512 register (GCC's vector extensions; + and * are
// separate instructions, never fused: contraction is off, see build.sh).
typedef float Float8 __attribute__((vector_size(32)));
typedef float Float16 __attribute__((vector_size(64)));

template <typename V>
AVX_INLINE V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
AVX_INLINE void Store(float* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// Columns k0 .. k0 + U - 1 of a run: out[k * out_step + c] = sum over taps t of
// src[t][k * in_step + c] * w[t][c], the taps in order, for the channels from c0 on in blocks of
// V's width while a whole block fits; returns the first channel not done.
template <typename V, int U>
AVX_INLINE int64_t VectorColumns(const float* const* src, const float* const* w, int64_t taps,
                                 int64_t c0, int64_t channels, int64_t in_step, float* out,
                                 int64_t out_step, int64_t k0) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(float);
  for (; c0 + kWidth <= channels; c0 += kWidth) {
    V acc[U];
    for (int u = 0; u < U; ++u) acc[u] = V{};
    for (int64_t t = 0; t < taps; ++t) {
      const V wt = Load<V>(w[t] + c0);
      const float* p = src[t] + k0 * in_step + c0;
      for (int u = 0; u < U; ++u) acc[u] = acc[u] + Load<V>(p + u * in_step) * wt;
    }
    for (int u = 0; u < U; ++u) Store(out + (k0 + u) * out_step + c0, acc[u]);
  }
  return c0;
}

// The same for the channels from c0 on, one at a time.
template <int U>
AVX_INLINE void ScalarColumns(const float* const* src, const float* const* w, int64_t taps,
                              int64_t c0, int64_t channels, int64_t in_step, float* out,
                              int64_t out_step, int64_t k0) {
  for (; c0 < channels; ++c0) {
    for (int u = 0; u < U; ++u) {
      float acc = 0.0f;
      for (int64_t t = 0; t < taps; ++t) acc += src[t][(k0 + u) * in_step + c0] * w[t][c0];
      out[(k0 + u) * out_step + c0] = acc;
    }
  }
}

// Columns [begin, end) of a run, four at a time (two where the source is read with a stride),
// in AVX registers, or AVX-512 ones and then AVX for a remainder of 8 channels. One definition,
// compiled for each instruction set (a function's target cannot be a template parameter).
#define DEFINE_RUN(NAME, TARGET, WIDE)                                                         \
  template <int U>                                                                             \
  __attribute__((target(TARGET), always_inline)) inline void NAME##Columns(                    \
      const float* const* src, const float* const* w, int64_t taps, int64_t channels,          \
      int64_t in_step, float* out, int64_t out_step, int64_t k) {                              \
    int64_t c0 = VectorColumns<WIDE, U>(src, w, taps, 0, channels, in_step, out, out_step, k); \
    c0 = VectorColumns<Float8, U>(src, w, taps, c0, channels, in_step, out, out_step, k);      \
    ScalarColumns<U>(src, w, taps, c0, channels, in_step, out, out_step, k);                   \
  }                                                                                            \
  __attribute__((target(TARGET))) void NAME(                                                   \
      const float* const* src, const float* const* w, int64_t taps, int64_t channels,          \
      int64_t in_step, float* out, int64_t out_step, int64_t begin, int64_t end) {             \
    int64_t k = begin;                                                                         \
    if (in_step > out_step) {                                                                  \
      for (; k + 2 <= end; k += 2) {                                                           \
        NAME##Columns<2>(src, w, taps, channels, in_step, out, out_step, k);                   \
      }                                                                                        \
    }                                                                                          \
    for (; k + 4 <= end; k += 4) NAME##Columns<4>(src, w, taps, channels, in_step, out, out_step, k); \
    for (; k < end; ++k) NAME##Columns<1>(src, w, taps, channels, in_step, out, out_step, k);  \
  }
DEFINE_RUN(AvxRun, "avx", Float8)
DEFINE_RUN(Avx512Run, "avx512f", Float16)
#undef DEFINE_RUN
#endif

// A depthwise layer's forward pass and its input gradient are the same gather: each pixel of
// the result (n, r, q) is the sum over the taps (i, j) that read a pixel of the source of
// source[n, rows[r * kh + i], cols[q * kw + j], :] * k[i, j, :], where the tables hold -1 for
// taps with no source pixel (padding, or strides skipping it). Taps are summed in (i, j) order.
//
// Along the width the result columns fall into classes (`ColumnClass`) within which the source
// column is linear in the result column: q = start + k * every reads source column
// k * step + offset[j] through each of the class's taps j, and through no other. Away from the
// padding ([first, last)) a class's columns run through the vectorised loop, a row at a time.
struct ColumnClass {
  int64_t start, every, count, step;
  std::vector<int64_t> taps, offsets;  // the tap columns j that read a pixel, and their offsets
  int64_t first = 0, last = 0;         // the k at which every one of them reads inside
};

using ColumnClasses = std::shared_ptr<const std::vector<ColumnClass>>;

struct Gather {
  const float* source;
  int64_t source_h, source_w;
  float* result;
  int64_t result_h, result_w;
  std::shared_ptr<const std::vector<int64_t>> rows, cols;  // result_h * kh, result_w * kw
  ColumnClasses classes;
};

// Fills in a class's count and its [first, last) from the widths of the result and source.
ColumnClass Complete(ColumnClass c, int64_t result_w, int64_t source_w) {
  c.count = c.start < result_w ? (result_w - c.start + c.every - 1) / c.every : 0;
  int64_t first = 0, last = c.count;
  for (int64_t offset : c.offsets) {
    while (first < last && first * c.step + offset < 0) ++first;
    while (last > first && (last - 1) * c.step + offset >= source_w) --last;
  }
  c.first = c.taps.empty() ? 0 : first;
  c.last = c.taps.empty() ? 0 : last;
  return c;
}

// The forward pass: one class, every tap column j reading column q * stride + j - left.
ColumnClasses ForwardClasses(const Shape& s) {
  ColumnClass c{0, 1, 0, s.stride, {}, {}};
  for (int64_t j = 0; j < s.kw; ++j) {
    c.taps.push_back(j);
    c.offsets.push_back(j - s.left);
  }
  return std::make_shared<std::vector<ColumnClass>>(
      std::vector<ColumnClass>{Complete(std::move(c), s.ow, s.w)});
}

// The input gradient: input column q reads output column (q + left - j) / stride through the
// taps j for which that divides, i.e. one class per residue p of q modulo the stride, reading
// output column k + (p + left - j) / stride.
ColumnClasses InputGradClasses(const Shape& s) {
  auto classes = std::make_shared<std::vector<ColumnClass>>();
  for (int64_t p = 0; p < s.stride; ++p) {
    ColumnClass c{p, s.stride, 0, 1, {}, {}};
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t shift = p + s.left - j;
      if (((shift % s.stride) + s.stride) % s.stride != 0) continue;
      c.taps.push_back(j);
      c.offsets.push_back((shift - ((shift % s.stride) + s.stride) % s.stride) / s.stride);
    }
    classes->push_back(Complete(std::move(c), s.w, s.ow));
  }
  return classes;
}

ffi::Future RunGather(ffi::ThreadPool& pool, const Shape& s, const float* kd, Gather g) {
  auto part = [s, kd, g](int64_t begin, int64_t end) {
    std::vector<const float*> a(s.kh * s.kw), b(s.kh * s.kw);
    // One result pixel through the tables (the columns near the padding, or everything).
    auto pixel = [&](int64_t n, int64_t r, int64_t q, float* out) {
      int64_t taps = 0;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t source_row = (*g.rows)[r * s.kh + i];
        if (source_row < 0) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t source_col = (*g.cols)[q * s.kw + j];
          if (source_col < 0) continue;
          a[taps] = g.source + ((n * g.source_h + source_row) * g.source_w + source_col) * s.c;
          b[taps] = kd + (i * s.kw + j) * s.c;
          ++taps;
        }
      }
      SumOfProducts(a.data(), b.data(), taps, s.c, out);
    };
    for (int64_t row = begin; row < end; ++row) {  // row = n * result_h + result row
      const int64_t n = row / g.result_h, r = row % g.result_h;
      float* out_row = g.result + row * g.result_w * s.c;
#if MOBILENET_JAX_AVX
      const int level = vector_level.load(std::memory_order_relaxed);
      if (level > 0) {
        for (const ColumnClass& c : *g.classes) {
          // The vectorised run over [first, last), each tap's pointer at column `first`.
          int64_t taps = 0;
          for (int64_t i = 0; i < s.kh && c.first < c.last; ++i) {
            const int64_t source_row = (*g.rows)[r * s.kh + i];
            if (source_row < 0) continue;
            const float* first_pixel = g.source +
                ((n * g.source_h + source_row) * g.source_w + c.first * c.step) * s.c;
            for (size_t t = 0; t < c.taps.size(); ++t) {
              a[taps] = first_pixel + c.offsets[t] * s.c;
              b[taps] = kd + (i * s.kw + c.taps[t]) * s.c;
              ++taps;
            }
          }
          const int64_t run_end = taps > 0 ? c.last : c.first;  // no taps: every pixel is zero
          if (taps > 0) {
            (level == 2 ? Avx512Run : AvxRun)(
                a.data(), b.data(), taps, s.c, c.step * s.c,
                out_row + (c.start + c.first * c.every) * s.c, c.every * s.c, 0,
                c.last - c.first);
          }
          for (int64_t k = 0; k < c.count; ++k) {
            if (k >= c.first && k < run_end) continue;
            const int64_t q = c.start + k * c.every;
            pixel(n, r, q, out_row + q * s.c);
          }
        }
        continue;
      }
#endif
      for (int64_t q = 0; q < g.result_w; ++q) pixel(n, r, q, out_row + q * s.c);
    }
  };
  // Taps a result pixel sums on average (for sizing the parts only): all kh * kw in the forward
  // pass, about kh * kw / stride^2 in the input gradient.
  const int64_t taps_per_pixel = std::clamp<int64_t>(
      s.kh * s.kw * g.source_h * g.source_w / (g.result_h * g.result_w), 1, s.kh * s.kw);
  return ParallelFor(pool, s.n * g.result_h, g.result_w * taps_per_pixel * s.c, part, [] {});
}

// For each output position along one axis and each tap along it, the input position it reads,
// or -1 in the padding: out * stride + tap - pad.
std::shared_ptr<const std::vector<int64_t>> ForwardTable(int64_t out_size, int64_t in_size,
                                                         int64_t taps, int64_t stride,
                                                         int64_t pad) {
  auto table = std::make_shared<std::vector<int64_t>>(out_size * taps, -1);
  for (int64_t o = 0; o < out_size; ++o) {
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t in = o * stride + t - pad;
      if (in >= 0 && in < in_size) (*table)[o * taps + t] = in;
    }
  }
  return table;
}

// Its transpose: for each input position and tap, the output position that reads the input
// there through that tap, or -1 (one at most: the tap and input position fix out * stride).
std::shared_ptr<const std::vector<int64_t>> InputGradTable(int64_t in_size, int64_t out_size,
                                                           int64_t taps, int64_t stride,
                                                           int64_t pad) {
  const auto forward = ForwardTable(out_size, in_size, taps, stride, pad);
  auto table = std::make_shared<std::vector<int64_t>>(in_size * taps, -1);
  for (int64_t o = 0; o < out_size; ++o) {
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t in = (*forward)[o * taps + t];
      if (in >= 0) (*table)[in * taps + t] = o;
    }
  }
  return table;
}

// y[n, oh, ow, c] = sum_{i, j} x[n, oh*s + i - top, ow*s + j - left, c] * k[i, j, c].
ffi::Future Forward(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> x, ffi::BufferR4<ffi::F32> k,
                    ffi::ResultBufferR4<ffi::F32> y, int64_t stride, int64_t pad_top,
                    int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  Shape s;
  if (ffi::Error e = MakeShape(x.dimensions(), k.dimensions(), y->dimensions(), stride, pad_top,
                               pad_bottom, pad_left, pad_right, &s);
      !e.success()) {
    return Ready(std::move(e));
  }
  return RunGather(pool, s, k.typed_data(),
                   Gather{x.typed_data(), s.h, s.w, y->typed_data(), s.oh, s.ow,
                          ForwardTable(s.oh, s.h, s.kh, s.stride, s.top),
                          ForwardTable(s.ow, s.w, s.kw, s.stride, s.left), ForwardClasses(s)});
}

// dx[n, ih, iw, c] = sum over the taps (i, j) and outputs (oh, ow) with oh*s + i - top = ih and
// ow*s + j - left = iw of dy[n, oh, ow, c] * k[i, j, c]: a gather, each input pixel written once.
ffi::Future InputGrad(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> dy,
                      ffi::BufferR4<ffi::F32> k, ffi::ResultBufferR4<ffi::F32> dx,
                      int64_t stride, int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                      int64_t pad_right) {
  Shape s;
  if (ffi::Error e = MakeShape(dx->dimensions(), k.dimensions(), dy.dimensions(), stride,
                               pad_top, pad_bottom, pad_left, pad_right, &s);
      !e.success()) {
    return Ready(std::move(e));
  }
  return RunGather(pool, s, k.typed_data(),
                   Gather{dy.typed_data(), s.oh, s.ow, dx->typed_data(), s.h, s.w,
                          InputGradTable(s.h, s.oh, s.kh, s.stride, s.top),
                          InputGradTable(s.w, s.ow, s.kw, s.stride, s.left),
                          InputGradClasses(s)});
}

// Adds to out[c] (c < kBlock, or channels - c0 in the tail) the sum over count pixels of
// a[p * a_step + c] * b[p * b_step + c].
inline void AddDotOverPixels(const float* a, int64_t a_step, const float* b, int64_t b_step,
                             int64_t count, int64_t channels, float* __restrict out) {
  int64_t c0 = 0;
  for (; c0 + kBlock <= channels; c0 += kBlock) {
    float acc[kBlock] = {};
    for (int64_t p = 0; p < count; ++p) {
      const float* __restrict ap = a + p * a_step + c0;
      const float* __restrict bp = b + p * b_step + c0;
      for (int64_t c = 0; c < kBlock; ++c) acc[c] += ap[c] * bp[c];
    }
    for (int64_t c = 0; c < kBlock; ++c) out[c0 + c] += acc[c];
  }
  if (c0 < channels) {
    float acc[kBlock] = {};
    const int64_t rest = channels - c0;
    for (int64_t p = 0; p < count; ++p) {
      const float* __restrict ap = a + p * a_step + c0;
      const float* __restrict bp = b + p * b_step + c0;
      for (int64_t c = 0; c < rest; ++c) acc[c] += ap[c] * bp[c];
    }
    for (int64_t c = 0; c < rest; ++c) out[c0 + c] += acc[c];
  }
}

// One output row's share of one kernel row, in the plain loops, for the channels from c0 on:
// out[j * c + ch] += sum over the output columns p in [spans[2j], spans[2j + 1]) of
// x_row[(p * stride + j - left) * c + ch] * dy_row[p * c + ch].
inline void PlainKernelGradRow(const float* x_row, const float* dy_row, const Shape& s,
                               const int64_t* spans, int64_t c0, float* out) {
  for (int64_t j = 0; j < s.kw; ++j) {
    const int64_t lo = spans[2 * j], hi = spans[2 * j + 1];
    if (lo >= hi) continue;
    AddDotOverPixels(x_row + (lo * s.stride + j - s.left) * s.c + c0, s.stride * s.c,
                     dy_row + lo * s.c + c0, s.c, hi - lo, s.c - c0, out + j * s.c + c0);
  }
}

#if MOBILENET_JAX_AVX
// One output row's share of one kernel row: out[j * c + ch] += sum over the output columns p in
// [spans[2j], spans[2j + 1]) of x_row[(p * stride + j - left) * c + ch] * dy_row[p * c + ch], for
// every tap column j at once (each dy pixel loaded once for the KW of them), for the channels
// from c0 on in blocks of V's width while a whole block fits; returns the first channel not done.
// [lo, hi) are the columns every tap reads inside. Each (j, ch) sums its columns in ascending
// order from zero, as AddDotOverPixels does.
template <typename V, int KW>
AVX_INLINE int64_t VectorKernelGradRow(const float* x_row, const float* dy_row, const Shape& s,
                                       const int64_t* spans, int64_t lo, int64_t hi, int64_t c0,
                                       float* out) {
  constexpr int64_t kWidth = sizeof(V) / sizeof(float);
  const int64_t c = s.c, x_step = s.stride * c;
  auto x_at = [&](int64_t p, int j) { return x_row + (p * s.stride + j - s.left) * c; };
  for (; c0 + kWidth <= c; c0 += kWidth) {
    V acc[KW];
    for (int j = 0; j < KW; ++j) {
      acc[j] = V{};
      for (int64_t p = spans[2 * j]; p < std::min(lo, spans[2 * j + 1]); ++p) {
        acc[j] = acc[j] + Load<V>(x_at(p, j) + c0) * Load<V>(dy_row + p * c + c0);
      }
    }
    if (lo < hi) {  // (x_at(lo, 0) may point past the row otherwise)
      const float* xp = x_at(lo, 0) + c0;
      for (int64_t p = lo; p < hi; ++p, xp += x_step) {
        const V d = Load<V>(dy_row + p * c + c0);
        for (int j = 0; j < KW; ++j) acc[j] = acc[j] + Load<V>(xp + j * c) * d;
      }
    }
    for (int j = 0; j < KW; ++j) {
      for (int64_t p = std::max(hi, spans[2 * j]); p < spans[2 * j + 1]; ++p) {
        acc[j] = acc[j] + Load<V>(x_at(p, j) + c0) * Load<V>(dy_row + p * c + c0);
      }
      float* o = out + j * c + c0;
      Store(o, Load<V>(o) + acc[j]);
    }
  }
  return c0;
}

// The same for every channel: AVX-512 registers (or AVX ones), then AVX for a remainder of 8
// channels, then the plain loops. One definition per instruction set, as DEFINE_RUN.
#define DEFINE_KERNEL_GRAD_ROW(NAME, TARGET, WIDE)                                        \
  template <int KW>                                                                       \
  __attribute__((target(TARGET))) void NAME(const float* x_row, const float* dy_row,      \
                                            const Shape& s, const int64_t* spans,         \
                                            float* out) {                                 \
    int64_t lo = 0, hi = s.ow;                                                            \
    for (int j = 0; j < KW; ++j) {                                                        \
      lo = std::max(lo, spans[2 * j]);                                                    \
      hi = std::min(hi, spans[2 * j + 1]);                                                \
    }                                                                                     \
    hi = std::max(lo, hi);                                                                \
    int64_t c0 = VectorKernelGradRow<WIDE, KW>(x_row, dy_row, s, spans, lo, hi, 0, out);  \
    c0 = VectorKernelGradRow<Float8, KW>(x_row, dy_row, s, spans, lo, hi, c0, out);       \
    if (c0 < s.c) PlainKernelGradRow(x_row, dy_row, s, spans, c0, out);                   \
  }
DEFINE_KERNEL_GRAD_ROW(AvxKernelGradRow, "avx", Float8)
DEFINE_KERNEL_GRAD_ROW(Avx512KernelGradRow, "avx512f", Float16)
#undef DEFINE_KERNEL_GRAD_ROW
#endif

// dk[i, j, c] = sum over n, oh, ow of x[n, oh*s + i - top, ow*s + j - left, c] * dy[n, oh, ow, c].
// The rows (n, oh) are cut into chunks by the shapes alone; each chunk sums into a buffer of
// its own (row by row, each row's sum over columns added), and the buffers are added in chunk
// order by the last part to finish.
ffi::Future KernelGrad(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> x,
                       ffi::BufferR4<ffi::F32> dy, ffi::ResultBufferR4<ffi::F32> dk,
                       int64_t stride, int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                       int64_t pad_right) {
  Shape s;
  if (ffi::Error e = MakeShape(x.dimensions(), dk->dimensions(), dy.dimensions(), stride,
                               pad_top, pad_bottom, pad_left, pad_right, &s);
      !e.success()) {
    return Ready(std::move(e));
  }
  const float* xd = x.typed_data();
  const float* dyd = dy.typed_data();
  float* dkd = dk->typed_data();
  const int64_t size = s.kh * s.kw * s.c;
  const int64_t rows = s.n * s.oh;
  const int64_t work_per_row = s.ow * size;
  const int64_t chunks = std::max<int64_t>(
      1, std::min({rows, kMaxKernelGradChunks, rows * work_per_row / kMinTaskWork}));
  // Where each tap column's valid output columns begin and end.
  auto spans = std::make_shared<std::vector<int64_t>>(2 * s.kw);
  for (int64_t j = 0; j < s.kw; ++j) {
    int64_t lo = 0, hi = s.ow;
    while (lo < hi && lo * s.stride + j - s.left < 0) ++lo;
    while (hi > lo && (hi - 1) * s.stride + j - s.left >= s.w) --hi;
    (*spans)[2 * j] = lo;
    (*spans)[2 * j + 1] = hi;
  }
  auto partial = std::make_shared<std::vector<float>>(chunks * size, 0.0f);
  auto part = [s, xd, dyd, spans, partial, size, rows, chunks](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      float* out = partial->data() + chunk * size;
      for (int64_t row = rows * chunk / chunks; row < rows * (chunk + 1) / chunks; ++row) {
        const int64_t n = row / s.oh, oh = row % s.oh;
        const float* dy_row = dyd + row * s.ow * s.c;
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t ih = oh * s.stride + i - s.top;
          if (ih < 0 || ih >= s.h) continue;
          const float* x_row = xd + (n * s.h + ih) * s.w * s.c;
          float* out_i = out + i * s.kw * s.c;
#if MOBILENET_JAX_AVX
          const int level = vector_level.load(std::memory_order_relaxed);
          if (level > 0 && (s.kw == 3 || s.kw == 5 || s.kw == 7)) {
            const int64_t* sp = spans->data();
            auto row = [&](auto avx, auto avx512) {
              (level == 2 ? avx512 : avx)(x_row, dy_row, s, sp, out_i);
            };
            if (s.kw == 3) row(AvxKernelGradRow<3>, Avx512KernelGradRow<3>);
            if (s.kw == 5) row(AvxKernelGradRow<5>, Avx512KernelGradRow<5>);
            if (s.kw == 7) row(AvxKernelGradRow<7>, Avx512KernelGradRow<7>);
            continue;
          }
#endif
          PlainKernelGradRow(x_row, dy_row, s, spans->data(), 0, out_i);
        }
      }
    }
  };
  auto finish = [partial, dkd, size, chunks] {
    const float* p = partial->data();
    std::copy(p, p + size, dkd);
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      const float* __restrict q = p + chunk * size;
      for (int64_t e = 0; e < size; ++e) dkd[e] += q[e];
    }
  };
  return ParallelFor(pool, chunks, rows * work_per_row / chunks, part, finish);
}

}  // namespace

#define DEPTHWISE_BINDING             \
  ffi::Ffi::Bind()                    \
      .Ctx<ffi::ThreadPool>()         \
      .Arg<ffi::BufferR4<ffi::F32>>() \
      .Arg<ffi::BufferR4<ffi::F32>>() \
      .Ret<ffi::BufferR4<ffi::F32>>() \
      .Attr<int64_t>("stride")        \
      .Attr<int64_t>("pad_top")       \
      .Attr<int64_t>("pad_bottom")    \
      .Attr<int64_t>("pad_left")      \
      .Attr<int64_t>("pad_right")

// Arguments: (x, kernel) -> y; (dy, kernel) -> dx; (x, dy) -> dkernel.
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilenetJaxDepthwiseForward, Forward, DEPTHWISE_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilenetJaxDepthwiseInputGrad, InputGrad, DEPTHWISE_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilenetJaxDepthwiseKernelGrad, KernelGrad, DEPTHWISE_BINDING);

// Sets the widest registers the hand-vectorised loops may use (0: the plain loops, 1: AVX,
// 2: AVX-512; capped at what the CPU has) and returns the level they used before: for the tests
// that compare the paths, and for A/B timing in one process.
extern "C" int MobilenetJaxDepthwiseVectorLevel(int level) {
#if MOBILENET_JAX_AVX
  return vector_level.exchange(std::clamp(level, 0, BestVectorLevel()));
#else
  (void)level;
  return 0;
#endif
}
