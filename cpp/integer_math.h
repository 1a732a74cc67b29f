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

// The backward warp of sevc.nn.resample._portable_warp on float32, bit for bit: x [n, c, h, w]
// sampled at (i + flow_y, j + flow_x) (NaN as 0, infinities as the largest floats, clamped into
// the frame) from its 4 neighbours, top = x00 * (1 - fx) + x01 * fx, bottom likewise, out = top *
// (1 - fy) + bottom * fy, each operation rounded once. flow [n, 2, h, w]; out [n, c, h, w].
void warp(const float *x, const float *flow, float *out, int64_t n, int64_t c, int64_t h, int64_t w, int threads);

}  // namespace integer
}  // namespace sevc
