// sevc: the portable mode's elementwise functions, softmax, layer-norm statistics and grid rounding
// on the CPU (see portable_math.h).
//
// Each function is written once, as a template over its number type: double, or (GCC, Clang) a
// Pack of vectors of doubles whose +, -, *, /, comparisons and selections act lane by lane with
// exactly the IEEE-754 rounding of the double operations. Lane-wise operations cannot change a
// bit of a result, so the kernels compute the same bits whatever the vector width: they are
// compiled twice, for AVX2 (a function target attribute; chosen at run time where the CPU has it)
// and for the baseline target. Tails shorter than a number are padded into one.
//
// Each template mirrors its Python definition operation by operation. Some torch operations are
// built from others that give the same bits (the comments say why):
//   torch.round        |t| < 2^52: (|t| + 2^52) - 2^52 with t's sign; else t (already an integer);
//   two_pow(k)         (k + 1023) << 52 read as bits, k an integer-valued double: the low bits of
//                      k + 1.5 * 2^52 hold k (two's complement), the shift drops the rest;
//   frexp              of a positive normal number: its exponent field and its mantissa bits;
//   e / 2^-s           e * 2^s, both exact (softmax's grid).
// NaN inputs get the NaN the torch sequence gives them: an IEEE operation keeps (and quiets) a NaN
// operand's payload, torch's a - b is a + (-1) b (b's NaN when both are), clamp keeps x's NaN,
// torch.amax returns the canonical NaN, torch.where picks a side.
//
// Compile with -ffp-contract=off (no fused multiply-adds) and never -ffast-math. GCC also wants
// -fno-tree-ter for speed: else it emits each lane's chain of dependent operations (a Horner
// polynomial) as one expression after the other, and the out-of-order core cannot overlap them.
#include "portable_math.h"
#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__FAST_MATH__)
#error "portable_math.cpp needs IEEE-754 arithmetic: compile it without -ffast-math (and with -ffp-contract=off)"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SEVC_PM_VECTORS 1
#define SEVC_PM_INLINE inline __attribute__((always_inline))
#define SEVC_PM_UNROLL _Pragma("GCC unroll 64")
#else
#define SEVC_PM_VECTORS 0
#define SEVC_PM_INLINE inline
#define SEVC_PM_UNROLL
#endif

#if SEVC_PM_VECTORS && (defined(__x86_64__) || defined(__i386__))
#define SEVC_PM_X86 1
#define SEVC_PM_AVX2 __attribute__((target("avx2")))  // no "fma": nothing may fuse
#else
#define SEVC_PM_X86 0
#endif

