// sevc: the integer convolution of the integer numerics mode (src/sevc/numerics/integer.py).
//
// One call computes, for float32 input [N, C, H, W] and a weight prepared as an IntegerWeight:
//
//   1. per sample, the exponent e (2 ** (e - 1) <= max |x| < 2 ** e, frexp's; 0 for an all-zero
//      sample or one holding a NaN or an infinity; clamped to [-kExponentLimit, kExponentLimit])
//      and the integers a = clamp(round_half_even(x * 2 ** (15 - e)), -32768, 32767) (NaN: 0),
//      written into a zero-padded plane per sample;
//   2. S[o, p] = sum over the taps k of a[k, p] * q[o, k], exactly: a = 256 h + l with h in
//      [-128, 127] and l in [0, 255], so S = 256 sum h q + sum l q, where every product fits in
//      23 bits and pairs of them are summed by int16 multiply-adds into int32 accumulators that
//      are widened to int64 every kChunkPairs pairs, before they can overflow;
//   3. y[o, p] = float(double(S) * 2 ** (e - 15 + e_o - 15) + bias[o]): S is exact in a double
//      (|S| < 2 ** 53), the scaling by a power of two too, then one rounding for the bias and one
//      to float32.
//
// Every kernel (plain C++, AVX2, AVX-512 VNNI; AMX tiles for dense convolutions, the grouped ones
// on AVX-512 VNNI) computes the same integers, so the results are bit-identical whatever the
// kernel, the thread count or the order of the work.
//
// Layout: input [N, C, H, W] float32, bias [O] float64 or none, output [N, O, Ho, Wo] float32,
// all C-contiguous; stride 1 or 2 on both axes, zero padding (ph, pw), any groups dividing C and
// O (depthwise included), dilation 1.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace sevc {
namespace integer {

constexpr int kActivationBits = 15;
constexpr int kWeightLimit = 127 * 256 + 127;  // weights are int16 at most this: two signed bytes
constexpr int kExponentLimit = 100;
constexpr int64_t kMaxPadding = 1 << 16;
constexpr int kMaxThreads = 256;
constexpr int64_t kMaxTaps = int64_t{1} << 22;  // C / groups * kh * kw: |S| < 2 ** 30 * kMaxTaps = 2 ** 52

// Which kernel computes the sums.
enum class Isa { kGeneric, kAvx2, kAvx512, kAmx };

// The best kernel this CPU (and OS) runs, and every kernel it runs.
Isa best_isa();
std::vector<Isa> available_isas();
const char *isa_name(Isa isa);
// The kernel called `name` ('generic', 'avx2', 'avx512', 'amx'); std::invalid_argument if unknown
// or if this CPU cannot run it.
Isa isa_named(const std::string &name);

// How a weight is laid out for its kernel: int16 pairs (every kernel but AMX, and AMX for grouped
// convolutions or ones of too many taps), or AMX tiles by blocks of 64 taps (im2col panels) or by
// kernel position and blocks of 64 input channels (read in place from planes of channel quads).
enum class Layout { kPairs, kAmxTaps, kAmxChannels };

// A weight [O, C / groups, kh, kw] on its integer grids (q int16, exponents e_o), prepared once
// for one kernel, in the one layout that kernel reads (immutable: safe to share between threads).
class IntegerWeight {
 public:
  IntegerWeight(const int16_t *q, const int32_t *exponents, int64_t o, int64_t cg, int64_t kh, int64_t kw,
                int64_t groups, Isa isa);

  int64_t o, cg, kh, kw, groups;
  Isa isa;
  Layout layout;
  int64_t taps() const { return cg * kh * kw; }
  int64_t pairs() const { return (taps() + 1) / 2; }
  int64_t group_o() const { return o / groups; }
  const std::vector<int32_t> &exponents() const { return exponents_; }
  // sum q over the taps of output channel o.
  int64_t total(int64_t o) const { return totals_[o]; }
  // Layout kPairs: per group, [pairs][group_o] int32 words, each two int16 weights (taps 2k, 2k + 1;
  // zero past the last tap), the layout of the int16 multiply-add kernels; and tap k of channel o.
  const int32_t *pair_words(int64_t group) const { return pairs_.data() + group * pairs() * group_o(); }
  int16_t tap(int64_t o, int64_t k) const {
    const int32_t word = pairs_[((o / group_o()) * pairs() + k / 2) * group_o() + o % group_o()];
    return static_cast<int16_t>((k & 1) ? word >> 16 : word & 0xFFFF);
  }
  // Layouts kAmxTaps / kAmxChannels (groups 1): tiles, each the high then the low signed bytes of q
  // (q = 256 high + low) of 16 output channels x 64 taps, zero-padded: per channel block, the blocks
  // of 64 taps (c, ky, kx) in order, or per kernel position (ky, kx) the blocks of 64 input channels.
  int64_t tap_blocks() const { return (taps() + 63) / 64; }
  int64_t input_blocks() const { return (cg + 63) / 64; }
  int64_t tile_blocks() const { return layout == Layout::kAmxTaps ? tap_blocks() : kh * kw * input_blocks(); }
  const int8_t *amx_tiles(int64_t channel_block) const { return tiles_.data() + channel_block * tile_blocks() * 2048; }

 private:
  std::vector<int32_t> exponents_;
  std::vector<int64_t> totals_;
  std::vector<int32_t> pairs_;
  std::vector<int8_t> tiles_;
};

// The geometry of one convolution: input [n, c, h, w], the weight's [o, c / groups, kh, kw].
struct ConvShape {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t stride = 1, ph = 0, pw = 0;
  int64_t ho(const IntegerWeight &w_) const { return (h + 2 * ph - w_.kh) / stride + 1; }
  int64_t wo(const IntegerWeight &w_) const { return (w + 2 * pw - w_.kw) / stride + 1; }
};

// std::invalid_argument (naming the argument) unless the convolution is one conv2d computes.
void check_arguments(const ConvShape &shape, const IntegerWeight &weight, int threads);

// output [n, o, ho, wo] (see the top of this file) with up to `threads` threads (the calling one
// included), by the kernel the weight is prepared for. check_arguments must hold. May throw
// std::bad_alloc; never leaves a thread running.
void conv2d(const float *input, const IntegerWeight &weight, const double *bias, float *output, const ConvShape &shape,
            int threads);

// Batched products out[t] = a[t] @ b[t] of a [batch, m, k] and b [batch, k, n] (float32, C-contiguous;
// m, k, n positive, k <= kMaxTaps): each matrix on its own grid as a sample's activations are
// (step 1 above), the integer products summed exactly, out = float(double(S) * 2 ** (e_a - 15 +
// e_b - 15)). The same kernels and the same bits as conv2d.
void matmul(const float *a, const float *b, float *out, int64_t batch, int64_t m, int64_t k, int64_t n, int threads,
            Isa isa);

}  // namespace integer
}  // namespace sevc
