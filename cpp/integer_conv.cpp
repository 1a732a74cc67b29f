// sevc: the integer convolution of the integer numerics mode (see integer_conv.h).
//
// A call makes three passes:
//   exponents   the largest magnitude of every sample (as integer bit patterns: exact, and NaN and
//               infinities recognised on the way), hence its grid;
//   quantize    every sample onto its grid, into zero-padded planes per channel of the high and low
//               bytes of its integers (h = a >> 8 in [-128, 127], l = a & 255; a = 256 h + l);
//   convolve    work units of a band of output pixels of one sample and one group of channels
//               (and, when there are fewer units than threads, of a range of its output
//               channels). A unit packs its pixels' taps from the planes into two panels (high,
//               low), im2col style, in int16 pairs of consecutive taps, [pairs][pixels][2]; then
//               register tiles of a few output channels x a few vectors of kVector pixels
//               multiply-add the pairs with the weights' pairs (pmaddwd / vpdpwssd: two products summed into an int32 lane)
//               for at most kChunkPairs pairs, and add their int32 sums into int64 ones; last,
//               S = 256 sum_h + sum_l is scaled, the bias added, and the floats stored.
// Bounds: |h q| <= 128 * 32768 and |l q| <= 255 * 32768, so a pair sums to less than 2 ** 24 and
// kChunkPairs = 127 pairs to less than 2 ** 31: the int32 sums never overflow, for any int16
// weights. Every kernel computes the same S, so the output does not depend on the kernel, the
// blocking or the threads.
#include "integer_conv.h"
#include "parallel.h"
#include "scratch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEVC_INTEGER_X86 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 headers pass undefined vectors to the builtins of unmasked operations, which
// -Wmaybe-uninitialized reports (falsely) wherever they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#else
#define SEVC_INTEGER_X86 0
#endif

namespace sevc {
namespace integer {
namespace {

constexpr int64_t kVector = 16;             // pixels per vector: one AVX-512 register of int32 sums
constexpr int64_t kChunkPairs = 127;        // pairs summed in int32 before widening (see the top)
constexpr int64_t kPanelBudget = 256 * 1024;  // bytes of a unit's panel (L2)
constexpr int64_t kMaxBlockVectors = 48;    // at most 768 pixels per unit
constexpr int64_t kMinThreadWork = int64_t{1} << 20;  // multiply-adds per thread, at least
constexpr int64_t kAmxMaxTaps = int64_t{1} << 15;     // AMX's int32 tiles hold sums of fewer taps

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// What a register tile reads and writes: the panel rows of its first pair (`high`, `low`, at its
// first vector), `row` int16 per pair row; the weight words of its first pair and channel,
// `w_stride` words per pair; and the int64 sums of its first channel and pixel, `sum_stride`
// per channel, to which it adds.
struct Tile {
  const int16_t *high, *low;
  int64_t row;
  const int32_t *w;
  int64_t w_stride;
  int64_t pairs;  // <= kChunkPairs
  int64_t *sum_high, *sum_low;
  int64_t sum_stride;
};

using TileFn = void (*)(const Tile &);

// The geometry of a call: the input planes (h x w, padded hp x wp), the output (ho x wo), the taps
// of an output channel (cg channels x kh x kw) and their pairs, the groups, and a unit's pixels.
struct Geometry {
  int64_t c, h, w, ph, pw, hp, wp, ho, wo, stride;
  int64_t taps, pairs, kh, kw, cg, go, groups;
  int64_t block;  // pixels per unit, a multiple of kVector
};

// The portable tile: C channels x V vectors, in plain C++.
template <int C, int V>
void tile_generic(const Tile &t) {
  for (int v = 0; v < V; ++v) {
    int32_t high[C][kVector] = {}, low[C][kVector] = {};
    for (int64_t k = 0; k < t.pairs; ++k) {
      const int16_t *h = t.high + k * t.row + v * 2 * kVector;
      const int16_t *l = t.low + k * t.row + v * 2 * kVector;
      for (int c = 0; c < C; ++c) {
        const int32_t word = t.w[k * t.w_stride + c];
        const int32_t w0 = static_cast<int16_t>(word & 0xFFFF), w1 = static_cast<int16_t>(word >> 16);
        for (int i = 0; i < kVector; ++i) {
          high[c][i] += h[2 * i] * w0 + h[2 * i + 1] * w1;
          low[c][i] += l[2 * i] * w0 + l[2 * i + 1] * w1;
        }
      }
    }
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < kVector; ++i) {
        t.sum_high[c * t.sum_stride + v * kVector + i] += high[c][i];
        t.sum_low[c * t.sum_stride + v * kVector + i] += low[c][i];
      }
  }
}

// The largest |x[i]| of count floats as a bit pattern (at least 0x7F800000 with an infinity or a NaN).
uint32_t largest_generic(const float *x, int64_t count) {
  uint32_t largest = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    largest = std::max(largest, bits & 0x7FFFFFFFu);
  }
  return largest;
}

// One row of a sample onto its grid: high[i] = a >> 8, low[i] = a & 255 of
// a = clamp(round_half_even(x[i] * scale), -32768, 32767), 0 for NaN.
void quantize_generic(const float *x, int64_t count, float scale, int16_t *high, int16_t *low) {
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i] * scale;
    const float clamped = std::min(std::max(v, -32768.0f), 32767.0f);  // NaN stays NaN
    const int a = v == v ? static_cast<int>(std::nearbyint(clamped)) : 0;
    high[i] = static_cast<int16_t>(a >> 8);
    low[i] = static_cast<int16_t>(a & 0xFF);
  }
}

// dst[2 j] = a[j * stride], dst[2 j + 1] = b[j * stride] (0 if b is null: no such tap) for
// j < count: two taps' pixels as pairs.
void zip_generic(const int16_t *a, const int16_t *b, int64_t count, int64_t stride, int16_t *dst) {
  for (int64_t j = 0; j < count; ++j) {
    dst[2 * j] = a[j * stride];
    dst[2 * j + 1] = b ? b[j * stride] : int16_t{0};
  }
}

// dst[j] = float(double(256 sum_high[j] + sum_low[j]) * scale [+ bias]) for j < count.
void finish_generic(const int64_t *sum_high, const int64_t *sum_low, int64_t count, double scale, const double *bias,
                    float *dst) {
  for (int64_t j = 0; j < count; ++j) {
    const double y = static_cast<double>(256 * sum_high[j] + sum_low[j]) * scale;
    dst[j] = static_cast<float>(bias ? y + *bias : y);
  }
}

// One channel of a depthwise convolution (one input and one output channel per group) from its
// padded planes of high and low bytes: out[p] = float(S * scale [+ bias]), S = sum a * q over the
// kh x kw taps, each a = 256 h + l; in doubles, exact (every product below 2 ** 31, the sums below
// 2 ** 53), whatever the order or fusing of the operations.
void depthwise_generic(const int16_t *high, const int16_t *low, const Geometry &g, const double *q, double scale,
                       const double *bias, float *out) {
  for (int64_t y = 0; y < g.ho; ++y)
    for (int64_t x = 0; x < g.wo; ++x) {
      double sum = 0.0;
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t at = (y * g.stride + ky) * g.wp + x * g.stride + kx;
          sum += static_cast<double>(256 * high[at] + low[at]) * q[ky * g.kw + kx];
        }
      const double value = sum * scale;
      out[y * g.wo + x] = static_cast<float>(bias ? value + *bias : value);
    }
}

#if SEVC_INTEGER_X86
// The accumulators of a register tile as named variables (an array of vectors would live on the
// stack): X(c, v) for channel c < 4 and vector v < 3.
#define SEVC_TILE_ALL(X) X(0, 0) X(0, 1) X(0, 2) X(1, 0) X(1, 1) X(1, 2) X(2, 0) X(2, 1) X(2, 2) X(3, 0) X(3, 1) X(3, 2)
#define SEVC_AVX2 __attribute__((target("avx2")))

