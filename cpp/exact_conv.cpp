// sevc: float64 direct 2-D convolution for the portable numerics mode (see exact_conv.h).
//
// A call makes up to two passes over the input: the maxima of the samples (their grids), then the
// convolution, which rounds the input onto the grids as it copies it.
//
// Work decomposition of the convolution, outermost first:
//   work units     a band of output rows of one sample and one group of channels (1x1 "direct"
//                  plans: a slice of the sample's h * w columns), and, only when there are fewer
//                  units than threads, a split of the group's output channels; contiguous ranges
//                  of units go to the threads. A unit first copies the input rows its band reads
//                  (the group's channels), rounded onto the sample's grid, into a per-thread band
//                  buffer, zero padded, with stride 2 split into even- and odd-column planes (so
//                  that the loads of a stride-2 tile are contiguous too), rows an odd number of
//                  cache lines apart (no 4 KB aliasing between the rows a tile reads);
//   column blocks  of one output row: the block's output (all channels of the unit) accumulates
//                  in a small per-thread buffer in L2 and is copied out once complete, with the
//                  bias added;
//   input chunks   so few input channels that what one tile reads stays in L1 (each chunk's
//                  partial sums are added to the block's buffer);
//   column tiles   kTileColumns output columns: the tile's input for the chunk is read from L1
//                  by every output-channel tile, while the chunk's weights, packed in the order
//                  the tiles read them, stream from L2;
//   channel tiles  kTileChannels output channels: kTileChannels x kTileVectors vector
//                  accumulators live in registers over all the taps of the chunk.
// Depthwise convolutions of stride 1 (one input and one output channel per group) instead run one
// channel at a time: a ring of kh rounded, padded input rows in L1, each made once, and
// one-channel tiles writing each output row directly, the bias added while it is in L1.
// Every sum is exact (see exact_conv.h), so the chunked accumulation, the FMAs and the order of
// the taps all give the bits of any other correct kernel.
#include "exact_conv.h"
#include "parallel.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEVC_EXACT_X86 1
#include <immintrin.h>
#else
#define SEVC_EXACT_X86 0
#endif