namespace sevc {
namespace portable {
namespace {

// --- the constants of functions.py ------------------------------------------------------------

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
constexpr double kInvSqrtPi = 0.56418958354775628695;
constexpr double kExpMin = -745.0, kExpMax = 709.0;
constexpr double kErfSeriesLimit = 2.5;
constexpr double kErfcZero = 27.0;
constexpr int kErfcDepth = 60;
constexpr int kSumBits = 52;  // exact.SUM_BITS

// _EXP_TERMS: 1 / n!, n = 0..13.
constexpr double kExpTerms[] = {
    1.0, 1.0, 0.5, 0.16666666666666666,
    0.041666666666666664, 0.008333333333333333, 0.001388888888888889, 0.0001984126984126984,
    2.48015873015873e-05, 2.7557319223985893e-06, 2.755731922398589e-07, 2.505210838544172e-08,
    2.08767569878681e-09, 1.6059043836821613e-10};
// _ATANH_TERMS: 1 / (2n + 1), n = 1..12.
constexpr double kAtanhTerms[] = {
    0.3333333333333333, 0.2, 0.14285714285714285, 0.1111111111111111,
    0.09090909090909091, 0.07692307692307693, 0.06666666666666667, 0.058823529411764705,
    0.05263157894736842, 0.047619047619047616, 0.043478260869565216, 0.04};
// _ERF_TERMS: (-1)^n / (n! (2n + 1)), n = 0..44, each rounded once (Python's int / int).
constexpr double kErfTerms[] = {
    1.0, -0.3333333333333333, 0.1, -0.023809523809523808,
    0.004629629629629629, -0.0007575757575757576, 0.00010683760683760684, -1.3227513227513228e-05,
    1.4589169000933706e-06, -1.4503852223150468e-07, 1.3122532963802806e-08, -1.0892221037148573e-09,
    8.35070279514724e-11, -5.9477940136376354e-12, 3.9554295164585257e-13, -2.466827010264457e-14,
    1.4483264643598138e-15, -8.032735012415773e-17, 4.221407288807088e-18, -2.107855191442136e-19,
    1.0025164934907719e-20, -4.5518467589282e-22, 1.977064753877905e-23, -8.230149299214221e-25,
    3.289260349175752e-26, -1.2641078988989164e-27, 4.6784835155184856e-29, -1.669761793417372e-30,
    5.754191643982172e-32, -1.9169428621097826e-33, 6.180307588222796e-35, -1.930357208815108e-36,
    5.846755007468836e-38, -1.7188560628017835e-39, 4.908923964523423e-41, -1.3630412617791396e-42,
    3.6824935154611457e-44, -9.687280238870761e-46, 2.483069097454912e-47, -6.205657919637397e-49,
    1.5131079495412172e-50, -3.601579309810126e-52, 8.373419683872282e-54, -1.9025412272898796e-55,
    4.2267897541935526e-57};

constexpr uint64_t kSignBit = uint64_t{1} << 63;
constexpr uint64_t kQuietBit = uint64_t{1} << 51;
constexpr uint64_t kMantissaBits = (uint64_t{1} << 52) - 1;
constexpr double kTwo52 = 4503599627370496.0;         // 2^52
constexpr double kOneAndHalfTwo52 = 6755399441055744.0;  // 1.5 * 2^52
constexpr double kCanonicalNaN = std::numeric_limits<double>::quiet_NaN();  // torch.amax's NaN
constexpr double kInf = std::numeric_limits<double>::infinity();

// --- number types: double, and Pack ------------------------------------------------------------
//
// Every template below takes its number type T: double, or Pack<V, K>, K vectors V of doubles
// (GCC / Clang vector extensions of the target's register width: GCC splits the comparisons of
// wider vectors into scalar branches) used as one number of K x lanes lanes. A Pack's operators
// apply the double operation lane by lane to its K vectors in turn: K independent chains of
// operations for the out-of-order core.

SEVC_PM_INLINE uint64_t bits_of(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
SEVC_PM_INLINE double from_bits(uint64_t b) {
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
SEVC_PM_INLINE double select(bool m, double a, double b) { return m ? a : b; }

// Num<T>: lanes, splat (every lane c), load and store (of `lanes` doubles).
template <class T> struct Num;
template <> struct Num<double> {
  static constexpr int kLanes = 1;
  static SEVC_PM_INLINE double splat(double c) { return c; }
  static SEVC_PM_INLINE double load(const double *p) { return *p; }
  static SEVC_PM_INLINE void store(double *p, double v) { *p = v; }
};
template <class T> SEVC_PM_INLINE T splat(double c) { return Num<T>::splat(c); }
template <class T> SEVC_PM_INLINE T load(const double *p) { return Num<T>::load(p); }
template <class T> SEVC_PM_INLINE void store(double *p, const T &v) { Num<T>::store(p, v); }

#if SEVC_PM_VECTORS
typedef double Vec2 __attribute__((vector_size(16)));
typedef uint64_t Bits2 __attribute__((vector_size(16)));
typedef double Vec4 __attribute__((vector_size(32)));
typedef uint64_t Bits4 __attribute__((vector_size(32)));
template <class V> struct BitsOf;  // the vector of a double vector's bits, and back
template <> struct BitsOf<Vec2> { using type = Bits2; };
template <> struct BitsOf<Vec4> { using type = Bits4; };
template <class B> struct DoublesOf;
template <> struct DoublesOf<Bits2> { using type = Vec2; };
template <> struct DoublesOf<Bits4> { using type = Vec4; };

template <class V, int K> struct Pack {
  V v[K];
};

// Narrow<T>: the number type for short, simple work (a few operations per element, loop-carried
// maxima and sums): two vectors. Long chains of dependent operations (exp, the series) take wide
// numbers, K vectors, to keep K chains in flight; simple work in them only spills registers.
template <class T> struct NarrowOf {
  using type = T;
};
template <class V, int K> struct NarrowOf<Pack<V, K>> {
  using type = Pack<V, (K < 2 ? K : 2)>;
};

template <class V, int K> struct Num<Pack<V, K>> {
  static constexpr int kVectorLanes = static_cast<int>(sizeof(V) / sizeof(double));
  static constexpr int kLanes = K * kVectorLanes;
  static SEVC_PM_INLINE Pack<V, K> splat(double c) {
    Pack<V, K> r;
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < kVectorLanes; ++i) r.v[k][i] = c;
    return r;
  }
  static SEVC_PM_INLINE Pack<V, K> load(const double *p) {  // vector by vector: straight into registers
    Pack<V, K> r;
    for (int k = 0; k < K; ++k) std::memcpy(&r.v[k], p + k * kVectorLanes, sizeof(V));
    return r;
  }
  static SEVC_PM_INLINE void store(double *p, const Pack<V, K> &a) {
    for (int k = 0; k < K; ++k) std::memcpy(p + k * kVectorLanes, &a.v[k], sizeof(V));
  }
};

// Pack op Pack, Pack op scalar and scalar op Pack, lane by lane.
#define SEVC_PM_PACK_OPERATOR(op)                                                             \
  template <class A, class B, int K>                                                          \
  SEVC_PM_INLINE auto operator op(const Pack<A, K> &a, const Pack<B, K> &b) {                 \
    Pack<decltype(a.v[0] op b.v[0]), K> r;                                                    \
    for (int k = 0; k < K; ++k) r.v[k] = a.v[k] op b.v[k];                                    \
    return r;                                                                                 \
  }                                                                                           \
  template <class A, int K, class S, class = std::enable_if_t<std::is_arithmetic<S>::value>> \
  SEVC_PM_INLINE auto operator op(const Pack<A, K> &a, S b) {                                 \
    Pack<decltype(a.v[0] op b), K> r;                                                         \
    for (int k = 0; k < K; ++k) r.v[k] = a.v[k] op b;                                         \
    return r;                                                                                 \
  }                                                                                           \
  template <class A, int K, class S, class = std::enable_if_t<std::is_arithmetic<S>::value>> \
  SEVC_PM_INLINE auto operator op(S a, const Pack<A, K> &b) {                                 \
    Pack<decltype(a op b.v[0]), K> r;                                                         \
    for (int k = 0; k < K; ++k) r.v[k] = a op b.v[k];                                         \
    return r;                                                                                 \
  }
SEVC_PM_PACK_OPERATOR(+)
SEVC_PM_PACK_OPERATOR(-)
SEVC_PM_PACK_OPERATOR(*)
SEVC_PM_PACK_OPERATOR(/)
SEVC_PM_PACK_OPERATOR(<)
SEVC_PM_PACK_OPERATOR(>)
SEVC_PM_PACK_OPERATOR(==)
SEVC_PM_PACK_OPERATOR(!=)
SEVC_PM_PACK_OPERATOR(&)
SEVC_PM_PACK_OPERATOR(|)
SEVC_PM_PACK_OPERATOR(^)
SEVC_PM_PACK_OPERATOR(<<)
SEVC_PM_PACK_OPERATOR(>>)
#undef SEVC_PM_PACK_OPERATOR

template <class A, int K> SEVC_PM_INLINE Pack<A, K> operator-(const Pack<A, K> &a) {
  Pack<A, K> r;
  for (int k = 0; k < K; ++k) r.v[k] = -a.v[k];
  return r;
}

// A vector's bits as another vector type of the same size (a register move at most).
template <class To, class From, int K> SEVC_PM_INLINE Pack<To, K> reinterpret(const Pack<From, K> &a) {
  static_assert(sizeof(To) == sizeof(From), "vectors of one size");
  Pack<To, K> r;
  for (int k = 0; k < K; ++k) r.v[k] = reinterpret_cast<To>(a.v[k]);
  return r;
}
template <class V, int K> SEVC_PM_INLINE Pack<typename BitsOf<V>::type, K> bits_of(const Pack<V, K> &a) {
  return reinterpret<typename BitsOf<V>::type>(a);
}
template <class B, int K> SEVC_PM_INLINE Pack<typename DoublesOf<B>::type, K> from_bits(const Pack<B, K> &a) {
  return reinterpret<typename DoublesOf<B>::type>(a);
}
// m ? a : b lane by lane (a comparison's m: all ones or all zeros per lane), as bit operations.
template <class M, class V, int K>
SEVC_PM_INLINE Pack<V, K> select(const Pack<M, K> &m, const Pack<V, K> &a, const Pack<V, K> &b) {
  const auto mask = reinterpret<typename BitsOf<V>::type>(m);
  return from_bits((bits_of(a) & mask) | (bits_of(b) & (mask ^ ~uint64_t{0})));
}
#else
template <class T> struct NarrowOf {
  using type = T;
};
#endif
template <class T> using Narrow = typename NarrowOf<T>::type;

// --- building blocks ----------------------------------------------------------------------------

template <class T> SEVC_PM_INLINE T abs_of(T x) { return from_bits(bits_of(x) & ~kSignBit); }
template <class T> SEVC_PM_INLINE T with_sign_of(T magnitude, T sign) {
  return from_bits((bits_of(magnitude) & ~kSignBit) | (bits_of(sign) & kSignBit));
}
// The NaN an IEEE operation makes of a NaN operand: the same payload, quiet.
template <class T> SEVC_PM_INLINE T quiet(T x) { return from_bits(bits_of(x) | kQuietBit); }

// a - b as torch subtracts tensors, a + (-1) b: where both are NaN, b's NaN (IEEE's a - b: a's).
template <class T> SEVC_PM_INLINE T minus(T a, T b) { return select(b != b, quiet(b), a - b); }

// x.clamp(lo, hi) for x not NaN.
template <class T> SEVC_PM_INLINE T clamp(T x, double lo, double hi) {
  return select(x < lo, splat<T>(lo), select(x > hi, splat<T>(hi), x));
}

// torch.round (half to even): for |t| < 2^52, |t| + 2^52 lies in [2^52, 2^53), where the doubles
// are the integers, so the addition rounds |t| to an integer (half to even, 2^52 being even) and
// the subtraction is exact; nearbyint's sign, -0.0 included, is t's. Larger t are integers
// already, NaN stays t.
template <class T> SEVC_PM_INLINE T round_even(T t) {
  const T a = abs_of(t);
  return select(a < kTwo52, with_sign_of((a + kTwo52) - kTwo52, t), t);
}

// functions.two_pow(k) = ((int64(k) + 1023) << 52) as a double, for integer-valued k, |k| < 2^51:
// k + 1.5 * 2^52 is exact and its bits are those of 1.5 * 2^52 (low 52 bits zero) plus k in two's
// complement, so (bits + 1023) << 52 is the same modulo 2^64.
template <class T> SEVC_PM_INLINE T two_pow(T k) { return from_bits((bits_of(k + kOneAndHalfTwo52) + 1023) << 52); }
SEVC_PM_INLINE double two_pow_int(int64_t k) { return from_bits(static_cast<uint64_t>(k + 1023) << 52); }

// functions._horner: c[0] + x (c[1] + x (c[2] + ...)), from the last coefficient, each step
// rounded twice.
template <class T, size_t N> SEVC_PM_INLINE T horner(T x, const double (&c)[N]) {
  T result = splat<T>(c[N - 1]);
  SEVC_PM_UNROLL
  for (int i = static_cast<int>(N) - 2; i >= 0; --i) result = result * x + c[i];
  return result;
}

// --- functions.py ---------------------------------------------------------------------------------

// exp for x not NaN: clamp, k = round(x log2 e), r = (x - k LN2_HI) - k LN2_LO, the Taylor
// polynomial of r scaled by 2^k in two steps.
template <class T> SEVC_PM_INLINE T exp_number(T x) {
  x = clamp(x, kExpMin, kExpMax);
  const T k = round_even(x * kLog2e);
  const T r = (x - k * kLn2Hi) - k * kLn2Lo;
  const T normal = clamp(k, -1022.0, 1023.0);
  return (horner(r, kExpTerms) * two_pow(normal)) * two_pow(k - normal);
}

// exp(NaN) is the NaN itself (quiet): every operation passes it on.
template <class T> SEVC_PM_INLINE T exp_(T x) { return select(x != x, quiet(x), exp_number(x)); }

// sigmoid = 1 / (1 + exp(-x)); NaN: -x's NaN (the sign flipped).
template <class T> SEVC_PM_INLINE T sigmoid_number(T x) { return 1.0 / (1.0 + exp_number(-x)); }
template <class T> SEVC_PM_INLINE T sigmoid_(T x) { return select(x != x, quiet(-x), sigmoid_number(x)); }

// tanh = 2 sigmoid(2x) - 1; NaN: sigmoid's, -x's.
template <class T> SEVC_PM_INLINE T tanh_(T x) {
  return select(x != x, quiet(-x), 2.0 * sigmoid_number(2.0 * x) - 1.0);
}

// log of a positive normal w (all that softplus needs): w = m 2^e, m in [1/2, 1) from the bits
// (torch.frexp), then m in [sqrt(1/2), sqrt(2)) and log(m) = 2 atanh(s) by its series.
template <class T> SEVC_PM_INLINE T log_normal(T w) {
  const auto b = bits_of(w);
  T m = from_bits((b & kMantissaBits) | (uint64_t{1022} << 52));
  // The exponent field E (< 2^11) as a double: the bits of 2^52 + E, minus 2^52; then e = E - 1022.
  T e = (from_bits((b >> 52) | bits_of(kTwo52)) - kTwo52) - 1022.0;
  const auto low = m < kSqrtHalf;
  m = select(low, m * 2.0, m);
  e = select(low, e - 1.0, e);  // (e - low) as integers, then float64: exact either way
  const T s = (m - 1.0) / (m + 1.0);
  const T s2 = s * s;
  const T log_m = 2.0 * s + 2.0 * s * (s2 * horner(s2, kAtanhTerms));
  return e * kLn2Hi + (e * kLn2Lo + log_m);
}

// log1p(u) for u > 0 with 1 + u finite: u where 1 + u rounds to 1.
template <class T> SEVC_PM_INLINE T log1p_positive(T u) {
  const T w = 1.0 + u;
  return select(w == 1.0, u, log_normal(w) - ((w - 1.0) - u) / w);
}

// softplus: x above the threshold (not NaN), else log1p(exp(x.clamp(max=threshold))), whose
// argument lies in (0, e^709]: 1 + it is normal. NaN: x's (clamp keeps it, exp quiets it).
template <class T> SEVC_PM_INLINE T softplus_(T x, double threshold) {
  const T t = splat<T>(threshold);
  const T below = log1p_positive(exp_number(select(x > t, t, x)));
  return select(x != x, quiet(x), select(x > t, x, below));
}

// _erf_series(a) = (2 / sqrt(pi)) a sum_n c_n (a^2)^n, for a < 2.5.
template <class T> SEVC_PM_INLINE T erf_series(T a) { return kTwoOverSqrtPi * a * horner(a * a, kErfTerms); }

// _erfc_fraction(a) for 2.5 <= a < 27: the continued fraction from depth 60, then
// e^(-a^2) / sqrt(pi) / fraction.
template <class T> SEVC_PM_INLINE T erfc_fraction(T a) {
  T fraction = a;
  SEVC_PM_UNROLL
  for (int n = kErfcDepth; n > 0; --n) fraction = a + (0.5 * n) / fraction;
  return exp_number(-(a * a)) * kInvSqrtPi / fraction;
}

// --- loops over arrays and rows -----------------------------------------------------------------

// y[i] = f(x[i]) for i < n, in numbers of type P, the tail padded into one.
template <class P, class F> SEVC_PM_INLINE void map(const double *x, double *y, int64_t n, const F &f) {
  constexpr int kLanes = Num<P>::kLanes;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, f(load<P>(x + i)));
  if (i < n) {
    double tail[kLanes] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(double));
    store(tail, f(load<P>(tail)));
    std::memcpy(y + i, tail, static_cast<size_t>(n - i) * sizeof(double));
  }
}

// max over i < n of f(x[i]), or NaN if one of them is NaN (any NaN: the caller knows which it
// wants); -inf for n = 0. The maximum does not depend on the order: lanes first, then the tail.
template <class Wide, class F> SEVC_PM_INLINE double row_max(const double *x, int64_t n, const F &f) {
  using P = Narrow<Wide>;
  constexpr int kLanes = Num<P>::kLanes;
  P largest = splat<P>(-kInf);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const P v = f(load<P>(x + i));
    largest = select((v > largest) | (v != v), v, largest);  // a NaN stays: nothing compares above it
  }
  double lanes[kLanes];
  store(lanes, largest);
  double result = -kInf;
  for (int k = 0; k < kLanes; ++k) result = (lanes[k] > result) | (lanes[k] != lanes[k]) ? lanes[k] : result;
  for (; i < n; ++i) {
    const double v = f(x[i]);
    result = (v > result) | (v != v) ? v : result;
  }
  return result;
}

// sum over i < n of f(x[i]), in lanes and then the tail: the terms are on a grid on which every
// partial sum is exact (or the sum is not finite), so the order does not matter.
template <class Wide, class F> SEVC_PM_INLINE double row_sum(const double *x, int64_t n, const F &f) {
  using P = Narrow<Wide>;
  constexpr int kLanes = Num<P>::kLanes;
  P sum = splat<P>(0.0);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) sum = sum + f(load<P>(x + i));
  double lanes[kLanes];
  store(lanes, sum);
  double result = 0.0;
  for (int k = 0; k < kLanes; ++k) result += lanes[k];
  for (; i < n; ++i) result += f(x[i]);
  return result;
}

