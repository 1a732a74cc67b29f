// sevc: integer numerics' softmax on the CPU (see integer_math.h). Compile with
// -ffp-contract=off and never -ffast-math: each operation must round on its own.
#include "integer_math.h"
#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__FAST_MATH__)
#error "integer_math.cpp needs IEEE-754 arithmetic: compile it without -ffast-math (and with -ffp-contract=off)"
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEVC_IM_X86 1
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

}  // namespace integer
}  // namespace sevc