namespace sevc {
namespace exact {
namespace {

constexpr int kVector = 4;                              // doubles per vector (AVX2: 256 bits)
constexpr int kTileChannels = 4;                        // output channels per register tile
constexpr int kTileVectors = 3;                         // vectors of output columns per register tile
constexpr int kTileColumns = kTileVectors * kVector;    // output columns per register tile
// (4 x 3 measured best on Zen 3: 12 accumulators + 3 input vectors + 1 broadcast weight fill the
// 16 ymm registers; 6 x 2, 5 x 2 and 4 x 2 were 2-10 % slower.)
constexpr int64_t kCacheLine = 64;                      // bytes
constexpr int64_t kTileBudget = 24 * 1024;              // bytes a tile call reads (L1)
constexpr int64_t kBlockBudget = 192 * 1024;            // bytes of output and input per column block (L2)
constexpr int64_t kBandBudget = 2 * 1024 * 1024;        // bytes of a band buffer (L3)
constexpr size_t kArenaKeep = size_t{32} << 20;         // bytes of scratch a calling thread keeps
constexpr int64_t kMinThreadWork = int64_t{1} << 21;    // multiply-adds per thread, at least
constexpr int64_t kMinScanElements = int64_t{1} << 18;  // input elements per thread of the maxima pass

// A register tile: out[j * channel_stride + x] (+)= sum_k w[k * C + j] * in[offsets[k] + x] for
// its C channels j and the columns x < columns (<= V * kVector) the tile covers. `in` points at the
// source of the tile's first column, `out` at its first channel and column. Reads V * kVector
// columns from every in + offsets[k], whatever `columns` is; writes only `columns`.
using TileFn = void (*)(const double *in, const int64_t *offsets, const double *w, int64_t taps, double *out,
                        int64_t channel_stride, int columns, bool accumulate);

// Writes (or adds) the first `columns` of each of the C rows of acc to out.
template <int C, int kColumns>
inline void store_rows(const double (&acc)[C][kColumns], double *out, int64_t channel_stride, int columns,
                       bool accumulate) {
  for (int j = 0; j < C; ++j) {
    double *dst = out + j * channel_stride;
    if (accumulate) {
      for (int i = 0; i < columns; ++i) dst[i] += acc[j][i];
    } else {
      for (int i = 0; i < columns; ++i) dst[i] = acc[j][i];
    }
  }
}

// The portable tile: plain C++ (with GCC / Clang, vectors of two doubles, which every SIMD
// target has). It computes the tile one vector of kVector columns at a time, reading the taps once
// per vector: C x kVector accumulators stay in registers on any target.
template <int C, int V>
void tile_generic(const double *in, const int64_t *offsets, const double *w, int64_t taps, double *out,
                  int64_t channel_stride, int columns, bool accumulate) {
  static_assert(C <= 4 && kVector == 4, "the portable tile holds up to 4 x 4 accumulators");
  constexpr int kColumns = V * kVector;
  double rows[C][kColumns];
  for (int v = 0; v < V; ++v) {
#if defined(__GNUC__)
    typedef double Pair __attribute__((vector_size(16)));
    Pair a0 = {0.0, 0.0}, b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
    const double *wk = w;
    for (int64_t k = 0; k < taps; ++k, wk += C) {
      Pair lo, hi;
      std::memcpy(&lo, in + offsets[k] + v * kVector, sizeof lo);
      std::memcpy(&hi, in + offsets[k] + v * kVector + 2, sizeof hi);
      a0 += wk[0] * lo;
      b0 += wk[0] * hi;
      if constexpr (C > 1) {
        a1 += wk[1] * lo;
        b1 += wk[1] * hi;
      }
      if constexpr (C > 2) {
        a2 += wk[2] * lo;
        b2 += wk[2] * hi;
      }
      if constexpr (C > 3) {
        a3 += wk[3] * lo;
        b3 += wk[3] * hi;
      }
    }
    const Pair acc[4][2] = {{a0, b0}, {a1, b1}, {a2, b2}, {a3, b3}};
    for (int j = 0; j < C; ++j)
      for (int i = 0; i < kVector; ++i) rows[j][v * kVector + i] = acc[j][i / 2][i % 2];
#else
    double acc[C][kVector] = {};
    const double *wk = w;
    for (int64_t k = 0; k < taps; ++k, wk += C) {
      const double *x = in + offsets[k] + v * kVector;
      for (int j = 0; j < C; ++j)
        for (int i = 0; i < kVector; ++i) acc[j][i] += wk[j] * x[i];
    }
    for (int j = 0; j < C; ++j)
      for (int i = 0; i < kVector; ++i) rows[j][v * kVector + i] = acc[j][i];
#endif
  }
  store_rows(rows, out, channel_stride, columns, accumulate);
}

#if SEVC_EXACT_X86
// Applies M(j, v) to every accumulator index of the largest tile, kMaxTileChannels x
// kMaxTileVectors. The accumulators are named variables, not an array: GCC keeps an array of 12
// vectors in memory and stores it at every tap.
#define SEVC_TILE_ROW(M, j) M(j, 0) M(j, 1) M(j, 2) M(j, 3)
#define SEVC_TILE_ALL(M) \
  SEVC_TILE_ROW(M, 0) SEVC_TILE_ROW(M, 1) SEVC_TILE_ROW(M, 2) SEVC_TILE_ROW(M, 3) SEVC_TILE_ROW(M, 4) SEVC_TILE_ROW(M, 5)
constexpr int kMaxTileChannels = 6, kMaxTileVectors = 4;
static_assert(kTileChannels <= kMaxTileChannels && kTileVectors <= kMaxTileVectors, "tile too large");

// The AVX2 tile: C x V accumulators of 4 doubles; per tap V unaligned loads of input, C
// broadcasts of weights and C x V fused multiply-adds. Only called when the CPU has AVX2 and FMA.
template <int C, int V>
__attribute__((target("avx2,fma"))) void tile_avx2(const double *in, const int64_t *offsets, const double *w,
                                                   int64_t taps, double *out, int64_t channel_stride,
                                                   int columns, bool accumulate) {
  constexpr int kColumns = V * kVector;
#define SEVC_DECLARE(j, v) __m256d a##j##v = _mm256_setzero_pd();
  SEVC_TILE_ALL(SEVC_DECLARE)
#undef SEVC_DECLARE
#pragma GCC unroll 2
  for (int64_t k = 0; k < taps; ++k, w += C) {
    const double *x = in + offsets[k];
    const __m256d x0 = _mm256_loadu_pd(x);
    const __m256d x1 = V > 1 ? _mm256_loadu_pd(x + kVector) : x0;
    const __m256d x2 = V > 2 ? _mm256_loadu_pd(x + 2 * kVector) : x0;
    const __m256d x3 = V > 3 ? _mm256_loadu_pd(x + 3 * kVector) : x0;
    __m256d wj;
#define SEVC_FMA(j, v) \
  if constexpr (C > j && V > v) a##j##v = _mm256_fmadd_pd(wj, x##v, a##j##v);
#define SEVC_CHANNEL(j)                          \
  if constexpr (C > j) {                         \
    wj = _mm256_broadcast_sd(w + j);             \
    SEVC_TILE_ROW(SEVC_FMA, j)                   \
  }
    SEVC_CHANNEL(0) SEVC_CHANNEL(1) SEVC_CHANNEL(2) SEVC_CHANNEL(3) SEVC_CHANNEL(4) SEVC_CHANNEL(5)
#undef SEVC_CHANNEL
#undef SEVC_FMA
  }
  if (columns == kColumns) {
#define SEVC_STORE(j, v)                                                                      \
  if constexpr (C > j && V > v) {                                                             \
    double *dst = out + j * channel_stride + v * kVector;                                     \
    _mm256_storeu_pd(dst, accumulate ? _mm256_add_pd(a##j##v, _mm256_loadu_pd(dst)) : a##j##v); \
  }
    SEVC_TILE_ALL(SEVC_STORE)
#undef SEVC_STORE
    return;
  }
  double rows[C][kColumns];
#define SEVC_SPILL(j, v) \
  if constexpr (C > j && V > v) _mm256_storeu_pd(rows[j] + v * kVector, a##j##v);
  SEVC_TILE_ALL(SEVC_SPILL)
#undef SEVC_SPILL
  store_rows(rows, out, channel_stride, columns, accumulate);
}
#undef SEVC_TILE_ALL
#undef SEVC_TILE_ROW
#endif

// tiles[c - 1][v - 1]: the tile of c channels and v vectors of columns.
struct TileTable {
  TileFn fn[kTileChannels][kTileVectors];
};

template <bool kAvx2, int C, int V>
constexpr TileFn tile_fn() {
#if SEVC_EXACT_X86
  if constexpr (kAvx2) return &tile_avx2<C, V>;
#endif
  return &tile_generic<C, V>;
}

template <bool kAvx2, size_t... I>
TileTable make_table(std::index_sequence<I...>) {
  TileTable table{};
  ((table.fn[I / kTileVectors][I % kTileVectors] =
        tile_fn<kAvx2, static_cast<int>(I / kTileVectors) + 1, static_cast<int>(I % kTileVectors) + 1>()),
   ...);
  return table;
}

const TileTable &tiles(Isa isa) {
  static const TileTable generic = make_table<false>(std::make_index_sequence<kTileChannels * kTileVectors>());
  static const TileTable avx2 = make_table<true>(std::make_index_sequence<kTileChannels * kTileVectors>());
  return isa == Isa::kAvx2 ? avx2 : generic;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// Grids: the rounding of the input.

// The grid of one sample: x -> ((nearbyint((x * up1) * up2)) * down1) * down2, where
// up1 * up2 = 2 ** (bits - e) and down1 * down2 = 2 ** (e - bits), each factor a normal power of
// two. up2 = down2 = 1 unless 2 ** (bits - e) or 2 ** (e - bits) is not normal (samples below
// 2 ** (bits - 1024), or bits = 1 with a sample above 2 ** 1023), and multiplying by 1 changes
// nothing: for every other sample this is the reference's torch.round(x * 2 ** (bits - e)) *
// 2 ** (e - bits), operation for operation. In two steps it still gives the exactly scaled value,
// rounded once: scaling up is exact (|x| < 2 ** e: no overflow); scaling down by 2 ** -1023 may
// round values below 2 ** -1022, which round to 0 all the same; and the rounded value
// q * 2 ** (e - bits) is representable (a multiple of 2 ** (e - bits) below 2 ** e, or x itself)
// while q * down1 >= 2 ** -1022 is exact.
struct Grid {
  double up1 = 1.0, up2 = 1.0, down1 = 1.0, down2 = 1.0;
};

// (a, b), normal powers of two with a * b = 2 ** k, b = 1 when 2 ** k is normal.
std::pair<double, double> power_of_two(int k) {
  if (k >= DBL_MIN_EXP - 1 && k <= DBL_MAX_EXP - 1) return {std::ldexp(1.0, k), 1.0};
  const int half = k / 2;
  return {std::ldexp(1.0, half), std::ldexp(1.0, k - half)};
}

// The grid of a sample whose largest magnitude is `largest` (`nonfinite`: it holds a NaN or an
// infinity). e is frexp's exponent (largest < 2 ** e), 0 for 0 and, as torch.frexp gives, for NaN
// and infinities.
Grid make_grid(double largest, bool nonfinite, int bits) {
  int e = 0;
  if (!nonfinite) std::frexp(largest, &e);
  Grid g;
  std::tie(g.up1, g.up2) = power_of_two(bits - e);
  std::tie(g.down1, g.down2) = power_of_two(e - bits);
  return g;
}

inline double round_scalar(double x, const Grid &g) {
  return std::nearbyint(x * g.up1 * g.up2) * g.down1 * g.down2;
}

// Row operations, per instruction set. copy: dst[i] = src[i] on the grid (a plain copy when grid
// is null); split: even[i] = pairs[2 i], odd[i] = pairs[2 i + 1], likewise; scan: the largest
// |src[i]| into *largest (NaNs ignored) and whether a NaN or an infinity is among them into
// *nonfinite (both start from the caller's values); depthwise3: one output row of a depthwise
// 3x3 convolution, out[x] = sum_{ky, kx} w[3 ky + kx] rows[ky][x + kx] (+ *bias, if any, once at
// the end), for x < count (reads up to x = ceil(count / 4) * 4 + 2 of every row).
struct RowOps {
  void (*copy)(const double *src, double *dst, int64_t count, const Grid *grid);
  void (*split)(const double *pairs, double *even, double *odd, int64_t count, const Grid *grid);
  void (*scan)(const double *src, int64_t count, double *largest, bool *nonfinite);
  void (*depthwise3)(const double *const rows[3], const double *w, const double *bias, double *out, int64_t count);
};

void copy_generic(const double *src, double *dst, int64_t count, const Grid *grid) {
  if (grid == nullptr) {
    if (count > 0) std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(double));
    return;
  }
  const Grid g = *grid;
  for (int64_t i = 0; i < count; ++i) dst[i] = round_scalar(src[i], g);
}

void split_generic(const double *pairs, double *even, double *odd, int64_t count, const Grid *grid) {
  if (grid == nullptr) {
    for (int64_t i = 0; i < count; ++i) {
      even[i] = pairs[2 * i];
      odd[i] = pairs[2 * i + 1];
    }
    return;
  }
  const Grid g = *grid;
  for (int64_t i = 0; i < count; ++i) {
    even[i] = round_scalar(pairs[2 * i], g);
    odd[i] = round_scalar(pairs[2 * i + 1], g);
  }
}

void scan_generic(const double *src, int64_t count, double *largest, bool *nonfinite) {
  double m = *largest;
  int bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double a = std::fabs(src[i]);
    m = a > m ? a : m;
    bad |= !(a <= DBL_MAX);  // NaN or infinity
  }
  *largest = m;
  *nonfinite = *nonfinite || bad != 0;
}

void depthwise3_generic(const double *const rows[3], const double *w, const double *bias, double *out,
                        int64_t count) {
  const double *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
  const double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
  for (int64_t x = 0; x < count; ++x) {
    double a = 0.0;  // a sum starts from +0, as torch's do (the sign of an all -0 sum)
    a += w0 * r0[x];
    a += w1 * r0[x + 1];
    a += w2 * r0[x + 2];
    a += w3 * r1[x];
    a += w4 * r1[x + 1];
    a += w5 * r1[x + 2];
    a += w6 * r2[x];
    a += w7 * r2[x + 1];
    a += w8 * r2[x + 2];
    out[x] = bias == nullptr ? a : a + *bias;
  }
}

#if SEVC_EXACT_X86
// The lanes j < count of a vector (count 0..4).
__attribute__((target("avx2,fma"))) inline __m256i lanes_below(int64_t count) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), _mm256_setr_epi64x(0, 1, 2, 3));
}

// x on the grid (u1, u2, d1, d2): the operations of round_scalar, four lanes at a time.
#define SEVC_ROUND(x)                                                                                 \
  _mm256_mul_pd(_mm256_mul_pd(_mm256_round_pd(_mm256_mul_pd(_mm256_mul_pd((x), u1), u2),             \
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),         \
                              d1),                                                                    \
                d2)
#define SEVC_GRID_VECTORS(grid)                                                                     \
  const __m256d u1 = _mm256_set1_pd((grid).up1), u2 = _mm256_set1_pd((grid).up2),                \
                d1 = _mm256_set1_pd((grid).down1), d2 = _mm256_set1_pd((grid).down2)

__attribute__((target("avx2,fma"))) void copy_avx2(const double *src, double *dst, int64_t count,
                                                   const Grid *grid) {
  if (grid == nullptr) {
    if (count > 0) std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(double));
    return;
  }
  SEVC_GRID_VECTORS(*grid);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256d a = _mm256_loadu_pd(src + i), b = _mm256_loadu_pd(src + i + 4);
    _mm256_storeu_pd(dst + i, SEVC_ROUND(a));
    _mm256_storeu_pd(dst + i + 4, SEVC_ROUND(b));
  }
  for (; i < count; i += 4) {
    const __m256i mask = lanes_below(std::min<int64_t>(4, count - i));
    const __m256d a = _mm256_maskload_pd(src + i, mask);
    _mm256_maskstore_pd(dst + i, mask, SEVC_ROUND(a));
  }
}