// --- the functions as functors --------------------------------------------------------------------

struct Exp {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return exp_(x); }
};
struct Sigmoid {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return sigmoid_(x); }
};
struct Tanh {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return tanh_(x); }
};
struct Softplus {
  double threshold;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return softplus_(x, threshold); }
};
struct Negate {  // -x * sqrt(1/2): the argument normal_cdf passes to erfc
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return -x * kSqrtHalf; }
};
struct OneMinusErfSeries {
  template <class T> SEVC_PM_INLINE T operator()(T a) const { return 1.0 - erf_series(a); }
};
struct ErfcFraction {
  template <class T> SEVC_PM_INLINE T operator()(T a) const { return erfc_fraction(a); }
};
struct Identity {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return x; }
};
struct Magnitude {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return abs_of(x); }
};
struct Square {
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return x * x; }
};
struct Subtract {
  double value;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return minus(x, splat<T>(value)); }
};
struct Divide {
  double value;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return x / value; }
};
struct Grid {  // round(x * up) * down; up and down powers of two (or two_pow's bits when out of range)
  double up, down;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return round_even(x * up) * down; }
};
struct SquareOnGrid {
  Grid grid;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return grid(x * x); }
};
// exact.softmax's e: round(exp(x - max) / step) * step, e / step computed as e * 2^(52 - c): both
// are exactly e 2^(52 - c) (e <= 1 scaled up: no rounding, no overflow), or e's NaN.
struct SoftmaxGrid {
  double max;
  Grid grid;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return grid(exp_(minus(x, splat<T>(max)))); }
};

