// sevc: integer numerics' softmax on the CPU, bit for bit its Python definition
// (src/sevc/numerics/integer.py, _softmax_torch):
//
//   d = clamp(x - max(x), min=-87)                   (float32; -87: every 2 ** k below is normal)
//   k = round_half_even(d * log2(e)); r = (d - k * ln2_hi) - k * ln2_lo
//   e = (1 + r (1 + r (1/2 + ... + r / 7!))) * 2 ** k (Horner, one rounding per operation)
//   q = round_half_even(e * 2 ** 24): integers up to 2 ** 24, exact in float32; their sum, below
//       2 ** 53, exact in float64 in any order
//   y = float32(double(q) / sum(q))
//
// Every operation is a correctly rounded float32 (or float64) one, none fused (this file is
// compiled with -ffp-contract=off), so every machine computes the same bits. x, y: C-contiguous float32,
// `rows` rows of `length` (>= 1) elements; `threads` (1..256) the most threads to use.
#pragma once

#include <cstdint>

namespace sevc {
namespace integer {

// Which compilation runs: plain C++ or AVX-512 (std::invalid_argument on a CPU without it); the
// same results.
enum class MathKernels { kGeneric, kAvx512 };
MathKernels best_math_kernels();

void softmax(const float *x, float *y, int64_t rows, int64_t length, int threads, MathKernels kernels);

}  // namespace integer
}  // namespace sevc