__attribute__((target("avx2,fma"))) void split_avx2(const double *pairs, double *even, double *odd, int64_t count,
                                                    const Grid *grid) {
  const Grid g = grid != nullptr ? *grid : Grid{};
  const bool rounding = grid != nullptr;
  SEVC_GRID_VECTORS(g);
  for (int64_t i = 0; i < count; i += 4) {
    // a = columns 2i .. 2i + 3, b = 2i + 4 .. 2i + 7 (masked at the end of the row)
    __m256d a, b;
    __m256i out_mask = _mm256_set1_epi64x(-1);
    const bool whole = i + 4 <= count;
    if (whole) {
      a = _mm256_loadu_pd(pairs + 2 * i);
      b = _mm256_loadu_pd(pairs + 2 * i + 4);
    } else {
      const int64_t left = 2 * (count - i);  // 2, 4 or 6 columns
      a = _mm256_maskload_pd(pairs + 2 * i, lanes_below(std::min<int64_t>(4, left)));
      b = _mm256_maskload_pd(pairs + 2 * i + 4, lanes_below(std::max<int64_t>(0, left - 4)));
      out_mask = lanes_below(count - i);
    }
    // unpacklo: a0 b0 a2 b2 (columns 0 4 2 6), unpackhi: 1 5 3 7; the permute orders them 0 2 4 6.
    __m256d e = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), 0xD8);
    __m256d o = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), 0xD8);
    if (rounding) {
      e = SEVC_ROUND(e);
      o = SEVC_ROUND(o);
    }
    if (whole) {
      _mm256_storeu_pd(even + i, e);
      _mm256_storeu_pd(odd + i, o);
    } else {
      _mm256_maskstore_pd(even + i, out_mask, e);
      _mm256_maskstore_pd(odd + i, out_mask, o);
    }
  }
}
#undef SEVC_GRID_VECTORS
#undef SEVC_ROUND