// --- erfc, branch by branch -----------------------------------------------------------------------

constexpr int kChunk = 512;  // elements per chunk of normal_cdf_chunk (its buffers stay in L1)

template <class F> struct OfMagnitude {
  F f;
  template <class T> SEVC_PM_INLINE T operator()(T x) const { return f(abs_of(x)); }
};

// value[index[j]] = f(|y[index[j]]|) for the count of the n elements a branch takes: packed
// together, computed in numbers P (the last padded with `pad`, an argument of the branch), put
// back; when the branch takes all n, directly.
template <class P, class F>
SEVC_PM_INLINE void branch(const double *y, const int *index, int count, int n, double pad, const F &f, double *value) {
  constexpr int kLanes = Num<P>::kLanes;
  if (count == n) return map<P>(y, value, n, OfMagnitude<F>{f});
  double packed[kChunk + kLanes];
  for (int j = 0; j < count; ++j) packed[j] = std::fabs(y[index[j]]);
  for (int j = count; j < count + kLanes; ++j) packed[j] = pad;
  for (int j = 0; j < count; j += kLanes) store(packed + j, f(load<P>(packed + j)));
  for (int j = 0; j < count; ++j) value[index[j]] = packed[j];
}

// From erfc's value before its sign: 0.5 erfc, and for gelu x times that.
template <bool kGelu> struct NormalCdfFinish {
  template <class T> SEVC_PM_INLINE T operator()(T x, T y, T value) const {
    const T cdf = 0.5 * select(y < 0.0, 2.0 - value, value);
    return kGelu ? x * cdf : cdf;
  }
};