// sums[0..8) += the 8 int32 lanes of `lanes`, widened.
SEVC_AVX2 inline void add_sums_avx2(int64_t *sums, __m256i lanes) {
  __m256i *lo = reinterpret_cast<__m256i *>(sums), *hi = reinterpret_cast<__m256i *>(sums + 4);
  _mm256_storeu_si256(lo, _mm256_add_epi64(_mm256_loadu_si256(lo), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes))));
  _mm256_storeu_si256(hi, _mm256_add_epi64(_mm256_loadu_si256(hi), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(lanes, 1))));
}

// AVX2: a vector of 16 pixels is two registers of 8 (the v < 2 of SEVC_TILE_ALL); C <= 2 channels.
template <int C, int V>
SEVC_AVX2 void tile_avx2(const Tile &t) {
  static_assert(V == 1 && C <= 2, "the AVX2 tile covers up to 2 channels x one vector");
#define SEVC_ZERO(c, v) __m256i h##c##v = _mm256_setzero_si256(), l##c##v = h##c##v;
  SEVC_TILE_ALL(SEVC_ZERO)
#undef SEVC_ZERO
  for (int64_t k = 0; k < t.pairs; ++k) {
    const int16_t *h = t.high + k * t.row, *l = t.low + k * t.row;
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(h));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(h + 16));
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(l));
    const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(l + 16));
    const __m256i x2 = x0, y2 = y0;  // (names for the macro; no third register)
    __m256i w;
#define SEVC_MADD(c, v)                                                  \
  if constexpr (C > c && v < 2) {                                        \
    if (v == 0) w = _mm256_set1_epi32(t.w[k * t.w_stride + c]);          \
    h##c##v = _mm256_add_epi32(h##c##v, _mm256_madd_epi16(x##v, w));     \
    l##c##v = _mm256_add_epi32(l##c##v, _mm256_madd_epi16(y##v, w));     \
  }
    SEVC_TILE_ALL(SEVC_MADD)
#undef SEVC_MADD
  }
#define SEVC_WIDEN(c, v)                                                                    \
  if constexpr (C > c && v < 2) {                                                           \
    add_sums_avx2(t.sum_high + c * t.sum_stride + 8 * v, h##c##v);                          \
    add_sums_avx2(t.sum_low + c * t.sum_stride + 8 * v, l##c##v);                           \
  }
  SEVC_TILE_ALL(SEVC_WIDEN)
#undef SEVC_WIDEN
}

SEVC_AVX2 uint32_t largest_avx2(const float *x, int64_t count) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i largest = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    largest = _mm256_max_epu32(largest, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(x + i)),
                                                          magnitude));
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i *>(lanes), largest);
  return std::max(*std::max_element(lanes, lanes + 8), largest_generic(x + i, count - i));
}

SEVC_AVX2 void quantize_avx2(const float *x, int64_t count, float scale, int16_t *high, int16_t *low) {
  const __m256 s = _mm256_set1_ps(scale), lo = _mm256_set1_ps(-32768.0f), hi = _mm256_set1_ps(32767.0f);
  const __m256i bytes = _mm256_set1_epi32(0xFF);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
    const __m256 ordered = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
    const __m256 r = _mm256_round_ps(_mm256_min_ps(_mm256_max_ps(v, lo), hi),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i a = _mm256_cvtps_epi32(_mm256_and_ps(r, ordered));  // NaN -> 0
    // high | low as int16, in order: pack within 128-bit lanes, then order the 64-bit quarters.
    const __m256i both = _mm256_permute4x64_epi64(
        _mm256_packs_epi32(_mm256_srai_epi32(a, 8), _mm256_and_si256(a, bytes)), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(high + i), _mm256_castsi256_si128(both));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(low + i), _mm256_extracti128_si256(both, 1));
  }
  quantize_generic(x + i, count - i, scale, high + i, low + i);
}

SEVC_AVX2 void zip_avx2(const int16_t *a, const int16_t *b, int64_t count, int64_t stride, int16_t *dst) {
  int64_t j = 0;
  if (stride == 1)
    for (; j + 16 <= count; j += 16) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + j));
      const __m256i y = b ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b + j)) : _mm256_setzero_si256();
      const __m256i lo = _mm256_unpacklo_epi16(x, y), hi = _mm256_unpackhi_epi16(x, y);
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(dst + 2 * j), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(dst + 2 * j + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
  zip_generic(a + j * stride, b ? b + j * stride : nullptr, count - j, stride, dst + 2 * j);
}

// Doubles from int64 lanes |v| < 2 ** 51 (AVX2 has no such conversion): the bits of
// 2 ** 52 + 2 ** 51 + v as a double, minus 2 ** 52 + 2 ** 51; both steps exact.
SEVC_AVX2 inline __m256d int64_to_double(__m256i v) {
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(v, _mm256_castpd_si256(magic))), magic);
}

SEVC_AVX2 void finish_avx2(const int64_t *sum_high, const int64_t *sum_low, int64_t count, double scale,
                           const double *bias, float *dst) {
  const __m256d s = _mm256_set1_pd(scale), b = _mm256_set1_pd(bias ? *bias : 0.0);
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    const __m256i sh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(sum_high + j));
    const __m256i sl = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(sum_low + j));
    __m256d y = _mm256_mul_pd(int64_to_double(_mm256_add_epi64(_mm256_slli_epi64(sh, 8), sl)), s);
    if (bias) y = _mm256_add_pd(y, b);
    _mm_storeu_ps(dst + j, _mm256_cvtpd_ps(y));
  }
  finish_generic(sum_high + j, sum_low + j, count - j, scale, bias, dst + j);
}

#define SEVC_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

// sums[0..16) += the 16 int32 lanes of `lanes`, widened.
SEVC_AVX512 inline void add_sums_avx512(int64_t *sums, __m512i lanes) {
  const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lanes));
  const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(lanes, 1));
  _mm512_storeu_si512(sums, _mm512_add_epi64(_mm512_loadu_si512(sums), lo));
  _mm512_storeu_si512(sums + 8, _mm512_add_epi64(_mm512_loadu_si512(sums + 8), hi));
}