__attribute__((target("avx2,fma"))) void depthwise3_avx2(const double *const rows[3], const double *w,
                                                         const double *bias, double *out, int64_t count) {
  const double *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
  const __m256d w0 = _mm256_broadcast_sd(w), w1 = _mm256_broadcast_sd(w + 1), w2 = _mm256_broadcast_sd(w + 2);
  const __m256d w3 = _mm256_broadcast_sd(w + 3), w4 = _mm256_broadcast_sd(w + 4), w5 = _mm256_broadcast_sd(w + 5);
  const __m256d w6 = _mm256_broadcast_sd(w + 6), w7 = _mm256_broadcast_sd(w + 7), w8 = _mm256_broadcast_sd(w + 8);
  const bool add_bias = bias != nullptr;
  const __m256d b = _mm256_set1_pd(add_bias ? *bias : 0.0);
  // Sums from +0, as torch's (the sign of an all -0 sum); the bias after the exact sum.
#define SEVC_DEPTHWISE3(a, x)                                   \
  __m256d a = _mm256_setzero_pd();                              \
  a = _mm256_fmadd_pd(w0, _mm256_loadu_pd(r0 + (x)), a);        \
  a = _mm256_fmadd_pd(w1, _mm256_loadu_pd(r0 + (x) + 1), a);    \
  a = _mm256_fmadd_pd(w2, _mm256_loadu_pd(r0 + (x) + 2), a);    \
  a = _mm256_fmadd_pd(w3, _mm256_loadu_pd(r1 + (x)), a);        \
  a = _mm256_fmadd_pd(w4, _mm256_loadu_pd(r1 + (x) + 1), a);    \
  a = _mm256_fmadd_pd(w5, _mm256_loadu_pd(r1 + (x) + 2), a);    \
  a = _mm256_fmadd_pd(w6, _mm256_loadu_pd(r2 + (x)), a);        \
  a = _mm256_fmadd_pd(w7, _mm256_loadu_pd(r2 + (x) + 1), a);    \
  a = _mm256_fmadd_pd(w8, _mm256_loadu_pd(r2 + (x) + 2), a);    \
  if (add_bias) a = _mm256_add_pd(a, b);
  int64_t x = 0;
  for (; x + 8 <= count; x += 8) {
    SEVC_DEPTHWISE3(a, x)
    SEVC_DEPTHWISE3(c, x + 4)
    _mm256_storeu_pd(out + x, a);
    _mm256_storeu_pd(out + x + 4, c);
  }
  for (; x < count; x += 4) {
    SEVC_DEPTHWISE3(a, x)
    _mm256_maskstore_pd(out + x, lanes_below(std::min<int64_t>(4, count - x)), a);
  }
#undef SEVC_DEPTHWISE3
}

__attribute__((target("avx2,fma"))) void scan_avx2(const double *src, int64_t count, double *largest,
                                                   bool *nonfinite) {
  const __m256d magnitude = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFF));
  __m256d m0 = _mm256_setzero_pd(), m1 = m0, m2 = m0, m3 = m0, nan = m0;
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m256d a0 = _mm256_and_pd(_mm256_loadu_pd(src + i), magnitude);
    const __m256d a1 = _mm256_and_pd(_mm256_loadu_pd(src + i + 4), magnitude);
    const __m256d a2 = _mm256_and_pd(_mm256_loadu_pd(src + i + 8), magnitude);
    const __m256d a3 = _mm256_and_pd(_mm256_loadu_pd(src + i + 12), magnitude);
    m0 = _mm256_max_pd(m0, a0);  // a NaN may land in an m: the nan flags catch it
    m1 = _mm256_max_pd(m1, a1);
    m2 = _mm256_max_pd(m2, a2);
    m3 = _mm256_max_pd(m3, a3);
    nan = _mm256_or_pd(nan, _mm256_or_pd(_mm256_cmp_pd(a0, a1, _CMP_UNORD_Q), _mm256_cmp_pd(a2, a3, _CMP_UNORD_Q)));
  }
  for (; i < count; i += 4) {
    const __m256d a =
        _mm256_and_pd(_mm256_maskload_pd(src + i, lanes_below(std::min<int64_t>(4, count - i))), magnitude);
    m0 = _mm256_max_pd(m0, a);
    nan = _mm256_or_pd(nan, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
  }
  alignas(32) double lanes[16];
  _mm256_store_pd(lanes, m0);
  _mm256_store_pd(lanes + 4, m1);
  _mm256_store_pd(lanes + 8, m2);
  _mm256_store_pd(lanes + 12, m3);
  double m = *largest;
  bool bad = *nonfinite || _mm256_movemask_pd(nan) != 0;
  for (const double lane : lanes) {
    m = lane > m ? lane : m;
    bad = bad || !(lane <= DBL_MAX);
  }
  *largest = m;
  *nonfinite = bad;
}
#endif

const RowOps &row_ops(Isa isa) {
  static const RowOps generic{&copy_generic, &split_generic, &scan_generic, &depthwise3_generic};
#if SEVC_EXACT_X86
  static const RowOps avx2{&copy_avx2, &split_avx2, &scan_avx2, &depthwise3_avx2};
  if (isa == Isa::kAvx2) return avx2;
#endif
  (void)isa;
  return generic;
}

// ---------------------------------------------------------------------------------------------

// A row pitch of at least `doubles`: a whole, odd number of cache lines, so that rows one pitch
// apart fall in different L1 sets (a pitch of a multiple of 4 KB would put the many rows a tile
// reads in one set, and evict them from each other).
int64_t row_pitch(int64_t doubles) {
  constexpr int64_t kLine = kCacheLine / sizeof(double);
  const int64_t lines = ceil_div(doubles, kLine);
  return (lines | 1) * kLine;
}

// The grid of every sample: one pass over the input for the maxima, cut into up to `threads`
// pieces (several per sample when there are fewer samples than threads).
std::vector<Grid> find_grids(const double *input, const ConvShape &s, int bits, int threads, const RowOps &ops) {
  const int64_t sample_size = s.c * s.h * s.w;
  threads = static_cast<int>(std::clamp<int64_t>(s.n * sample_size / kMinScanElements, 1, threads));
  const int64_t pieces = ceil_div(threads, s.n);
  std::vector<double> largest(static_cast<size_t>(s.n * pieces), 0.0);
  std::unique_ptr<bool[]> nonfinite(new bool[static_cast<size_t>(s.n * pieces)]());
  parallel_for(threads, s.n * pieces, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / pieces, piece = unit % pieces;
      const int64_t first = sample_size * piece / pieces, last = sample_size * (piece + 1) / pieces;
      ops.scan(input + n * sample_size + first, last - first, &largest[static_cast<size_t>(unit)],
               &nonfinite[static_cast<size_t>(unit)]);
    }
  });
  std::vector<Grid> grids(static_cast<size_t>(s.n));
  for (int64_t n = 0; n < s.n; ++n) {
    double m = 0.0;
    bool bad = false;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      m = std::max(m, largest[static_cast<size_t>(n * pieces + piece)]);
      bad = bad || nonfinite[static_cast<size_t>(n * pieces + piece)];
    }
    grids[static_cast<size_t>(n)] = make_grid(m, bad, bits);
  }
  return grids;
}