// out[i] = normal_cdf(x[i]) (kGelu: gelu(x[i])) for i < n <= kChunk, functions.erfc's branches
// selected element by element: 1 - _erf_series(|y|) for |y| < 2.5, _erfc_fraction(|y|) for
// 2.5 <= |y| < 27, 0 beyond and for NaN, with y = -x sqrt(1/2); erfc = 2 - value for y < 0;
// normal_cdf = 0.5 erfc, gelu = x normal_cdf.
template <class P, bool kGelu> SEVC_PM_INLINE void normal_cdf_chunk(const double *x, double *out, int n) {
  using N = Narrow<P>;
  constexpr int kLanes = Num<N>::kLanes;
  double y[kChunk], value[kChunk];
  int series[kChunk], fraction[kChunk];
  map<N>(x, y, n, Negate{});
  int series_count = 0, fraction_count = 0;
  for (int i = 0; i < n; ++i) {
    const double a = std::fabs(y[i]);
    series[series_count] = i;
    fraction[fraction_count] = i;
    series_count += a < kErfSeriesLimit;
    fraction_count += (a >= kErfSeriesLimit) & (a < kErfcZero);
    value[i] = 0.0;
  }
  if (series_count) branch<P>(y, series, series_count, n, 0.0, OneMinusErfSeries{}, value);
  if (fraction_count) branch<P>(y, fraction, fraction_count, n, kErfSeriesLimit, ErfcFraction{}, value);
  const NormalCdfFinish<kGelu> finish;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, finish(load<N>(x + i), load<N>(y + i), load<N>(value + i)));
  for (; i < n; ++i) out[i] = finish(x[i], y[i], value[i]);
}