// AVX-512 VNNI: C <= 4 channels x V <= 3 vectors of 16 pixels by vpdpwssd (24 accumulators, 6
// panel registers, one broadcast weight).
template <int C, int V>
SEVC_AVX512 void tile_avx512(const Tile &t) {
#define SEVC_ZERO(c, v) __m512i h##c##v = _mm512_setzero_si512(), l##c##v = h##c##v;
  SEVC_TILE_ALL(SEVC_ZERO)
#undef SEVC_ZERO
  for (int64_t k = 0; k < t.pairs; ++k) {
    const int16_t *h = t.high + k * t.row, *l = t.low + k * t.row;
    const __m512i x0 = _mm512_loadu_si512(h), y0 = _mm512_loadu_si512(l);
    const __m512i x1 = V > 1 ? _mm512_loadu_si512(h + 32) : x0, y1 = V > 1 ? _mm512_loadu_si512(l + 32) : y0;
    const __m512i x2 = V > 2 ? _mm512_loadu_si512(h + 64) : x0, y2 = V > 2 ? _mm512_loadu_si512(l + 64) : y0;
    __m512i w;
#define SEVC_DP(c, v)                                               \
  if constexpr (C > c && V > v) {                                   \
    if (v == 0) w = _mm512_set1_epi32(t.w[k * t.w_stride + c]);     \
    h##c##v = _mm512_dpwssd_epi32(h##c##v, x##v, w);                \
    l##c##v = _mm512_dpwssd_epi32(l##c##v, y##v, w);                \
  }
    SEVC_TILE_ALL(SEVC_DP)
#undef SEVC_DP
  }
#define SEVC_WIDEN(c, v)                                                       \
  if constexpr (C > c && V > v) {                                              \
    add_sums_avx512(t.sum_high + c * t.sum_stride + v * kVector, h##c##v);     \
    add_sums_avx512(t.sum_low + c * t.sum_stride + v * kVector, l##c##v);      \
  }
  SEVC_TILE_ALL(SEVC_WIDEN)
#undef SEVC_WIDEN
}
#undef SEVC_TILE_ALL

SEVC_AVX512 inline __mmask16 first16(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1);
}

SEVC_AVX512 inline __mmask32 first32(int64_t count) {
  return count >= 32 ? __mmask32(0xFFFFFFFFu) : count <= 0 ? __mmask32(0) : __mmask32((1u << count) - 1);
}

SEVC_AVX512 uint32_t largest_avx512(const float *x, int64_t count) {
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i largest = _mm512_setzero_si512();
  for (int64_t i = 0; i < count; i += 16)
    largest = _mm512_max_epu32(largest, _mm512_and_si512(_mm512_maskz_loadu_epi32(first16(count - i), x + i),
                                                         magnitude));
  return _mm512_reduce_max_epu32(largest);
}

SEVC_AVX512 void quantize_avx512(const float *x, int64_t count, float scale, int16_t *high, int16_t *low) {
  const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-32768.0f), hi = _mm512_set1_ps(32767.0f);
  const __m512i bytes = _mm512_set1_epi32(0xFF);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 m = first16(count - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s);
    const __mmask16 ordered = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
    const __m512 r = _mm512_roundscale_ps(_mm512_min_ps(_mm512_max_ps(v, lo), hi),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512i a = _mm512_maskz_cvtps_epi32(ordered, r);  // NaN -> 0
    _mm256_mask_storeu_epi16(high + i, m, _mm512_cvtepi32_epi16(_mm512_srai_epi32(a, 8)));
    _mm256_mask_storeu_epi16(low + i, m, _mm512_cvtepi32_epi16(_mm512_and_si512(a, bytes)));
  }
}

// The `count` (<= 32) words src[j * stride], src[(j + 1) * stride], ... (zeros past them, and
// for a null src); `even` picks the even words of two registers. With stride 2 only the words up
// to the last one taken are read (a row may end there).
SEVC_AVX512 inline __m512i strided_words(const int16_t *src, int64_t j, int64_t count, int64_t stride,
                                         __m512i even) {
  if (!src) return _mm512_setzero_si512();
  if (stride == 1) return _mm512_maskz_loadu_epi16(first32(count), src + j);
  return _mm512_permutex2var_epi16(_mm512_maskz_loadu_epi16(first32(2 * count - 1), src + 2 * j), even,
                                   _mm512_maskz_loadu_epi16(first32(2 * count - 33), src + 2 * j + 32));
}

SEVC_AVX512 void zip_avx512(const int16_t *a, const int16_t *b, int64_t count, int64_t stride, int16_t *dst) {
  // word indexes of _mm512_permutex2var_epi16 (32 and up: the second operand): the pairs of the
  // first 16 words of both, and the even words of two registers.
  alignas(64) static const int16_t kZip[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                               8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const int16_t kEven[32] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
                                                32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62};
  const __m512i zip_low = _mm512_load_si512(kZip), even = _mm512_load_si512(kEven);
  const __m512i zip_high = _mm512_add_epi16(zip_low, _mm512_set1_epi16(16));
  for (int64_t j = 0; j < count; j += 32) {
    const int64_t left = std::min<int64_t>(32, count - j);
    const __m512i x = strided_words(a, j, left, stride, even), y = strided_words(b, j, left, stride, even);
    _mm512_mask_storeu_epi16(dst + 2 * j, first32(2 * left), _mm512_permutex2var_epi16(x, zip_low, y));
    if (left > 16) _mm512_mask_storeu_epi16(dst + 2 * j + 32, first32(2 * left - 32), _mm512_permutex2var_epi16(x, zip_high, y));
  }
}

// Depthwise (see depthwise_generic): 16 pixels of a row at a time, a taken from the planes as
// int16 (256 h + l fits), as doubles with the weights' doubles.
SEVC_AVX512 void depthwise_avx512(const int16_t *high, const int16_t *low, const Geometry &g, const double *q,
                                  double scale, const double *bias, float *out) {
  alignas(64) static const int16_t kEven[32] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
                                                32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62};
  const __m512i even = _mm512_load_si512(kEven);
  const __m512d s = _mm512_set1_pd(scale), b = _mm512_set1_pd(bias ? *bias : 0.0);
  for (int64_t y = 0; y < g.ho; ++y)
    for (int64_t x = 0; x < g.wo; x += 16) {
      const int64_t pixels = std::min<int64_t>(16, g.wo - x);
      __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t at = (y * g.stride + ky) * g.wp + x * g.stride + kx;
          const __m512i h = strided_words(high + at, 0, pixels, g.stride, even);
          const __m512i l = strided_words(low + at, 0, pixels, g.stride, even);
          const __m512i a = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(_mm512_add_epi16(_mm512_slli_epi16(h, 8), l)));
          const __m512d w = _mm512_set1_pd(q[ky * g.kw + kx]);
          sum0 = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(a)), w, sum0);
          sum1 = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(a, 1)), w, sum1);
        }
      __m512d y0 = _mm512_mul_pd(sum0, s), y1 = _mm512_mul_pd(sum1, s);
      if (bias) y0 = _mm512_add_pd(y0, b), y1 = _mm512_add_pd(y1, b);
      const __mmask16 m = first16(pixels);
      _mm256_mask_storeu_ps(out + y * g.wo + x, static_cast<__mmask8>(m), _mm512_cvtpd_ps(y0));
      if (pixels > 8) _mm256_mask_storeu_ps(out + y * g.wo + x + 8, static_cast<__mmask8>(m >> 8), _mm512_cvtpd_ps(y1));
    }
}

SEVC_AVX512 void finish_avx512(const int64_t *sum_high, const int64_t *sum_low, int64_t count, double scale,
                               const double *bias, float *dst) {
  const __m512d s = _mm512_set1_pd(scale), b = _mm512_set1_pd(bias ? *bias : 0.0);
  for (int64_t j = 0; j < count; j += 8) {
    const __mmask8 m = count - j >= 8 ? __mmask8(0xFF) : __mmask8((1u << (count - j)) - 1);
    const __m512i sh = _mm512_maskz_loadu_epi64(m, sum_high + j), sl = _mm512_maskz_loadu_epi64(m, sum_low + j);
    __m512d y = _mm512_mul_pd(_mm512_cvtepi64_pd(_mm512_add_epi64(_mm512_slli_epi64(sh, 8), sl)), s);
    if (bias) y = _mm512_add_pd(y, b);
    _mm256_mask_storeu_ps(dst + j, m, _mm512_cvtpd_ps(y));
  }
}

// AMX (dense convolutions): with a' = a + 32768 = 256 h' + l (h' = h + 128; both unsigned bytes)
// and q = 256 q_h + q_l (signed bytes), S = 65536 sum q_h h' + 256 (sum q_h l + sum q_l h')
// + sum q_l l - 32768 sum q: four tile products (TDPBSUD: signed x unsigned bytes) into three
// int32 tiles of 16 channels x 16 pixels; with |q_h h'| and the like below 2 ** 15, they hold
// any sum of fewer than kAmxMaxTaps taps.
#define SEVC_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

// Tiles 0-6 as 16 rows of 64 bytes.
constexpr TileConfig kTileConfig = {1, 0, {}, {64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16}};

// Configures the calling thread's tiles.
SEVC_AMX void configure_tiles() { _tile_loadconfig(&kTileConfig); }

SEVC_AMX void release_tiles() { _tile_release(); }

