// sevc: float64 direct 2-D convolution for the portable (exact) numerics mode.
//
// One call does the whole exact convolution of the portable mode (src/sevc/numerics/exact.py):
//
//   1. each input sample is rounded onto its grid: with 2 ** e the power of two above its largest
//      magnitude (frexp's exponent, 0 for an all-zero sample), x becomes
//      round_half_even(x * 2 ** (bits - e)) * 2 ** (e - bits), the powers of two exact (applied
//      in two steps where one would leave the normal range), fused into the zero-padded copy of
//      the input rows the kernel makes anyway: no extra pass but the one finding the maxima;
//   2. the convolution sums, exact when the weights are on the grids of exact.weight_grid for
//      the same bits: every product and every partial sum is then representable, so the result
//      does not depend on the order of the additions, on fused multiply-adds, on the vector width
//      or on how the work is split between threads, and equals torch's F.conv2d bit for bit;
//   3. the bias, added once to each exact sum (one IEEE addition, one rounding).
//
// Layout: input [N, C, H, W], weight [O, C / groups, kh, kw], bias [O] (or none), output
// [N, O, Ho, Wo], all C-contiguous float64; dilation 1, stride 1 or 2 on both axes, zero padding
// (ph, pw), any groups dividing C and O.
//
// Kernels: register tiles of up to 4 output channels x 12 output columns accumulate in vector
// registers over the (input channel, ky, kx) taps of the channel's group; the taps read the
// zero-padded, rounded copy of a band of input rows (split into even and odd columns for stride
// 2, so that every load is contiguous) through a table of offsets (exact_conv.cpp describes the
// blocking). Depthwise convolutions of stride 1 (groups = C = O) run their own loop: each rounded
// input row is made once, in a ring of kh rows in L1, and the output rows are written directly.
// An AVX2 + FMA kernel, compiled with function target attributes, is chosen at run time on x86-64
// CPUs that have it; elsewhere a plain C++ kernel computes the same result.
//
// Non-finite inputs: a sample holding a NaN or an infinity gets frexp's exponent 0, as in torch
// (grid 2 ** -bits), so its rounded input equals the reference's; its outputs are NaN or
// infinite wherever IEEE arithmetic makes them so, and its other outputs are finite but, the
// grid no longer bounding the sums, not guaranteed bit-identical to torch's. Nothing traps,
// crashes or loops. Likewise the sums are exact (and bit-identical to torch) only while products
// and partial sums stay within float64's range: not for inputs near the subnormal range (about
// 1e-290 and below for typical weights) or near overflow.
//
// Rounding of the input assumes the default floating-point environment (round to nearest even),
// as torch.round does.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sevc {
namespace exact {

// The geometry of one convolution: input [n, c, h, w], weight [o, c / groups, kh, kw].
struct ConvShape {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t o = 0, kh = 0, kw = 0;
  int64_t stride = 1;
  int64_t ph = 0, pw = 0;
  int64_t groups = 1;

  int64_t ho() const { return (h + 2 * ph - kh) / stride + 1; }
  int64_t wo() const { return (w + 2 * pw - kw) / stride + 1; }
  int64_t group_c() const { return c / groups; }  // input channels per group (the weight's dim 1)
  int64_t group_o() const { return o / groups; }  // output channels per group
};

// Largest accepted padding, and number of worker threads: far above any real use, small enough
// that no index computation can overflow.
constexpr int64_t kMaxPadding = 1 << 16;
constexpr int kMaxThreads = 256;
// activation_bits: 1..kMaxActivationBits (the exact sums of the portable mode hold 52 bits), or
// kNoRounding: the input is used as it is (it must then already be on a grid for exact sums).
constexpr int kMaxActivationBits = 52;
constexpr int kNoRounding = 0;

// Which kernel conv2d runs.
enum class Isa { kAuto, kGeneric, kAvx2 };

// Throws std::invalid_argument, with a message naming the offending argument, unless `shape`
// describes a convolution conv2d computes (every size positive, groups >= 1 dividing c and o,
// stride 1 or 2, padding in 0..kMaxPadding, a non-empty output), activation_bits is kNoRounding
// or in 1..kMaxActivationBits, and 1 <= threads <= kMaxThreads.
void check_arguments(const ConvShape &shape, int activation_bits, int threads);

// The best kernel this CPU runs: kAvx2 (x86-64 with AVX2 and FMA) or kGeneric.
Isa best_isa();
const char *isa_name(Isa isa);

// output [n, o, ho, wo] = conv2d(round_to_grid(input, activation_bits), weight) + bias (see the top
// of this file; bias may be null: no bias) with up to `threads` threads (the calling one included;
// fewer for small convolutions, which threads would not speed up). check_arguments must hold;
// isa = kAuto picks best_isa(), kAvx2 on a CPU without it throws std::invalid_argument.
// Scratch memory: the packed weights, and per thread a zero-padded copy of a band of input rows
// (about 2 MB, more only for very wide inputs) and an output block; up to 32 MB of it is kept by
// the calling thread for its next calls. May throw std::bad_alloc; never leaves a thread running.
void conv2d(const double *input, const double *weight, const double *bias, double *output, const ConvShape &shape,
            int activation_bits, int threads, Isa isa = Isa::kAuto);

}  // namespace exact
}  // namespace sevc