// --- rows -------------------------------------------------------------------------------------------

// torch.frexp(largest).exponent for largest >= 0 or NaN: 0 for 0, infinity and NaN.
inline int frexp_exponent(double largest) {
  if (!(largest > 0.0) || largest == kInf) return 0;
  int e;
  std::frexp(largest, &e);
  return e;
}

// exact.to_grid's grid of a row: 2^e above max |f(x)| (e = 0 if the max is 0, infinite or NaN).
template <class P, class F> SEVC_PM_INLINE Grid row_grid(const double *x, int64_t n, const F &f, int bits) {
  const int64_t e = frexp_exponent(row_max<P>(x, n, f));
  return Grid{two_pow_int(bits - e), two_pow_int(e - bits)};
}

int ceil_log2(int64_t count) {  // exact.ceil_log2
  int bits = 0;
  while (bits < 62 && (int64_t{1} << bits) < count) ++bits;
  return bits;
}

// --- kernels: a range of elements or rows, in numbers P ----------------------------------------------

template <class F> struct MapKernel {
  const double *x;
  double *y;
  F f;
  template <class P> SEVC_PM_INLINE void run(int64_t begin, int64_t end) const {
    map<P>(x + begin, y + begin, end - begin, f);
  }
};

template <bool kGelu> struct NormalCdfKernel {
  const double *x;
  double *y;
  template <class P> SEVC_PM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t start = begin; start < end; start += kChunk)
      normal_cdf_chunk<P, kGelu>(x + start, y + start, static_cast<int>(std::min<int64_t>(kChunk, end - start)));
  }
};