// Packs pixels [p0, p0 + count) of the output plane of a dense convolution from its planes into a
// panel of unsigned bytes [quads][block][4] (4 consecutive taps per pixel; taps past the last are
// 0): `flip` 0x80 makes the high bytes h' = h + 128, 0 keeps the low bytes l.
SEVC_AMX void pack_amx(const int16_t *planes, const Geometry &g, int64_t p0, int64_t count, int flip,
                       uint8_t *panel) {
  const int64_t quads = (g.taps + 63) / 64 * 16, area = g.kh * g.kw;
  std::fill(panel, panel + quads * g.block * 4, uint8_t{0});
  const __m512i bytes = _mm512_set1_epi32(0xFF), flips = _mm512_set1_epi32(flip);
  for (int64_t q = 0; q < (g.taps + 3) / 4; ++q) {
    int64_t y = p0 / g.wo, x = p0 % g.wo;
    for (int64_t j = 0; j < count;) {
      const int64_t run = std::min(count - j, g.wo - x);
      const int16_t *src[4];
      for (int t = 0; t < 4; ++t) {
        const int64_t k = 4 * q + t;
        src[t] = k < g.taps ? planes + (k / area) * g.hp * g.wp + (y * g.stride + k / g.kw % g.kh) * g.wp +
                                  x * g.stride + k % g.kw
                            : nullptr;
      }
      uint32_t *dst = reinterpret_cast<uint32_t *>(panel) + q * g.block + j;
      for (int64_t i = 0; i < run; i += 16) {
        const __mmask16 m = first16(run - i);
        __m512i word = _mm512_setzero_si512();
        for (int t = 0; t < 4; ++t) {
          if (!src[t]) continue;
          __m512i v;
          if (g.stride == 1) {
            v = _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, src[t] + i));
          } else {  // the even words: the low halves of 16 int32 lanes
            const __mmask32 both = first32(2 * (run - i) - 1);
            v = _mm512_cvtepi16_epi32(_mm512_cvtepi32_epi16(_mm512_maskz_loadu_epi16(both, src[t] + 2 * i)));
          }
          v = _mm512_and_si512(_mm512_xor_si512(v, flips), bytes);
          word = _mm512_or_si512(word, _mm512_slli_epi32(v, 8 * t));
        }
        _mm512_mask_storeu_epi32(dst + i, m, word);
      }
      j += run;
      x = 0;
      ++y;
    }
  }
}

// Lanes [8 half, 8 half + 8) of a stored tile row as doubles.
SEVC_AMX inline __m512d tile_lanes(const int32_t *row, int half) {
  return _mm512_cvtepi32_pd(_mm256_load_si256(reinterpret_cast<const __m256i *>(row + 8 * half)));
}

// Per output channel of one sample: the scale 2 ** (e - 15 + e_o - 15) of its sums, -32768 sum q (the
// offset of a' = a + 32768 in the AMX kernels' sums) and the bias (0 without one).
struct Epilogue {
  std::vector<double> scale, offset, bias;
  Epilogue(const IntegerWeight &weight, int exponent, const double *bias_) {
    for (int64_t o = 0; o < weight.o; ++o) {
      scale.push_back(std::ldexp(1.0, exponent - kActivationBits + weight.exponents()[o] - kActivationBits));
      offset.push_back(-32768.0 * static_cast<double>(weight.total(o)));
      bias.push_back(bias_ ? bias_[o] : 0.0);
    }
  }
};

// Stores tiles 0-2 (the int32 sums of 16 channels x 16 pixels: the high x high products, the
// mixed ones, the low x low ones) and writes out[r * plane + i] for the first `channels` channels
// (of block `block`) and `pixels` pixels: S = 65536 hh + 256 x + ll - 32768 sum q, exact in a double
// (every term and partial sum an integer below 2 ** 53, fused or not), scaled, the bias added
// (adding 0 changes no value: S is never -0), rounded to float.
SEVC_AMX void finish_tiles(const Epilogue &epilogue, int64_t block, int channels, int64_t pixels, float *out,
                           int64_t plane) {
  alignas(64) int32_t sums[3][16][16];
  _tile_stored(0, sums[0], 64);
  _tile_stored(1, sums[1], 64);
  _tile_stored(2, sums[2], 64);
  const __m512d high = _mm512_set1_pd(65536.0), middle = _mm512_set1_pd(256.0);
  const __mmask8 m0 = static_cast<__mmask8>(pixels >= 8 ? 0xFF : (1u << pixels) - 1);
  const __mmask8 m1 = static_cast<__mmask8>(pixels >= 16 ? 0xFF : pixels <= 8 ? 0 : (1u << (pixels - 8)) - 1);
  for (int r = 0; r < channels; ++r) {
    const int64_t o = block * 16 + r;
    const __m512d scale = _mm512_set1_pd(epilogue.scale[o]), offset = _mm512_set1_pd(epilogue.offset[o]);
    const __m512d bias = _mm512_set1_pd(epilogue.bias[o]);
    for (int half = 0; half < 2; ++half) {
      const __m512d low = _mm512_add_pd(tile_lanes(sums[2][r], half), offset);
      const __m512d s = _mm512_fmadd_pd(tile_lanes(sums[0][r], half), high,
                                        _mm512_fmadd_pd(tile_lanes(sums[1][r], half), middle, low));
      _mm256_mask_storeu_ps(out + r * plane + 8 * half, half ? m1 : m0, _mm512_cvtpd_ps(_mm512_fmadd_pd(s, scale, bias)));
    }
  }
}

// The four products of one block of taps into tiles 0-2: weight tiles at `a` (high, then low 1 KB
// later), panel or plane tiles at `high` and `low` with `stride` bytes between their rows.
SEVC_AMX inline void multiply_tiles(const int8_t *a, const uint8_t *high, const uint8_t *low, int64_t stride) {
  _tile_loadd(3, a, 64);
  _tile_loadd(4, a + 1024, 64);
  _tile_loadd(5, high, stride);
  _tile_loadd(6, low, stride);
  _tile_dpbsud(0, 3, 5);
  _tile_dpbsud(1, 3, 6);
  _tile_dpbsud(1, 4, 5);
  _tile_dpbsud(2, 4, 6);
}

// The output channels [o0, o1) (o0 a multiple of 16) of a dense convolution for one packed unit.
SEVC_AMX void convolve_unit_amx(const uint8_t *high, const uint8_t *low, const Geometry &g,
                                const IntegerWeight &weight, int64_t o0, int64_t o1, const Epilogue &epilogue,
                                int64_t p0, int64_t count, float *out) {
  const int64_t stride = g.block * 4, plane = g.ho * g.wo, blocks = weight.tap_blocks();
  for (int64_t ob = o0 / 16; ob * 16 < o1; ++ob) {
    const int8_t *tiles = weight.amx_tiles(ob);
    const int channels = static_cast<int>(std::min<int64_t>(16, o1 - ob * 16));
    for (int64_t sb = 0; sb * 16 < count; ++sb) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      for (int64_t kb = 0; kb < blocks; ++kb)
        multiply_tiles(tiles + kb * 2048, high + kb * 16 * stride + sb * 64, low + kb * 16 * stride + sb * 64, stride);
      finish_tiles(epilogue, ob, channels, std::min<int64_t>(16, count - sb * 16), out + ob * 16 * plane + p0 + sb * 16,
                   plane);
    }
  }
}

// The planes of one sample for the direct AMX kernel: per padded row, per channel quad (padded to
// whole blocks of 16 quads), the padded columns (stride 1) or the even then the odd ones (stride 2),
// a pixel being 4 bytes: the quad's channels' h' (or l). Tiles read 16 quads x 16 pixels of a row in
// place, `row_bytes()` apart.
struct Quads {
  int64_t quads, rows, parities, columns;
  int64_t row_bytes() const { return parities * columns * 4; }
  int64_t offset(int64_t row, int64_t quad) const { return (row * quads + quad) * row_bytes(); }
  int64_t bytes() const { return rows * quads * row_bytes() + 64; }  // reads past the last pixel stay inside
};

