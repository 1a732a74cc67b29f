// sevc: integer numerics' softmax on the CPU (see integer_math.h). Compile with
// -ffp-contract=off and never -ffast-math: each operation must round on its own.
#include "integer_math.h"
#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#if defined(__FAST_MATH__)
#error "integer_math.cpp needs IEEE-754 arithmetic: compile it without -ffast-math (and with -ffp-contract=off)"
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEVC_IM_X86 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 headers pass undefined vectors to the builtins of unmasked operations, which
// -Wmaybe-uninitialized reports (falsely) wherever they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define SEVC_IM_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl")))
#else
#define SEVC_IM_X86 0
#endif

namespace sevc {
namespace integer {
namespace {

// The float32 constants of integer.py, written as their exact values.
constexpr float kLog2e = 1.4426950216293335f;
constexpr float kLn2Hi = 0.693359375f;                // ln 2 to 9 bits: k * kLn2Hi is exact for |k| <= 2 ** 15
constexpr float kLn2Lo = -0.00021219444170128554f;    // ln 2 - kLn2Hi
constexpr float kExpFloor = -87.0f;
constexpr float kTerms[] = {1.0f, 1.0f, 0.5f, 0.1666666716337204f, 0.0416666679084301f, 0.008333333767950535f,
                            0.0013888889225199819f, 0.00019841270113829523f};  // 1 / n!, n = 0..7
constexpr int64_t kMinThreadRows = 64;

constexpr float kGrid = 16777216.0f;  // 2 ** 24

float two_pow(float k) {  // 2 ** k for an integer-valued k in [-126, 127]
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

void softmax_row_generic(const float *x, float *y, int64_t length) {
  float largest = x[0];
  for (int64_t i = 1; i < length; ++i) largest = (x[i] > largest || x[i] != x[i]) ? x[i] : largest;
  double sum = 0.0;
  for (int64_t i = 0; i < length; ++i) {
    float d = x[i] - largest;
    d = d < kExpFloor ? kExpFloor : d;  // clamp: NaN stays NaN
    const float k = std::nearbyint(d * kLog2e);
    const float r = (d - k * kLn2Hi) - k * kLn2Lo;
    float p = kTerms[7];
    for (int n = 6; n >= 0; --n) p = p * r + kTerms[n];
    const float e = p * two_pow(k == k ? k : 0.0f);
    y[i] = std::nearbyint(e * kGrid);
    sum += y[i];  // integers: exact in any order
  }
  for (int64_t i = 0; i < length; ++i) y[i] = static_cast<float>(y[i] / sum);
}

#if SEVC_IM_X86
SEVC_IM_AVX512 __mmask16 first16(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1);
}

SEVC_IM_AVX512 void softmax_row_avx512(const float *x, float *y, int64_t length) {
  __m512 largest = _mm512_set1_ps(-INFINITY);
  __mmask16 nan = 0;
  for (int64_t i = 0; i < length; i += 16) {
    const __mmask16 m = first16(length - i);
    const __m512 v = _mm512_mask_loadu_ps(largest, m, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    largest = _mm512_max_ps(largest, v);
  }
  const float top = nan ? NAN : _mm512_reduce_max_ps(largest);
  const __m512 m0 = _mm512_set1_ps(top), floor = _mm512_set1_ps(kExpFloor), log2e = _mm512_set1_ps(kLog2e);
  const __m512 hi = _mm512_set1_ps(kLn2Hi), lo = _mm512_set1_ps(kLn2Lo), scale = _mm512_set1_ps(kGrid);
  __m512d sum = _mm512_setzero_pd();
  for (int64_t i = 0; i < length; i += 16) {
    const __mmask16 m = first16(length - i);
    const __m512 d = _mm512_max_ps(floor, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), m0));  // NaN stays NaN
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(d, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_sub_ps(_mm512_sub_ps(d, _mm512_mul_ps(k, hi)), _mm512_mul_ps(k, lo));
    __m512 p = _mm512_set1_ps(kTerms[7]);
    for (int n = 6; n >= 0; --n) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(kTerms[n]));
    const __mmask16 ordered = _mm512_cmp_ps_mask(k, k, _CMP_ORD_Q);
    const __m512i exponent = _mm512_slli_epi32(_mm512_add_epi32(_mm512_maskz_cvtps_epi32(ordered, k),
                                                                _mm512_set1_epi32(127)), 23);
    const __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(exponent));
    const __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(e, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_mask_storeu_ps(y + i, m, q);
    const __m512 kept = _mm512_maskz_mov_ps(m, q);  // integers: their sum is exact in any order
    sum = _mm512_add_pd(sum, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(kept)),
                                           _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(kept), 1)))));
  }
  const __m512d total = _mm512_set1_pd(_mm512_reduce_add_pd(sum));
  for (int64_t i = 0; i < length; i += 8) {
    const __mmask8 m = static_cast<__mmask8>(first16(length - i));
    const __m512d q = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, y + i));
    _mm256_mask_storeu_ps(y + i, m, _mm512_cvtpd_ps(_mm512_div_pd(q, total)));
  }
}
#endif

}  // namespace