struct SoftmaxKernel {
  const double *x;
  double *y;
  int64_t length;
  Grid grid;  // 2^(52 - c) and 2^-(52 - c), c = ceil_log2(length)
  template <class P> SEVC_PM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t row = begin; row < end; ++row) {
      const double *xr = x + row * length;
      double *yr = y + row * length;
      double largest = row_max<P>(xr, length, Identity{});
      if (largest != largest) largest = kCanonicalNaN;  // torch.amax's NaN
      map<P>(xr, yr, length, SoftmaxGrid{largest, grid});
      map<Narrow<P>>(yr, yr, length, Divide{row_sum<P>(yr, length, Identity{})});
    }
  }
};

// exact.layer_norm's statistics: the deviation of the row on its grid from its mean, and the
// variance (the mean of the squared deviations on their grid).
struct LayerNormStatisticsKernel {
  const double *x;
  double *deviation, *variance;
  int64_t length;
  int bits;
  double inverse;  // 1 / length
  template <class P> SEVC_PM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t row = begin; row < end; ++row) {
      const double *xr = x + row * length;
      double *dr = deviation + row * length;
      map<Narrow<P>>(xr, dr, length, row_grid<P>(xr, length, Magnitude{}, bits));              // xq
      map<Narrow<P>>(dr, dr, length, Subtract{row_sum<P>(dr, length, Identity{}) * inverse});  // xq - mean
      const Grid grid = row_grid<P>(dr, length, Square{}, bits);
      variance[row] = row_sum<P>(dr, length, SquareOnGrid{grid}) * inverse;
    }
  }
};

struct GridKernel {
  const double *x;
  double *y;
  int64_t length;
  int bits;
  template <class P> SEVC_PM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t row = begin; row < end; ++row)
      map<Narrow<P>>(x + row * length, y + row * length, length,
                     row_grid<P>(x + row * length, length, Magnitude{}, bits));
  }
};

// The number types of the two compilations: AVX2 registers of 4 doubles, SSE2 ones of 2.
#if SEVC_PM_VECTORS
using GenericNumber = Pack<Vec2, 8>;
#else
using GenericNumber = double;
#endif
template <class Kernel> void run_generic(const Kernel &kernel, int64_t begin, int64_t end) {
  kernel.template run<GenericNumber>(begin, end);
}
#if SEVC_PM_X86
using Avx2Number = Pack<Vec4, 8>;
template <class Kernel> SEVC_PM_AVX2 void run_avx2(const Kernel &kernel, int64_t begin, int64_t end) {
  kernel.template run<Avx2Number>(begin, end);
}
#endif

bool cpu_has_avx2() {
#if SEVC_PM_X86
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
#else
  return false;
#endif
}