// One sample onto its grid into quad planes `high` (h' = h + 128) and `low` (l); zeros (a = 0:
// h' = 128, l = 0) in the padding and in the channels past the last.
SEVC_AMX void quantize_quads(const float *x, const Geometry &g, const Quads &q, float scale, int64_t q0, int64_t q1,
                             uint8_t *high, uint8_t *low) {
  const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-32768.0f), hi = _mm512_set1_ps(32767.0f);
  const __m512i bytes = _mm512_set1_epi32(0xFF), flip = _mm512_set1_epi32(0x80);
  for (int64_t quad = q0; quad < q1; ++quad) {
    for (int64_t row = 0; row < q.rows; ++row) {
      std::memset(high + q.offset(row, quad), 0x80, static_cast<size_t>(q.row_bytes()));
      std::memset(low + q.offset(row, quad), 0, static_cast<size_t>(q.row_bytes()));
    }
    const int channels = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(4, g.c - 4 * quad)));
    for (int64_t y = 0; y < g.h && channels > 0; ++y) {
      uint32_t *h_row = reinterpret_cast<uint32_t *>(high + q.offset(g.ph + y, quad));
      uint32_t *l_row = reinterpret_cast<uint32_t *>(low + q.offset(g.ph + y, quad));
      for (int64_t i = 0; i < g.w; i += 16) {
        const __mmask16 m = first16(g.w - i);
        __m512i h_word = _mm512_setzero_si512(), l_word = _mm512_setzero_si512();
        for (int t = 0; t < 4; ++t) {
          __m512i a = _mm512_setzero_si512();
          if (t < channels) {
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + ((4 * quad + t) * g.h + y) * g.w + i), s);
            const __mmask16 ordered = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
            a = _mm512_maskz_cvtps_epi32(ordered, _mm512_roundscale_ps(_mm512_min_ps(_mm512_max_ps(v, lo), hi),
                                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
          }
          const __m512i h = _mm512_and_si512(_mm512_add_epi32(_mm512_srai_epi32(a, 8), flip), bytes);
          h_word = _mm512_or_si512(h_word, _mm512_slli_epi32(h, 8 * t));
          l_word = _mm512_or_si512(l_word, _mm512_slli_epi32(_mm512_and_si512(a, bytes), 8 * t));
        }
        const int64_t column = g.pw + i;
        if (q.parities == 1) {
          _mm512_mask_storeu_epi32(h_row + column, m, h_word);
          _mm512_mask_storeu_epi32(l_row + column, m, l_word);
          continue;
        }
        for (int parity = 0; parity < 2; ++parity) {  // the lanes of even columns, then odd ones
          const int first = (column + parity) & 1;       // the first lane of this parity
          const __mmask16 lanes = static_cast<__mmask16>(m & (first ? 0xAAAA : 0x5555));
          const int64_t index = parity * q.columns + (column + first) / 2;
          _mm512_mask_compressstoreu_epi32(h_row + index, lanes, h_word);
          _mm512_mask_compressstoreu_epi32(l_row + index, lanes, l_word);
        }
      }
    }
  }
}

// Output row y, channels [o0, o1) (o0 a multiple of 16), of a dense convolution from quad planes.
SEVC_AMX void convolve_row_amx(const uint8_t *high, const uint8_t *low, const Quads &q, const Geometry &g,
                               const IntegerWeight &weight, int64_t y, int64_t o0, int64_t o1,
                               const Epilogue &epilogue, float *out) {
  const int64_t plane = g.ho * g.wo, blocks = weight.input_blocks(), stride = q.row_bytes();
  for (int64_t x0 = 0; x0 < g.wo; x0 += 16) {
    for (int64_t ob = o0 / 16; ob * 16 < o1; ++ob) {
      const int8_t *tiles = weight.amx_tiles(ob);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t parity = g.stride == 2 ? kx & 1 : 0, column = x0 + (g.stride == 2 ? kx >> 1 : kx);
          for (int64_t cb = 0; cb < blocks; ++cb) {
            const int64_t at = q.offset(y * g.stride + ky, cb * 16) + (parity * q.columns + column) * 4;
            multiply_tiles(tiles + ((ky * g.kw + kx) * blocks + cb) * 2048, high + at, low + at, stride);
          }
        }
      finish_tiles(epilogue, ob, static_cast<int>(std::min<int64_t>(16, o1 - ob * 16)), std::min<int64_t>(16, g.wo - x0),
                   out + ob * 16 * plane + y * g.wo + x0, plane);
    }
  }
}
#endif

// The kernels of one instruction set: the register tiles tile[C - 1][V - 1] (C <= channels,
// V <= vectors) and the passes around them.
struct Kernels {
  int channels, vectors;
  TileFn tile[4][3];
  uint32_t (*largest)(const float *, int64_t);
  void (*quantize)(const float *, int64_t, float, int16_t *, int16_t *);
  void (*zip)(const int16_t *, const int16_t *, int64_t, int64_t, int16_t *);
  void (*finish)(const int64_t *, const int64_t *, int64_t, double, const double *, float *);
  void (*depthwise)(const int16_t *, const int16_t *, const Geometry &, const double *, double, const double *,
                    float *);
};

Kernels kernels_of(Isa isa) {
#if SEVC_INTEGER_X86
  if (isa == Isa::kAvx512)
    return {4, 3,
            {{tile_avx512<1, 1>, tile_avx512<1, 2>, tile_avx512<1, 3>},
             {tile_avx512<2, 1>, tile_avx512<2, 2>, tile_avx512<2, 3>},
             {tile_avx512<3, 1>, tile_avx512<3, 2>, tile_avx512<3, 3>},
             {tile_avx512<4, 1>, tile_avx512<4, 2>, tile_avx512<4, 3>}},
            largest_avx512, quantize_avx512, zip_avx512, finish_avx512, depthwise_avx512};
  if (isa == Isa::kAvx2)
    return {2, 1, {{tile_avx2<1, 1>}, {tile_avx2<2, 1>}}, largest_avx2, quantize_avx2, zip_avx2, finish_avx2, depthwise_generic};
#endif
  (void)isa;
  return {4, 1, {{tile_generic<1, 1>}, {tile_generic<2, 1>}, {tile_generic<3, 1>}, {tile_generic<4, 1>}},
          largest_generic, quantize_generic, zip_generic, finish_generic, depthwise_generic};
}

// --- the convolution ---------------------------------------------------------------------------

// The grid exponent of count floats (see the header), from the largest magnitude as a bit
// pattern (kernels.largest; in parts on `threads` threads).
int sample_exponent(const Kernels &kernels, const float *x, int64_t count, int threads) {
  std::vector<uint32_t> parts(static_cast<size_t>(threads), 0);
  parallel_for(std::min<int64_t>(threads, count / kMinThreadWork + 1), count,
               [&](int64_t part, int64_t begin, int64_t end) { parts[part] = kernels.largest(x + begin, end - begin); });
  const uint32_t largest = *std::max_element(parts.begin(), parts.end());
  if (largest >= 0x7F800000u) return 0;  // an infinity or a NaN
  float value;
  std::memcpy(&value, &largest, sizeof value);
  int e = 0;
  std::frexp(value, &e);
  return std::min(std::max(e, -kExponentLimit), kExponentLimit);
}