// A padded row of a stride-1 copy: row[q] = the input column q - pw on the grid, zero outside
// the input (in_row null: a row of the padding), for q < wq.
void fill_row(const double *in_row, double *row, int64_t w, int64_t pw, int64_t wq, const Grid *grid,
              const RowOps &ops) {
  if (in_row == nullptr) {
    std::fill(row, row + wq, 0.0);
    return;
  }
  const int64_t lo = std::min(wq, pw), hi = std::max(lo, std::min(wq, pw + w));
  std::fill(row, row + lo, 0.0);
  ops.copy(in_row + (lo - pw), row + lo, hi - lo, grid);
  std::fill(row + hi, row + wq, 0.0);
}

// How one convolution is cut into work (see the top of this file).
struct Plan {
  ConvShape s;
  int64_t cg = 0, og = 0;         // input and output channels per group of the convolution
  int64_t taps_per_channel = 0;   // kh * kw
  int64_t ho = 0, wo = 0;         // output rows and columns as the tiles see them
  bool direct = false;            // 1x1, stride 1, no padding: the output is one row of h * w columns
                                  // per channel, and so is the input, copied a block at a time
  int64_t band_rows = 0;          // output rows per band (direct: 1)
  int64_t hb = 0, wq = 0;         // band buffer: [cg][hb][stride][wq], the [stride] planes holding
                                  // the even and odd padded columns (one plane for stride 1)
  int64_t input_size = 0;         // doubles in a band buffer, or (direct) a block's copy [cg][wq]
  int64_t out_pitch = 0;          // row pitch of the block's output buffer [split channels][out_pitch]
  int64_t scratch_size = 0;       // doubles of per-thread scratch: input_size, then the output buffer
  int64_t row_step = 0;           // doubles between the sources of consecutive output rows
  int64_t unit_columns = 0;       // output columns per work unit (direct: a slice of the row)
  int64_t block_columns = 0;      // output columns per block, a multiple of kTileColumns
  int64_t chunk = 0;              // input channels per tile call
  int64_t bands = 0;              // work units along the rows (or the direct row's slices)
  int64_t splits = 0;             // work units along the output channels of a group
  int64_t split_tiles = 0;        // output-channel tiles per split
  std::vector<int64_t> offsets;   // tap (c, ky, kx) -> offset of its source from the output row's

  int64_t units() const { return s.n * s.groups * bands * splits; }
};

Plan make_plan(const ConvShape &s, int threads) {
  constexpr int64_t kDouble = sizeof(double);
  Plan p;
  p.s = s;
  p.cg = s.group_c();
  p.og = s.group_o();
  p.taps_per_channel = s.kh * s.kw;
  p.direct = s.kh == 1 && s.kw == 1 && s.stride == 1 && s.ph == 0 && s.pw == 0;
  const int64_t reach = (s.kw - 1) / s.stride;  // extra plane columns a tile row reads
  if (p.direct) {
    p.ho = 1;
    p.wo = s.h * s.w;
    p.band_rows = 1;
  } else {
    p.ho = s.ho();
    p.wo = s.wo();
    // A tile reads whole vectors: up to the next multiple of kVector, plus the kernel's reach.
    p.wq = row_pitch(ceil_div(p.wo, kVector) * kVector + reach);
    p.row_step = s.stride * s.stride * p.wq;
    // Bands of rows whose padded copy stays near kBandBudget (the copy repeats the kh - stride
    // rows bands share), and enough of them for a unit (band, sample, group) per thread.
    const int64_t row_bytes = p.cg * p.row_step * kDouble;
    const int64_t rows = std::clamp<int64_t>(kBandBudget / row_bytes, 1,
                                             ceil_div(p.ho, ceil_div(threads, s.n * s.groups)));
    p.bands = ceil_div(p.ho, rows);
    p.band_rows = ceil_div(p.ho, p.bands);
    p.hb = (p.band_rows - 1) * s.stride + s.kh;
    p.input_size = p.cg * p.hb * s.stride * p.wq;
    p.offsets.resize(static_cast<size_t>(p.cg * p.taps_per_channel));
    size_t k = 0;
    for (int64_t c = 0; c < p.cg; ++c)
      for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx)
          p.offsets[k++] = ((c * p.hb + ky) * s.stride + kx % s.stride) * p.wq + kx / s.stride;
  }
  // Chunks of input channels whose tile working set (the cache lines of input a tile reads and
  // its weights) stays in L1, as even as possible.
  const int64_t lines = (kTileColumns + reach) * kDouble / kCacheLine + 2;
  const int64_t channel_bytes = s.kh * (p.direct ? 1 : s.stride) * lines * kCacheLine +
                                p.taps_per_channel * kTileChannels * kDouble;
  const int64_t chunks = ceil_div(p.cg, std::max<int64_t>(1, kTileBudget / channel_bytes));
  p.chunk = ceil_div(p.cg, chunks);
  // Output-channel splits: only when there are too few bands to keep every thread busy.
  const int64_t channel_tiles = ceil_div(p.og, kTileChannels);
  const int64_t tiles_per_row = ceil_div(p.wo, kTileColumns);
  if (p.direct) {
    // Slices of the long row: several per thread, for balance, of at least a few blocks.
    const int64_t min_tiles = 32;
    const int64_t slices = std::max<int64_t>(1, std::min(tiles_per_row / min_tiles, 4 * int64_t{threads}));
    p.unit_columns = ceil_div(tiles_per_row, slices) * kTileColumns;
    p.bands = ceil_div(p.wo, p.unit_columns);
  } else {
    p.unit_columns = tiles_per_row * kTileColumns;
  }
  p.splits = std::clamp<int64_t>(ceil_div(threads, s.n * s.groups * p.bands), 1, channel_tiles);
  p.split_tiles = ceil_div(channel_tiles, p.splits);
  p.splits = ceil_div(channel_tiles, p.split_tiles);
  // Blocks of columns whose output (all channels of the split) and input chunk stay in L2.
  // (A direct plan's block copy holds every input channel of the group; it stays in L2 all the same.)
  const int64_t split_channels = std::min(p.og, p.split_tiles * kTileChannels);
  const int64_t column_bytes = (split_channels + p.chunk * s.kh * (p.direct ? 1 : s.stride)) * kDouble;
  const int64_t unit_tiles = p.unit_columns / kTileColumns;
  const int64_t block_tiles = std::clamp<int64_t>(kBlockBudget / column_bytes / kTileColumns, 1, unit_tiles);
  p.block_columns = ceil_div(unit_tiles, ceil_div(unit_tiles, block_tiles)) * kTileColumns;
  if (p.direct) {
    p.wq = row_pitch(p.block_columns);
    p.input_size = p.cg * p.wq;
    p.offsets.resize(static_cast<size_t>(p.cg));
    for (int64_t c = 0; c < p.cg; ++c) p.offsets[static_cast<size_t>(c)] = c * p.wq;
  }
  p.out_pitch = row_pitch(p.block_columns);
  p.scratch_size = p.input_size + split_channels * p.out_pitch;
  return p;
}