// Runs kernel over contiguous ranges of [0, count) on up to `threads` threads (the first range on
// the calling thread; a range whose thread cannot start runs there too), each thread with at least
// kMinThreadWork units of work (`work` per item): starting a thread costs about 30 us.
constexpr double kMinThreadWork = 1 << 16;

template <class Kernel> void run(const Kernel &kernel, int64_t count, double work, int threads, Kernels kernels) {
  if (threads < 1 || threads > kMaxThreads)
    throw std::invalid_argument("threads must be in 1.." + std::to_string(kMaxThreads) + ", got " +
                                std::to_string(threads));
  if (kernels == Kernels::kAvx2 && !cpu_has_avx2()) throw std::invalid_argument("the avx2 kernels need a CPU with AVX2");
  const bool avx2 = kernels != Kernels::kGeneric && cpu_has_avx2();
  const auto part = [&](int64_t begin, int64_t end) {
#if SEVC_PM_X86
    if (avx2) return run_avx2(kernel, begin, end);
#endif
    (void)avx2;
    run_generic(kernel, begin, end);
  };
  const double useful = std::max(1.0, static_cast<double>(count) * work / kMinThreadWork);
  const auto parts = static_cast<int64_t>(std::min<double>(threads, useful));
  parallel_for(parts, count, [&part](int64_t, int64_t begin, int64_t end) { part(begin, end); });
}

void check_size(int64_t value, const char *name) {
  if (value < 0) throw std::invalid_argument(std::string(name) + " must be >= 0, got " + std::to_string(value));
}

template <class F> void map_all(const double *x, double *y, int64_t n, F f, double work, int threads, Kernels kernels) {
  check_size(n, "n");
  run(MapKernel<F>{x, y, f}, n, work, threads, kernels);
}

}  // namespace

// Work per element, relative to exp's (for the thread count).
void exp(const double *x, double *y, int64_t n, int threads, Kernels kernels) { map_all(x, y, n, Exp{}, 1.0, threads, kernels); }
void sigmoid(const double *x, double *y, int64_t n, int threads, Kernels kernels) { map_all(x, y, n, Sigmoid{}, 1.2, threads, kernels); }
void tanh(const double *x, double *y, int64_t n, int threads, Kernels kernels) { map_all(x, y, n, Tanh{}, 1.2, threads, kernels); }
void softplus(const double *x, double *y, int64_t n, double threshold, int threads, Kernels kernels) {
  if (threshold != threshold) throw std::invalid_argument("threshold must not be NaN");
  map_all(x, y, n, Softplus{threshold}, 2.5, threads, kernels);
}
void normal_cdf(const double *x, double *y, int64_t n, int threads, Kernels kernels) {
  check_size(n, "n");
  run(NormalCdfKernel<false>{x, y}, n, 4.0, threads, kernels);
}
void gelu(const double *x, double *y, int64_t n, int threads, Kernels kernels) {
  check_size(n, "n");
  run(NormalCdfKernel<true>{x, y}, n, 4.0, threads, kernels);
}

void softmax(const double *x, double *y, int64_t rows, int64_t length, int threads, Kernels kernels) {
  check_size(rows, "rows");
  if (length < 1) throw std::invalid_argument("length must be >= 1, got " + std::to_string(length));
  const int scale_bits = kSumBits - ceil_log2(length);
  run(SoftmaxKernel{x, y, length, Grid{two_pow_int(scale_bits), two_pow_int(-scale_bits)}}, rows,
      1.3 * static_cast<double>(length), threads, kernels);
}

void layer_norm_statistics(const double *x, double *deviation, double *variance, int64_t rows, int64_t length,
                           int threads, Kernels kernels) {
  check_size(rows, "rows");
  if (length < 1) throw std::invalid_argument("length must be >= 1, got " + std::to_string(length));
  run(LayerNormStatisticsKernel{x, deviation, variance, length, kSumBits - ceil_log2(length),
                                1.0 / static_cast<double>(length)},
      rows, 0.5 * static_cast<double>(length), threads, kernels);
}

void to_grid(const double *x, double *y, int64_t rows, int64_t length, int bits, int threads, Kernels kernels) {
  check_size(rows, "rows");
  check_size(length, "length");
  if (bits < 1 || bits > kMaxGridBits)
    throw std::invalid_argument("bits must be in 1.." + std::to_string(kMaxGridBits) + ", got " + std::to_string(bits));
  run(GridKernel{x, y, length, bits}, rows, 0.2 * static_cast<double>(length), threads, kernels);
}

bool uses_avx2() { return cpu_has_avx2(); }

}  // namespace portable
}  // namespace sevc