// One channel onto its grid, into zero-padded planes (hp x wp) of high and low bytes.
void quantize_channel(const Kernels &kernels, const float *x, const Geometry &g, float scale, int16_t *high,
                      int16_t *low) {
  for (int16_t *plane : {high, low}) {
    std::fill(plane, plane + g.ph * g.wp, int16_t{0});
    std::fill(plane + (g.ph + g.h) * g.wp, plane + g.hp * g.wp, int16_t{0});
    for (int64_t y = 0; y < g.h; ++y) {
      int16_t *row = plane + (g.ph + y) * g.wp;
      std::fill(row, row + g.pw, int16_t{0});
      std::fill(row + g.pw + g.w, row + g.wp, int16_t{0});
    }
  }
  for (int64_t y = 0; y < g.h; ++y) {
    const int64_t offset = (g.ph + y) * g.wp + g.pw;
    kernels.quantize(x + y * g.w, g.w, scale, high + offset, low + offset);
  }
}

// Packs pixels [p0, p0 + count) of the output plane (count <= g.block) of one group from its
// planes (channel-major, hp x wp each) into a panel [pairs][block][2]; past the last tap and past
// count, zeros.
void pack(const Kernels &kernels, const int16_t *planes, const Geometry &g, int64_t p0, int64_t count,
          int16_t *panel) {
  const int64_t row = 2 * g.block, area = g.kh * g.kw;
  std::fill(panel, panel + g.pairs * row, int16_t{0});
  for (int64_t k = 0; k < g.taps; k += 2) {
    const auto tap = [&](int64_t t, int64_t y, int64_t x) -> const int16_t * {
      if (t >= g.taps) return nullptr;
      return planes + (t / area) * g.hp * g.wp + (y * g.stride + t / g.kw % g.kh) * g.wp + x * g.stride + t % g.kw;
    };
    int64_t y = p0 / g.wo, x = p0 % g.wo;
    for (int64_t j = 0; j < count;) {
      const int64_t run = std::min(count - j, g.wo - x);
      const int16_t *a = tap(k, y, x), *b = tap(k + 1, y, x);
      kernels.zip(a, b, run, g.stride, panel + (k / 2) * row + 2 * j);
      j += run;
      x = 0;
      ++y;
    }
  }
}

// The sums S of output channels [o0, o1) (of g.go, their weight words `words`, [pairs][g.go]) over
// the first `count` pixels of a pair of packed panels, by register tiles: emit(o, sum_high, sum_low)
// for each, S = 256 sum_high + sum_low.
template <class Emit>
void multiply_panels(const Kernels &kernels, const int16_t *high, const int16_t *low, const Geometry &g,
                     const int32_t *words, int64_t o0, int64_t o1, int64_t count, std::vector<int64_t> &sums,
                     const Emit &emit) {
  const int64_t vectors = ceil_div(count, kVector);
  sums.resize(static_cast<size_t>(2 * kernels.channels * g.block));
  int64_t *sum_high = sums.data(), *sum_low = sums.data() + kernels.channels * g.block;
  for (int64_t oc = o0; oc < o1; oc += kernels.channels) {
    const int channels = static_cast<int>(std::min<int64_t>(kernels.channels, o1 - oc));
    std::fill(sums.begin(), sums.end(), 0);
    for (int64_t v = 0; v < vectors; v += kernels.vectors) {
      const int span = static_cast<int>(std::min<int64_t>(kernels.vectors, vectors - v));
      for (int64_t k = 0; k < g.pairs; k += kChunkPairs) {
        const int64_t at = k * 2 * g.block + v * 2 * kVector;
        const Tile t{high + at, low + at, 2 * g.block, words + k * g.go + oc, g.go,
                     std::min(kChunkPairs, g.pairs - k), sum_high + v * kVector, sum_low + v * kVector, g.block};
        kernels.tile[channels - 1][span - 1](t);
      }
    }
    for (int c = 0; c < channels; ++c) emit(oc + c, sum_high + c * g.block, sum_low + c * g.block);
  }
}

// The output channels [o0, o1) of one group for one packed unit: tiles, then S -> floats.
void convolve_unit(const Kernels &kernels, const int16_t *high, const int16_t *low, const Geometry &g,
                   const IntegerWeight &weight, int64_t group, int64_t o0, int64_t o1, int exponent,
                   const double *bias, int64_t p0, int64_t count, float *out, std::vector<int64_t> &sums) {
  multiply_panels(kernels, high, low, g, weight.pair_words(group), o0, o1, count, sums,
                  [&](int64_t local, const int64_t *sum_high, const int64_t *sum_low) {
                    const int64_t o = group * g.go + local;
                    const double scale =
                        std::ldexp(1.0, exponent - kActivationBits + weight.exponents()[o] - kActivationBits);
                    kernels.finish(sum_high, sum_low, count, scale, bias ? bias + o : nullptr,
                                   out + o * g.ho * g.wo + p0);
                  });
}

}  // namespace

// --- CPU features ------------------------------------------------------------------------------

namespace {

#if SEVC_INTEGER_X86
// Whether the CPU has AMX tiles with int8 products and the OS lets this process use them (Linux
// grants the tile state on request).
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
#if defined(__linux__)
  constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
#else
  return false;
#endif
}
#endif

}  // namespace

Isa best_isa() {
#if SEVC_INTEGER_X86
  static const Isa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
      return amx_usable() ? Isa::kAmx : Isa::kAvx512;
    if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
    return Isa::kGeneric;
  }();
  return best;
#else
  return Isa::kGeneric;
#endif
}

std::vector<Isa> available_isas() {
  std::vector<Isa> isas{Isa::kGeneric};
  const Isa best = best_isa();
  if (best != Isa::kGeneric) isas.push_back(Isa::kAvx2);
  if (best == Isa::kAvx512 || best == Isa::kAmx) isas.push_back(Isa::kAvx512);
  if (best == Isa::kAmx) isas.push_back(Isa::kAmx);
  return isas;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAmx: return "amx";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

Isa isa_named(const std::string &name) {
  static const char *const needs[] = {"", "AVX2", "AVX-512 (F, BW, DQ, VL) and AVX-512 VNNI",
                                      "AMX (tiles, int8) and AVX-512 VNNI, with the OS's permission"};
  for (const Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512, Isa::kAmx}) {
    if (name != isa_name(isa)) continue;
    const auto isas = available_isas();
    if (std::find(isas.begin(), isas.end(), isa) == isas.end())
      throw std::invalid_argument("integer kernel '" + name + "' needs a CPU with " + needs[static_cast<int>(isa)]);
    return isa;
  }
  throw std::invalid_argument("integer kernel must be 'generic', 'avx2', 'avx512' or 'amx', got '" + name + "'");
}

// --- weights -----------------------------------------------------------------------------------

namespace {

Layout layout_for(Isa isa, int64_t groups, int64_t cg, int64_t kh, int64_t kw) {
  if (isa != Isa::kAmx || groups != 1 || cg * kh * kw >= kAmxMaxTaps) return Layout::kPairs;
  // Enough input channels (at least two thirds of the blocks of 64 used): tiles read in place.
  const int64_t input_blocks = (cg + 63) / 64;
  return input_blocks * 64 * 2 <= cg * 3 && kh * kw * input_blocks * 64 < kAmxMaxTaps ? Layout::kAmxChannels
                                                                                      : Layout::kAmxTaps;
}

}  // namespace