// Where each pixel of one sample samples from: its 4 neighbours' offsets in the plane and the
// weights (1 - fx, fx, 1 - fy, fy), as _portable_warp computes them.
struct Taps {
  std::vector<int64_t> top_left, top_right, bottom_left, bottom_right;
  std::vector<float> left, right, top, bottom;
};

float clamp_position(float p, float last) {  // nan_to_num then clamp(0, last)
  if (p != p) p = 0.0f;
  p = std::min(std::max(p, -std::numeric_limits<float>::max()), std::numeric_limits<float>::max());
  return std::min(std::max(p, 0.0f), last);
}

void warp_taps(const float *flow, int64_t h, int64_t w, Taps &t) {
  const int64_t area = h * w;
  for (auto *v : {&t.top_left, &t.top_right, &t.bottom_left, &t.bottom_right}) v->resize(static_cast<size_t>(area));
  for (auto *v : {&t.left, &t.right, &t.top, &t.bottom}) v->resize(static_cast<size_t>(area));
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) {
      const int64_t p = i * w + j;
      const float px = clamp_position(static_cast<float>(j) + flow[p], static_cast<float>(w - 1));
      const float py = clamp_position(static_cast<float>(i) + flow[area + p], static_cast<float>(h - 1));
      const float x0 = std::floor(px), y0 = std::floor(py);
      const float fx = px - x0, fy = py - y0;
      const int64_t c0 = static_cast<int64_t>(x0), r0 = static_cast<int64_t>(y0);
      const int64_t c1 = std::min(c0 + 1, w - 1), r1 = std::min(r0 + 1, h - 1);
      t.top_left[p] = r0 * w + c0, t.top_right[p] = r0 * w + c1;
      t.bottom_left[p] = r1 * w + c0, t.bottom_right[p] = r1 * w + c1;
      t.left[p] = 1.0f - fx, t.right[p] = fx, t.top[p] = 1.0f - fy, t.bottom[p] = fy;
    }
}

MathKernels best_math_kernels() {
#if SEVC_IM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return MathKernels::kAvx512;
#endif
  return MathKernels::kGeneric;
}

void softmax(const float *x, float *y, int64_t rows, int64_t length, int threads, MathKernels kernels) {
  if (length < 1) throw std::invalid_argument("softmax needs rows of at least one element");
  if (kernels == MathKernels::kAvx512 && best_math_kernels() != MathKernels::kAvx512)
    throw std::invalid_argument("kernel 'avx512' needs a CPU with AVX-512 (F, DQ, VL)");
  const auto row = [&](int64_t i) {
#if SEVC_IM_X86
    if (kernels == MathKernels::kAvx512) return softmax_row_avx512(x + i * length, y + i * length, length);
#endif
    softmax_row_generic(x + i * length, y + i * length, length);
  };
  parallel_for(std::min<int64_t>(threads, rows / kMinThreadRows + 1), rows, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) row(i);
  });
}

void warp(const float *x, const float *flow, float *out, int64_t n, int64_t c, int64_t h, int64_t w, int threads) {
  const int64_t area = h * w;
  for (int64_t s = 0; s < n; ++s) {
    Taps t;
    warp_taps(flow + s * 2 * area, h, w, t);
    parallel_for(std::min<int64_t>(threads, c), c, [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t ch = begin; ch < end; ++ch) {
        const float *plane = x + (s * c + ch) * area;
        float *dst = out + (s * c + ch) * area;
        for (int64_t p = 0; p < area; ++p) {
          const float top = plane[t.top_left[p]] * t.left[p] + plane[t.top_right[p]] * t.right[p];
          const float bottom = plane[t.bottom_left[p]] * t.left[p] + plane[t.bottom_right[p]] * t.right[p];
          dst[p] = top * t.top[p] + bottom * t.bottom[p];
        }
      }
    });
  }
}

}  // namespace integer
}  // namespace sevc
