// sevc: the portable numerics mode's elementwise functions, softmax, layer-norm statistics and grid
// rounding on the CPU, bit for bit equal to their Python definitions.
//
// The definitions are src/sevc/numerics/functions.py (exp, sigmoid, tanh, softplus, normal_cdf,
// gelu) and src/sevc/numerics/exact.py (softmax, layer_norm, to_grid): fixed sequences of
// correctly rounded float64 operations, which torch evaluates one whole-tensor operation at a
// time. Here each element goes through the same sequence of operations (same constants, same
// order, every multiplication, addition and division rounded on its own: this file is compiled
// with -ffp-contract=off, never with -ffast-math) while it is in registers, so the results are
// the same bits, for every input: -0.0, subnormals, infinities, NaNs (with the payload and sign
// the torch sequence gives them) and every branch boundary. Where the definition selects between
// branches with torch.where, each element computes only the branch it takes.
//
// Rounding assumes the default floating-point environment (round to nearest even, no flushing
// of subnormals), as torch's operations do.
//
// All arrays are C-contiguous float64; outputs must not overlap inputs. `threads` (1..kMaxThreads)
// is the most threads to use, the calling one included (fewer for small arrays); the result does
// not depend on it. Nothing throws but std::invalid_argument for a bad argument.
#pragma once

#include <cstdint>

namespace sevc {
namespace portable {

constexpr int kMaxThreads = 256;
constexpr int kMaxGridBits = 52;  // to_grid's bits: 1..kMaxGridBits

// Which compilation of the kernels runs: the best this CPU has (kAuto), plain C++ (kGeneric) or
// AVX2 (kAvx2; std::invalid_argument on a CPU without it). All give the same results.
enum class Kernels { kAuto, kGeneric, kAvx2 };

// y[i] = f(x[i]) for i < n, with f as in functions.py.
void exp(const double *x, double *y, int64_t n, int threads, Kernels kernels = Kernels::kAuto);
void sigmoid(const double *x, double *y, int64_t n, int threads, Kernels kernels = Kernels::kAuto);
void tanh(const double *x, double *y, int64_t n, int threads, Kernels kernels = Kernels::kAuto);
void softplus(const double *x, double *y, int64_t n, double threshold, int threads,  // threshold: not NaN
              Kernels kernels = Kernels::kAuto);
void normal_cdf(const double *x, double *y, int64_t n, int threads, Kernels kernels = Kernels::kAuto);
void gelu(const double *x, double *y, int64_t n, int threads, Kernels kernels = Kernels::kAuto);

// exact.softmax of each of the `rows` rows of `length` elements of x (the last dim).
void softmax(const double *x, double *y, int64_t rows, int64_t length, int threads,
             Kernels kernels = Kernels::kAuto);

// exact.layer_norm's statistics of each row of `length` elements: deviation (the row on its grid
// minus its mean; `length` per row) and variance (one per row). The rest of layer_norm (a correctly
// rounded square root, the affine map) stays in Python.
void layer_norm_statistics(const double *x, double *deviation, double *variance, int64_t rows, int64_t length,
                           int threads, Kernels kernels = Kernels::kAuto);

// exact.to_grid(x, bits, dims) where dims are the trailing dims holding `length` elements: one
// grid per row of `length` elements.
void to_grid(const double *x, double *y, int64_t rows, int64_t length, int bits, int threads,
             Kernels kernels = Kernels::kAuto);

// Whether this CPU runs the AVX2 kernels (kAuto picks them).
bool uses_avx2();

}  // namespace portable
}  // namespace sevc