IntegerWeight::IntegerWeight(const int16_t *q, const int32_t *exponents, int64_t o_, int64_t cg_, int64_t kh_,
                             int64_t kw_, int64_t groups_, Isa isa_)
    : o(o_), cg(cg_), kh(kh_), kw(kw_), groups(groups_), isa(isa_), layout(layout_for(isa_, groups_, cg_, kh_, kw_)),
      exponents_(exponents, exponents + o_) {
  if (o <= 0 || cg <= 0 || kh <= 0 || kw <= 0 || groups <= 0 || o % groups != 0)
    throw std::invalid_argument("weight must be [O, C / groups, kh, kw] with positive sizes and O a multiple of groups");
  if (taps() > kMaxTaps) throw std::invalid_argument("weight has more than 2 ** 22 taps per output channel");
  if (*std::max_element(q, q + o * taps()) > kWeightLimit)
    throw std::invalid_argument("weight integers must be at most 32639 (two signed bytes)");
  totals_.assign(static_cast<size_t>(o), 0);
  if (layout == Layout::kPairs)
    pairs_.assign(static_cast<size_t>(groups * pairs() * group_o()), 0);
  else
    tiles_.assign(static_cast<size_t>((o + 15) / 16 * tile_blocks() * 2048), 0);
  for (int64_t oc = 0; oc < o; ++oc) {
    const int64_t group = oc / group_o(), local = oc % group_o();
    for (int64_t k = 0; k < taps(); ++k) {
      const int16_t value = q[oc * taps() + k];
      totals_[oc] += value;
      if (layout == Layout::kPairs) {
        uint32_t &word = reinterpret_cast<uint32_t &>(pairs_[(group * pairs() + k / 2) * group_o() + local]);
        word |= static_cast<uint32_t>(static_cast<uint16_t>(value)) << ((k & 1) ? 16 : 0);
        continue;
      }
      const int low = ((value + 128) & 0xFF) - 128, high = (value - low) >> 8;  // in [-128, 127]: q <= kWeightLimit
      const int64_t c = k / (kh * kw), position = k % (kh * kw);
      const int64_t block = layout == Layout::kAmxTaps ? k / 64 : position * input_blocks() + c / 64;
      int8_t *tile = tiles_.data() + ((oc / 16) * tile_blocks() + block) * 2048 + (oc % 16) * 64 +
                     (layout == Layout::kAmxTaps ? k % 64 : c % 64);
      tile[0] = static_cast<int8_t>(high);
      tile[1024] = static_cast<int8_t>(low);
    }
  }
}

// --- entry points ------------------------------------------------------------------------------

void check_arguments(const ConvShape &s, const IntegerWeight &w, int threads) {
  if (s.n <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) throw std::invalid_argument("input must have positive sizes");
  if (s.c != w.cg * w.groups)
    throw std::invalid_argument("input has " + std::to_string(s.c) + " channels, the weight takes " +
                                std::to_string(w.cg * w.groups) + " (" + std::to_string(w.cg) + " per group x " +
                                std::to_string(w.groups) + " groups)");
  if (s.stride != 1 && s.stride != 2) throw std::invalid_argument("stride must be 1 or 2");
  if (s.ph < 0 || s.pw < 0 || s.ph > kMaxPadding || s.pw > kMaxPadding)
    throw std::invalid_argument("padding must be in 0..65536");
  if (s.h + 2 * s.ph < w.kh || s.w + 2 * s.pw < w.kw) throw std::invalid_argument("the output would be empty");
  if (threads < 1 || threads > kMaxThreads) throw std::invalid_argument("threads must be in 1..256");
}

namespace {

#if SEVC_INTEGER_X86
// A dense convolution by AMX tiles read in place from quad planes (see Quads), sample by sample:
// the planes made by quads in parallel, then output rows in parallel (and output channels, where
// there are fewer rows than threads).
void convolve_direct_amx(const float *input, const IntegerWeight &weight, const double *bias, float *output,
                         const ConvShape &s, const Geometry &g, const std::vector<int> &exponents, int threads) {
  const Quads q{weight.input_blocks() * 16, g.hp, g.stride, g.stride == 1 ? g.wp : (g.wp + 1) / 2};
  const Scratch planes(static_cast<size_t>(2 * q.bytes()));
  uint8_t *high = planes.as<uint8_t>(), *low = high + q.bytes();
  const int64_t work = weight.o * g.ho * g.wo * g.taps;
  const int64_t useful = std::max<int64_t>(1, std::min<int64_t>(threads, work / kMinThreadWork));
  const int64_t splits = g.ho >= useful ? 1 : std::min(ceil_div(useful, g.ho), ceil_div(weight.o, int64_t{16}));
  const int64_t per_split = ceil_div(ceil_div(weight.o, splits), int64_t{16}) * 16;
  for (int64_t n = 0; n < s.n; ++n) {
    const float scale = std::ldexp(1.0f, kActivationBits - exponents[n]);
    const Epilogue epilogue(weight, exponents[n], bias);
    parallel_for(threads, q.quads, [&](int64_t, int64_t begin, int64_t end) {
      quantize_quads(input + n * s.c * s.h * s.w, g, q, scale, begin, end, high, low);
    });
    parallel_for(useful, g.ho * splits, [&](int64_t, int64_t begin, int64_t end) {
      configure_tiles();
      for (int64_t i = begin; i < end; ++i) {
        const int64_t o0 = std::min(weight.o, i % splits * per_split);
        convolve_row_amx(high, low, q, g, weight, i / splits, o0, std::min(weight.o, o0 + per_split),
                         epilogue, output + n * weight.o * g.ho * g.wo);
      }
      release_tiles();
    });
  }
}
#endif

// The work of one call after quantization: `pack_unit(unit, buffers)` packs a unit's pixels,
// `run(unit, o0, o1, buffers)` computes its output channels [o0, o1); units are split by output
// channels (in steps of `step`) where there are fewer units than threads.
template <class Buffers, class Pack, class Run>
void for_each_unit(int64_t units, int64_t channels, int64_t step, int64_t threads, const Pack &pack_unit,
                   const Run &run) {
  const int64_t splits = units >= threads ? 1 : std::min(ceil_div(threads, units), ceil_div(channels, step));
  const int64_t per_split = ceil_div(ceil_div(channels, splits), step) * step;
  parallel_for(threads, units * splits, [&](int64_t, int64_t begin, int64_t end) {
    Buffers buffers;
    int64_t packed = -1;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t unit = i / splits, o0 = std::min(channels, i % splits * per_split);
      if (unit != packed) pack_unit(unit, buffers), packed = unit;
      run(unit, o0, std::min(channels, o0 + per_split), buffers);
    }
  });
}

}  // namespace