// Weights [o, cg, kh, kw] in the order the tiles read them, group by group (group g at
// g * og * cg * kh * kw). Within a group: per chunk of input channels (starting at c0, at offset
// og * c0 * kh * kw), per output-channel tile of m channels (at o0 * taps of the chunk), per tap,
// m values. One tile row reads its chunk's weights as one sequential stream.
void pack_weights(const double *weight, const Plan &p, double *packed) {
  const ConvShape &s = p.s;
  const int64_t taps_all = p.cg * p.taps_per_channel;
  for (int64_t g = 0; g < s.groups; ++g) {
    const double *group_weight = weight + g * p.og * taps_all;
    double *group_packed = packed + g * p.og * taps_all;
    for (int64_t c0 = 0; c0 < p.cg; c0 += p.chunk) {
      const int64_t taps = std::min(p.chunk, p.cg - c0) * p.taps_per_channel;
      for (int64_t o0 = 0; o0 < p.og; o0 += kTileChannels) {
        const int64_t m = std::min<int64_t>(kTileChannels, p.og - o0);
        double *dst = group_packed + p.og * c0 * p.taps_per_channel + o0 * taps;
        const double *src = group_weight + c0 * p.taps_per_channel;
        for (int64_t k = 0; k < taps; ++k)
          for (int64_t j = 0; j < m; ++j) dst[k * m + j] = src[(o0 + j) * taps_all + k];
      }
    }
  }
}

// Scratch memory, 64-byte aligned: the calling thread's, kept between calls (up to kArenaKeep
// bytes) so that a model's many convolutions do not each pay the page faults of a fresh
// allocation, or else `fallback`, freed with it.
double *scratch_memory(size_t doubles, std::unique_ptr<double[]> &fallback) {
  constexpr size_t kAlign = kCacheLine / sizeof(double);
  const size_t size = doubles + kAlign;
  thread_local std::unique_ptr<double[]> kept;
  thread_local size_t kept_size = 0;
  double *memory;
  if (size * sizeof(double) > kArenaKeep) {
    fallback.reset(new double[size]);
    memory = fallback.get();
  } else {
    if (kept_size < size) {
      kept.reset();
      kept_size = 0;
      kept.reset(new double[size]);
      kept_size = size;
    }
    memory = kept.get();
  }
  const auto address = reinterpret_cast<uintptr_t>(memory);
  return memory + (kCacheLine - address % kCacheLine) % kCacheLine / sizeof(double);
}

// The band buffer of output rows [y0, y0 + rows) of one sample's group of channels (`channels`
// points at its first): every (channel, padded row, plane) row of wq doubles the band's tiles
// read, on the grid (none: copied as is), zero outside the input.
void fill_band(const double *channels, double *band, const Plan &p, int64_t y0, int64_t rows, const Grid *grid,
               const RowOps &ops) {
  const ConvShape &s = p.s;
  const int64_t st = s.stride;
  const int64_t used_rows = (rows - 1) * st + s.kh;
  for (int64_t c = 0; c < p.cg; ++c) {
    const double *src = channels + c * s.h * s.w;
    double *dst = band + c * p.hb * st * p.wq;
    for (int64_t r = 0; r < used_rows; ++r) {
      const int64_t iy = y0 * st + r - s.ph;
      const double *in_row = iy < 0 || iy >= s.h ? nullptr : src + iy * s.w;
      double *row = dst + r * st * p.wq;
      if (st == 1) {
        fill_row(in_row, row, s.w, s.pw, p.wq, grid, ops);
        continue;
      }
      double *odd = row + p.wq;
      if (in_row == nullptr) {
        std::fill(row, odd + p.wq, 0.0);
        continue;
      }
      // Plane column q of the even (odd) plane holds input column 2 q - pw (2 q + 1 - pw): in the
      // input for q in [lo, hi) ([odd_lo, odd_hi)). Both planes in one pass over the input row,
      // where both are in it (pairs of columns: a deinterleave), the ends one column at a time.
      const int64_t first = s.pw, last = s.w - 1 + s.pw;
      const int64_t lo = std::min(p.wq, ceil_div(first, 2));
      const int64_t hi = std::max(lo, std::min(p.wq, last / 2 + 1));
      const int64_t odd_first = s.pw - 1, odd_last = s.w + s.pw - 2;
      const int64_t odd_lo = std::min(p.wq, odd_first <= 0 ? int64_t{0} : ceil_div(odd_first, 2));
      const int64_t odd_hi = odd_last < 0 ? odd_lo : std::max(odd_lo, std::min(p.wq, odd_last / 2 + 1));
      const int64_t both_lo = std::max(lo, odd_lo), both_hi = std::max(both_lo, std::min(hi, odd_hi));
      const auto at = [&](int64_t column) { return grid == nullptr ? in_row[column] : round_scalar(in_row[column], *grid); };
      std::fill(row, row + lo, 0.0);
      std::fill(odd, odd + odd_lo, 0.0);
      for (int64_t q = lo; q < std::min(both_lo, hi); ++q) row[q] = at(2 * q - s.pw);
      for (int64_t q = odd_lo; q < std::min(both_lo, odd_hi); ++q) odd[q] = at(2 * q + 1 - s.pw);
      if (both_hi > both_lo)
        ops.split(in_row + (2 * both_lo - s.pw), row + both_lo, odd + both_lo, both_hi - both_lo, grid);
      for (int64_t q = std::max(both_hi, lo); q < hi; ++q) row[q] = at(2 * q - s.pw);
      for (int64_t q = std::max(both_hi, odd_lo); q < odd_hi; ++q) odd[q] = at(2 * q + 1 - s.pw);
      std::fill(odd + odd_hi, odd + p.wq, 0.0);
      std::fill(row + hi, row + p.wq, 0.0);
    }
  }
}

// dst[i] = src[i] + bias (one rounding each), or a copy when there is no bias.
void store_output(const double *src, double *dst, int64_t count, const double *bias) {
  if (bias == nullptr) {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(double));
    return;
  }
  const double b = *bias;
  for (int64_t i = 0; i < count; ++i) dst[i] = src[i] + b;
}