void conv2d(const float *input, const IntegerWeight &weight, const double *bias, float *output, const ConvShape &s,
            int threads) {
  Geometry g{};
  g.c = s.c, g.h = s.h, g.w = s.w, g.ph = s.ph, g.pw = s.pw, g.hp = s.h + 2 * s.ph, g.wp = s.w + 2 * s.pw;
  g.ho = s.ho(weight), g.wo = s.wo(weight), g.stride = s.stride;
  g.taps = weight.taps(), g.pairs = weight.pairs(), g.kh = weight.kh, g.kw = weight.kw, g.cg = weight.cg;
  g.go = weight.group_o(), g.groups = weight.groups;
  const bool amx = weight.layout != Layout::kPairs;
  const Kernels kernels = kernels_of(weight.isa == Isa::kAmx ? Isa::kAvx512 : weight.isa);
  const int64_t panel_bytes = amx ? weight.tap_blocks() * 16 * 4 * 2 : g.pairs * 2 * 2 * 2;  // per pixel
  const int64_t vectors = std::max<int64_t>(kPanelBudget / (panel_bytes * kVector) / 3 * 3, 3);
  g.block = kVector * std::min({vectors, kMaxBlockVectors, ceil_div(g.ho * g.wo, kVector)});

  const int64_t sample_size = s.c * s.h * s.w, plane_size = g.hp * g.wp;
  std::vector<int> exponents(static_cast<size_t>(s.n));
  for (int64_t n = 0; n < s.n; ++n) exponents[n] = sample_exponent(kernels, input + n * sample_size, sample_size, threads);
#if SEVC_INTEGER_X86
  if (weight.layout == Layout::kAmxChannels) {  // tiles read in place from planes: no im2col copy
    convolve_direct_amx(input, weight, bias, output, s, g, exponents, static_cast<int>(threads));
    return;
  }
#endif
  const Scratch planes(static_cast<size_t>(2 * s.n * s.c * plane_size) * sizeof(int16_t));
  int16_t *const high = planes.as<int16_t>(), *const low = high + s.n * s.c * plane_size;
  parallel_for(threads, s.n * s.c, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float scale = std::ldexp(1.0f, kActivationBits - exponents[i / s.c]);
      quantize_channel(kernels, input + i * s.h * s.w, g, scale, high + i * plane_size,
                       low + i * plane_size);
    }
  });

  if (g.cg == 1 && g.go == 1) {  // depthwise: channel by channel, in place
    parallel_for(threads, s.n * s.c, [&](int64_t, int64_t begin, int64_t end) {
      std::vector<double> q(static_cast<size_t>(g.kh * g.kw));
      for (int64_t i = begin; i < end; ++i) {
        const int64_t c = i % s.c;
        for (int64_t k = 0; k < g.kh * g.kw; ++k) q[k] = weight.tap(c, k);
        const double scale = std::ldexp(1.0, exponents[i / s.c] - kActivationBits + weight.exponents()[c] -
                                                 kActivationBits);
        kernels.depthwise(high + i * plane_size, low + i * plane_size, g, q.data(), scale,
                          bias ? bias + c : nullptr, output + i * g.ho * g.wo);
      }
    });
    return;
  }
  const int64_t blocks = ceil_div(g.ho * g.wo, g.block), units = s.n * g.groups * blocks;
  const int64_t work = s.n * weight.o * g.ho * g.wo * g.taps;
  const int64_t useful = std::max<int64_t>(1, std::min<int64_t>(threads, work / kMinThreadWork));
  const auto where = [&](int64_t unit) {  // (sample, group, first pixel, pixels)
    const int64_t n = unit / (g.groups * blocks), group = unit / blocks % g.groups, p0 = unit % blocks * g.block;
    return std::make_tuple(n, group, p0, std::min(g.block, g.ho * g.wo - p0));
  };
#if SEVC_INTEGER_X86
  if (amx) {
    struct Panels {
      std::unique_ptr<Scratch> memory;
      uint8_t *high = nullptr, *low = nullptr;
      ~Panels() {
        if (memory) release_tiles();
      }
    };
    const int64_t panel = weight.tap_blocks() * 16 * g.block * 4;
    std::vector<Epilogue> epilogues;
    for (int64_t n = 0; n < s.n; ++n) epilogues.emplace_back(weight, exponents[n], bias);
    for_each_unit<Panels>(
        units, weight.o, 16, useful,
        [&](int64_t unit, Panels &p) {
          const auto [n, group, p0, count] = where(unit);
          if (!p.memory) {
            p.memory = std::make_unique<Scratch>(static_cast<size_t>(2 * panel));
            p.high = p.memory->as<uint8_t>(), p.low = p.high + panel;
            configure_tiles();
          }
          pack_amx(high + n * s.c * plane_size, g, p0, count, 0x80, p.high);
          pack_amx(low + n * s.c * plane_size, g, p0, count, 0, p.low);
        },
        [&](int64_t unit, int64_t o0, int64_t o1, Panels &p) {
          const auto [n, group, p0, count] = where(unit);
          convolve_unit_amx(p.high, p.low, g, weight, o0, o1, epilogues[n], p0, count,
                            output + n * weight.o * g.ho * g.wo);
        });
    return;
  }
#endif
  struct Panels {
    std::unique_ptr<Scratch> memory;
    int16_t *high = nullptr, *low = nullptr;
    std::vector<int64_t> sums;
  };
  const int64_t panel = g.pairs * 2 * g.block;
  for_each_unit<Panels>(
      units, g.go, kernels.channels, useful,
      [&](int64_t unit, Panels &p) {
        const auto [n, group, p0, count] = where(unit);
        const int64_t first = (n * s.c + group * g.cg) * plane_size;
        if (!p.memory) {
          p.memory = std::make_unique<Scratch>(static_cast<size_t>(2 * panel) * sizeof(int16_t));
          p.high = p.memory->as<int16_t>(), p.low = p.high + panel;
        }
        pack(kernels, high + first, g, p0, count, p.high);
        pack(kernels, low + first, g, p0, count, p.low);
      },
      [&](int64_t unit, int64_t o0, int64_t o1, Panels &p) {
        const auto [n, group, p0, count] = where(unit);
        convolve_unit(kernels, p.high, p.low, g, weight, group, o0, o1, exponents[n], bias, p0, count,
                      output + n * weight.o * g.ho * g.wo, p.sums);
      });
}

void matmul(const float *a, const float *b, float *out, int64_t batch, int64_t m, int64_t k, int64_t n, int threads,
            Isa isa) {
  if (batch <= 0 || m <= 0 || k <= 0 || n <= 0 || k > kMaxTaps)
    throw std::invalid_argument("matmul needs positive sizes and at most 2 ** 22 terms per sum");
  const Kernels kernels = kernels_of(isa == Isa::kAmx ? Isa::kAvx512 : isa);
  Geometry g{};
  g.pairs = (k + 1) / 2, g.go = m;
  g.block = ceil_div(n, kVector) * kVector;
  const int64_t work = batch * m * n * k;
  parallel_for(std::max<int64_t>(1, std::min<int64_t>(threads, work / kMinThreadWork)), batch,
               [&](int64_t, int64_t begin, int64_t end) {
    // per matrix: a's integers as weight words [pairs][m] (taps 2j, 2j + 1 of row i); b's high and
    // low planes [k][n] (one row per tap), zipped into panels [pairs][block][2]
    std::vector<int16_t> rows(static_cast<size_t>(4 * k * n + 2 * m * k));
    int16_t *high = rows.data(), *low = high + k * n, *a_high = low + k * n, *a_low = a_high + m * k;
    Scratch panels(static_cast<size_t>(2 * g.pairs * 2 * g.block) * sizeof(int16_t));
    int16_t *panel_high = panels.as<int16_t>(), *panel_low = panel_high + g.pairs * 2 * g.block;
    std::vector<int32_t> words(static_cast<size_t>(g.pairs * m));
    std::vector<int64_t> sums;
    for (int64_t t = begin; t < end; ++t) {
      const float *at = a + t * m * k, *bt = b + t * k * n;
      const int ea = sample_exponent(kernels, at, m * k, 1), eb = sample_exponent(kernels, bt, k * n, 1);
      kernels.quantize(at, m * k, std::ldexp(1.0f, kActivationBits - ea), a_high, a_low);
      kernels.quantize(bt, k * n, std::ldexp(1.0f, kActivationBits - eb), high, low);
      std::fill(words.begin(), words.end(), 0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < k; ++j) {
          const uint32_t value = static_cast<uint16_t>(256 * a_high[i * k + j] + a_low[i * k + j]);
          reinterpret_cast<uint32_t &>(words[(j / 2) * m + i]) |= value << ((j & 1) ? 16 : 0);
        }
      for (int16_t *panel : {panel_high, panel_low}) std::fill(panel, panel + g.pairs * 2 * g.block, int16_t{0});
      for (int64_t j = 0; j < k; j += 2)
        for (const auto &[plane, panel] : {std::make_pair(high, panel_high), std::make_pair(low, panel_low)})
          kernels.zip(plane + j * n, j + 1 < k ? plane + (j + 1) * n : nullptr, n, 1, panel + (j / 2) * 2 * g.block);
      const double scale = std::ldexp(1.0, ea - kActivationBits + eb - kActivationBits);
      multiply_panels(kernels, panel_high, panel_low, g, words.data(), 0, m, n, sums,
                      [&](int64_t i, const int64_t *sum_high, const int64_t *sum_low) {
                        kernels.finish(sum_high, sum_low, n, scale, nullptr, out + (t * m + i) * n);
                      });
    }
  });
}

}  // namespace integer
}  // namespace sevc