// Work units [begin, end) of the plan. `scratch` (scratch_size doubles) holds a band's padded copy
// or a direct block's copy, then the block's output buffer. grids: one per sample, or null.
void compute_units(const double *input, const double *packed, const double *bias, double *output, const Plan &p,
                   const Grid *grids, const TileTable &table, const RowOps &ops, int64_t begin, int64_t end,
                   double *scratch) {
  const ConvShape &s = p.s;
  const int64_t channel_stride = p.ho * p.wo;
  const int64_t plane = s.h * s.w;
  const int64_t taps_all = p.cg * p.taps_per_channel;
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t split = unit % p.splits, band = unit / p.splits % p.bands;
    const int64_t g = unit / (p.splits * p.bands) % s.groups, n = unit / (p.splits * p.bands * s.groups);
    // Output channels [o_begin, o_end) of the group.
    const int64_t o_begin = split * p.split_tiles * kTileChannels;
    const int64_t o_end = std::min(p.og, o_begin + p.split_tiles * kTileChannels);
    const Grid *grid = grids == nullptr ? nullptr : grids + n;
    const double *channels = input + (n * s.c + g * p.cg) * plane;
    const double *group_packed = packed + g * p.og * taps_all;
    const double *group_bias = bias == nullptr ? nullptr : bias + g * p.og;
    double *group_output = output + (n * s.o + g * p.og) * channel_stride;
    // Rows [y_begin, y_end) and columns [x_begin, x_end) of the unit.
    int64_t y_begin = 0, y_end = 1, x_begin = 0, x_end = p.wo;
    if (p.direct) {
      x_begin = band * p.unit_columns;
      x_end = std::min(p.wo, x_begin + p.unit_columns);
    } else {
      y_begin = band * p.band_rows;
      y_end = std::min(p.ho, y_begin + p.band_rows);
      fill_band(channels, scratch, p, y_begin, y_end - y_begin, grid, ops);
    }
    // The block's output accumulates in a buffer (rows one out_pitch apart, not a multiple of
    // 4 KB as the output's channels may be) and is copied out once complete, plus the bias.
    double *block_output = scratch + p.input_size;
    for (int64_t y = y_begin; y < y_end; ++y) {
      double *row_output = group_output + y * p.wo;
      for (int64_t b0 = x_begin; b0 < x_end; b0 += p.block_columns) {
        const int64_t b1 = std::min(x_end, b0 + p.block_columns);
        // The tiles read source + offsets[tap] + x for output column x (direct plans: x - b0).
        const double *source = scratch + (y - y_begin) * p.row_step;
        if (p.direct) {  // the block's columns of every channel, zero-extended to whole vectors
          const int64_t width = b1 - b0, padded = ceil_div(width, kVector) * kVector;
          for (int64_t c = 0; c < p.cg; ++c) {
            double *row = scratch + c * p.wq;
            ops.copy(channels + c * p.wo + b0, row, width, grid);
            std::fill(row + width, row + padded, 0.0);
          }
        }
        for (int64_t c0 = 0; c0 < p.cg; c0 += p.chunk) {
          const int64_t taps = std::min(p.chunk, p.cg - c0) * p.taps_per_channel;
          const int64_t *offsets = p.offsets.data() + c0 * p.taps_per_channel;
          const bool accumulate = c0 > 0;
          // Tile columns outside, output channels inside: the tile's input (a few KB) stays in
          // L1 while the chunk's weights stream from L2 (measured faster than the other order).
          for (int64_t x0 = b0; x0 < b1; x0 += kTileColumns) {
            for (int64_t o0 = o_begin; o0 < o_end; o0 += kTileChannels) {
              const int64_t columns = std::min<int64_t>(kTileColumns, b1 - x0);
              const int vectors = static_cast<int>(ceil_div(columns, kVector));
              const double *tile_source = source + (p.direct ? x0 - b0 : x0);
              const int64_t m = std::min<int64_t>(kTileChannels, p.og - o0);
              const double *w = group_packed + (p.og * c0 * p.taps_per_channel + o0 * taps);
              table.fn[m - 1][vectors - 1](tile_source, offsets, w, taps,
                                           block_output + (o0 - o_begin) * p.out_pitch + (x0 - b0), p.out_pitch,
                                           static_cast<int>(columns), accumulate);
            }
          }
        }
        for (int64_t o = o_begin; o < o_end; ++o)
          store_output(block_output + (o - o_begin) * p.out_pitch, row_output + o * channel_stride + b0, b1 - b0,
                       group_bias == nullptr ? nullptr : group_bias + o);
      }
    }
  }
}

// How a depthwise convolution of stride 1 is cut into work: units are bands of output rows of
// one (sample, channel) plane.
struct DepthwisePlan {
  ConvShape s;
  int64_t ho = 0, wo = 0;
  int64_t taps = 0;               // kh * kw
  int64_t wq = 0;                 // pitch of the ring's rows (padded input rows)
  int64_t bands = 0, band_rows = 0;
  int64_t scratch_size = 0;       // the ring: kh rows of wq doubles

  int64_t units() const { return s.n * s.c * bands; }
};

DepthwisePlan make_depthwise_plan(const ConvShape &s, int threads) {
  DepthwisePlan p;
  p.s = s;
  p.ho = s.ho();
  p.wo = s.wo();
  p.taps = s.kh * s.kw;
  p.wq = row_pitch(ceil_div(p.wo, kVector) * kVector + s.kw - 1);
  // Bands only when there are too few planes for the threads (each band makes kh - 1 rows again).
  p.bands = std::clamp<int64_t>(ceil_div(2 * int64_t{threads}, s.n * s.c), 1, p.ho);
  if (threads == 1) p.bands = 1;
  p.band_rows = ceil_div(p.ho, p.bands);
  p.bands = ceil_div(p.ho, p.band_rows);
  p.scratch_size = s.kh * p.wq;
  return p;
}

// Depthwise work units [begin, end). ring: scratch_size doubles; offsets: taps int64s.
void depthwise_units(const double *input, const double *weight, const double *bias, double *output,
                     const DepthwisePlan &p, const Grid *grids, const TileTable &table, const RowOps &ops,
                     int64_t begin, int64_t end, double *ring, int64_t *offsets) {
  const ConvShape &s = p.s;
  const TileFn *tile = table.fn[0];  // one output channel
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t band = unit % p.bands, c = unit / p.bands % s.c, n = unit / (p.bands * s.c);
    const Grid *grid = grids == nullptr ? nullptr : grids + n;
    const double *in_plane = input + (n * s.c + c) * s.h * s.w;
    double *out_plane = output + (n * s.o + c) * p.ho * p.wo;
    const double *w = weight + c * p.taps;  // [kh, kw]: the tile's tap order, one channel
    const int64_t y0 = band * p.band_rows, y1 = std::min(p.ho, y0 + p.band_rows);
    // Padded row r (input row r - ph) lives in ring row r % kh.
    const auto make_row = [&](int64_t r) {
      const int64_t iy = r - s.ph;
      fill_row(iy < 0 || iy >= s.h ? nullptr : in_plane + iy * s.w, ring + r % s.kh * p.wq, s.w, s.pw, p.wq, grid,
               ops);
    };
    for (int64_t r = y0; r < y0 + s.kh - 1; ++r) make_row(r);
    for (int64_t y = y0; y < y1; ++y) {
      make_row(y + s.kh - 1);
      double *out_row = out_plane + y * p.wo;
      if (s.kh == 3 && s.kw == 3) {
        const double *rows[3] = {ring + y % 3 * p.wq, ring + (y + 1) % 3 * p.wq, ring + (y + 2) % 3 * p.wq};
        ops.depthwise3(rows, w, bias == nullptr ? nullptr : bias + c, out_row, p.wo);
        continue;
      }
      for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx) offsets[ky * s.kw + kx] = (y + ky) % s.kh * p.wq + kx;
      for (int64_t x0 = 0; x0 < p.wo; x0 += kTileColumns) {
        const int64_t columns = std::min<int64_t>(kTileColumns, p.wo - x0);
        tile[ceil_div(columns, kVector) - 1](ring + x0, offsets, w, p.taps, out_row + x0, 0,
                                             static_cast<int>(columns), false);
      }
      if (bias != nullptr) store_output(out_row, out_row, p.wo, bias + c);
    }
  }
}

}  // namespace

void check_arguments(const ConvShape &s, int activation_bits, int threads) {
  const auto fail = [](const std::string &what) { throw std::invalid_argument(what); };
  if (s.n < 1 || s.c < 1 || s.h < 1 || s.w < 1)
    fail("input must have positive sizes [N, C, H, W], got [" + std::to_string(s.n) + ", " +
         std::to_string(s.c) + ", " + std::to_string(s.h) + ", " + std::to_string(s.w) + "]");
  if (s.groups < 1) fail("groups must be positive, got " + std::to_string(s.groups));
  if (s.o < 1 || s.kh < 1 || s.kw < 1)
    fail("weight must have positive sizes [O, C / groups, kh, kw], got [" + std::to_string(s.o) + ", " +
         std::to_string(s.c / s.groups) + ", " + std::to_string(s.kh) + ", " + std::to_string(s.kw) + "]");
  if (s.c % s.groups != 0 || s.o % s.groups != 0)
    fail("groups (" + std::to_string(s.groups) + ") must divide the input channels (" + std::to_string(s.c) +
         ") and the output channels (" + std::to_string(s.o) + ")");
  if (s.stride != 1 && s.stride != 2) fail("stride must be 1 or 2, got " + std::to_string(s.stride));
  if (s.ph < 0 || s.pw < 0 || s.ph > kMaxPadding || s.pw > kMaxPadding)
    fail("padding must be in 0.." + std::to_string(kMaxPadding) + ", got (" + std::to_string(s.ph) + ", " +
         std::to_string(s.pw) + ")");
  if (s.h + 2 * s.ph < s.kh || s.w + 2 * s.pw < s.kw)
    fail("kernel " + std::to_string(s.kh) + "x" + std::to_string(s.kw) + " is larger than the padded input " +
         std::to_string(s.h + 2 * s.ph) + "x" + std::to_string(s.w + 2 * s.pw));
  if (activation_bits != kNoRounding && (activation_bits < 1 || activation_bits > kMaxActivationBits))
    fail("activation_bits must be in 1.." + std::to_string(kMaxActivationBits) + " (or none), got " +
         std::to_string(activation_bits));
  if (threads < 1 || threads > kMaxThreads)
    fail("threads must be in 1.." + std::to_string(kMaxThreads) + ", got " + std::to_string(threads));
}

Isa best_isa() {
#if SEVC_EXACT_X86
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kGeneric:
      return "generic";
    default:
      return "auto";
  }
}

void conv2d(const double *input, const double *weight, const double *bias, double *output, const ConvShape &shape,
            int activation_bits, int threads, Isa isa) {
  check_arguments(shape, activation_bits, threads);
  if (isa == Isa::kAuto) isa = best_isa();
  if (isa == Isa::kAvx2 && best_isa() != Isa::kAvx2)
    throw std::invalid_argument("the avx2 kernel needs a CPU with AVX2 and FMA");
  const TileTable &table = tiles(isa);
  const RowOps &ops = row_ops(isa);
  // Threads only for work enough to pay for starting them (about 30 us each).
  const double fmas = static_cast<double>(shape.n * shape.o * shape.ho() * shape.wo()) *
                      static_cast<double>(shape.group_c() * shape.kh * shape.kw);
  threads = static_cast<int>(std::clamp<double>(fmas / kMinThreadWork, 1, threads));
  // The grids of the samples (a pass over the input for their maxima), before the convolution.
  std::vector<Grid> grids;
  if (activation_bits != kNoRounding) grids = find_grids(input, shape, activation_bits, threads, ops);
  const Grid *sample_grids = grids.empty() ? nullptr : grids.data();
  std::unique_ptr<double[]> fallback;
  if (shape.groups == shape.c && shape.groups == shape.o && shape.stride == 1) {
    const DepthwisePlan plan = make_depthwise_plan(shape, threads);
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, plan.units()));
    std::vector<int64_t> offsets(static_cast<size_t>(parts * plan.taps));
    double *scratch = scratch_memory(static_cast<size_t>(parts * plan.scratch_size), fallback);
    parallel_for(threads, plan.units(), [&](int64_t part, int64_t begin, int64_t end) {
      depthwise_units(input, weight, bias, output, plan, sample_grids, table, ops, begin, end,
                      scratch + part * plan.scratch_size, offsets.data() + part * plan.taps);
    });
    return;
  }
  const Plan plan = make_plan(shape, threads);
  // The packed weights and every thread's scratch, allocated before any thread starts.
  const int64_t units = plan.units();
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, units));
  const int64_t packed_size = shape.o * plan.cg * plan.taps_per_channel;
  const int64_t packed_span = ceil_div(packed_size, kCacheLine) * kCacheLine;  // keeps scratch aligned
  double *packed = scratch_memory(static_cast<size_t>(packed_span + parts * plan.scratch_size), fallback);
  double *scratch = packed + packed_span;
  pack_weights(weight, plan, packed);
  parallel_for(threads, units, [&](int64_t part, int64_t begin, int64_t end) {
    compute_units(input, packed, bias, output, plan, sample_grids, table, ops, begin, end,
                  scratch + part * plan.scratch_size);
  });
}

}  // namespace exact
}  // namespace sevc
