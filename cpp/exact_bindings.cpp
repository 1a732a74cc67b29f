// sevc: Python bindings of the exact float64 convolution, the integer convolution and the portable functions (module
// sevc._exact).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "exact_conv.h"
#include "integer_conv.h"
#include "integer_math.h"
#include "portable_math.h"

namespace py = pybind11;
using sevc::exact::ConvShape;
using sevc::exact::Isa;

namespace {

using DoubleArray = py::array_t<double, py::array::c_style>;

std::string type_name(const py::handle &obj) { return Py_TYPE(obj.ptr())->tp_name; }

std::string shape_of(const py::array &array) { return py::str(array.attr("shape")).cast<std::string>(); }

// `obj` as an `ndim`-D, C-contiguous, aligned float64 numpy array; never a converted copy, which
// would hide a caller's mistake and cost a pass over the data.
DoubleArray float64_array(const py::object &obj, const std::string &name, py::ssize_t ndim, const char *layout) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a numpy.ndarray of float64 (convert a torch.Tensor with .numpy()), not " +
                         type_name(obj));
  const auto array = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<double>>(array))  // also rejects non-native byte order
    throw py::type_error(name + " must have dtype float64, got " + py::str(array.dtype()).cast<std::string>());
  if (array.ndim() != ndim)
    throw py::value_error(name + " must be " + std::to_string(ndim) + "-D " + layout + ", got shape " +
                          shape_of(array));
  if (!(array.flags() & py::array::c_style))
    throw py::value_error(name + " must be C-contiguous (use numpy.ascontiguousarray or tensor.contiguous())");
  if (!(array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(name + " must be aligned to 8 bytes");
  return py::reinterpret_borrow<DoubleArray>(array);
}

// A Python integer (anything with __index__ but bool) as int64, or TypeError / ValueError.
int64_t integer(const py::handle &obj, const std::string &name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(name + " must be an int, not " + type_name(obj));
  const py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!value) throw py::error_already_set();
  const long long v = PyLong_AsLongLong(value.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(name + " is out of range: " + py::str(obj).cast<std::string>());
  }
  return static_cast<int64_t>(v);
}

// An int argument that must lie in [lo, hi] (the range is checked here, before any narrowing).
int64_t integer_in(const py::handle &obj, const std::string &name, int64_t lo, int64_t hi, const std::string &or_else = "") {
  const int64_t v = integer(obj, name);
  if (v < lo || v > hi)
    throw py::value_error(name + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + or_else + ", got " +
                          std::to_string(v));
  return v;
}

// padding: an int (both axes) or a pair (ph, pw).
std::pair<int64_t, int64_t> padding_pair(const py::object &obj) {
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const auto items = py::reinterpret_borrow<py::sequence>(obj);
    if (py::len(items) != 2)
      throw py::value_error("padding must be an int or a pair (ph, pw), got " + py::repr(obj).cast<std::string>());
    return {integer(items[0], "padding[0]"), integer(items[1], "padding[1]")};
  }
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error("padding must be an int or a pair (ph, pw), not " + type_name(obj));
  const int64_t p = integer(obj, "padding");
  return {p, p};
}

Isa kernel_isa(const std::string &kernel) {
  if (kernel == "auto") return Isa::kAuto;
  if (kernel == "avx2") return Isa::kAvx2;
  if (kernel == "generic") return Isa::kGeneric;
  throw py::value_error("kernel must be 'auto', 'avx2' or 'generic', got '" + kernel + "'");
}

// Checks everything, runs the kernel without the GIL, returns the new output array.
py::array run(const DoubleArray &input, const DoubleArray &weight, const py::object &bias_obj, ConvShape s,
              int activation_bits, int threads, const std::string &kernel) {
  const Isa isa = kernel_isa(kernel);
  sevc::exact::check_arguments(s, activation_bits, threads);  // std::invalid_argument -> ValueError
  if (weight.shape(1) * s.groups != s.c)
    throw py::value_error("weight has " + std::to_string(weight.shape(1)) + " input channels per group but input has " +
                          std::to_string(s.c) + " channels in " + std::to_string(s.groups) + " group" +
                          (s.groups > 1 ? "s" : "") + " (weight must be [O, C / groups, kh, kw])");
  DoubleArray bias;
  if (!bias_obj.is_none()) {
    if (!py::isinstance<py::array>(bias_obj))
      throw py::type_error("bias must be None or a numpy.ndarray of float64 [O] (convert a torch.Tensor with "
                           ".numpy()), not " + type_name(bias_obj) +
                           (PyIndex_Check(bias_obj.ptr()) ? " (the full form is conv2d(input, weight, bias, stride, "
                                                            "padding, ...))" : ""));
    bias = float64_array(bias_obj, "bias", 1, "[O]");
    if (bias.shape(0) != s.o)
      throw py::value_error("bias must have shape (" + std::to_string(s.o) + ",) (one per output channel), got " +
                            shape_of(bias));
  }
  if (isa == Isa::kAvx2 && sevc::exact::best_isa() != Isa::kAvx2)
    throw py::value_error("kernel 'avx2' needs a CPU with AVX2 and FMA");
  DoubleArray output({s.n, s.o, s.ho(), s.wo()});
  double *out = output.mutable_data();
  const double *bias_data = bias_obj.is_none() ? nullptr : bias.data();
  {
    py::gil_scoped_release release;
    sevc::exact::conv2d(input.data(), weight.data(), bias_data, out, s, activation_bits, threads, isa);
  }
  return std::move(output);
}

ConvShape conv_shape(const DoubleArray &input, const DoubleArray &weight, const py::object &stride_obj,
                   const py::object &padding_obj, int64_t groups) {
  ConvShape s;
  s.n = input.shape(0);
  s.c = input.shape(1);
  s.h = input.shape(2);
  s.w = input.shape(3);
  s.o = weight.shape(0);
  s.kh = weight.shape(2);
  s.kw = weight.shape(3);
  s.groups = groups;
  s.stride = integer(stride_obj, "stride");
  std::tie(s.ph, s.pw) = padding_pair(padding_obj);
  return s;
}

py::array conv2d(const py::object &input_obj, const py::object &weight_obj, const py::object &bias_obj,
                 const py::object &stride_obj, const py::object &padding_obj, const py::object &groups_obj,
                 const py::object &bits_obj, const py::object &threads_obj, const std::string &kernel) {
  const DoubleArray input = float64_array(input_obj, "input", 4, "[N, C, H, W]");
  const DoubleArray weight = float64_array(weight_obj, "weight", 4, "[O, C / groups, kh, kw]");
  const int64_t groups = integer(groups_obj, "groups");  // checked with the shape
  const ConvShape s = conv_shape(input, weight, stride_obj, padding_obj, groups);
  const int64_t bits = bits_obj.is_none() ? sevc::exact::kNoRounding
                                          : integer_in(bits_obj, "activation_bits", 1, sevc::exact::kMaxActivationBits,
                                                       " or None");
  const int64_t threads = integer_in(threads_obj, "threads", 1, sevc::exact::kMaxThreads);
  return run(input, weight, bias_obj, s, static_cast<int>(bits), static_cast<int>(threads), kernel);
}

// --- the portable functions (portable_math.h) -----------------------------------------------

using sevc::portable::Kernels;

// `obj` as a C-contiguous, aligned float64 numpy array of any shape with at least `min_ndim` dims.
DoubleArray float64_input(const py::object &obj, const std::string &name, py::ssize_t min_ndim) {
  if (py::isinstance<py::array>(obj)) {
    const auto array = py::reinterpret_borrow<py::array>(obj);
    if (array.ndim() < min_ndim)
      throw py::value_error(name + " must have at least " + std::to_string(min_ndim) + " dim, got shape " +
                            shape_of(array));
    return float64_array(obj, name, array.ndim(), "");
  }
  return float64_array(obj, name, min_ndim, "");  // the type error
}

// A new float64 array of x's shape.
DoubleArray like(const DoubleArray &x) { return DoubleArray(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())); }

Kernels portable_kernels(const std::string &kernel) {
  if (kernel == "auto") return Kernels::kAuto;
  if (kernel == "generic") return Kernels::kGeneric;
  if (kernel == "avx2") {
    if (!sevc::portable::uses_avx2()) throw py::value_error("kernel 'avx2' needs a CPU with AVX2");
    return Kernels::kAvx2;
  }
  throw py::value_error("kernel must be 'auto', 'avx2' or 'generic', got '" + kernel + "'");
}

// The arguments every portable function takes: threads and kernel.
struct Run {
  int threads;
  Kernels kernels;
  Run(const py::object &threads_obj, const std::string &kernel)
      : threads(static_cast<int>(integer_in(threads_obj, "threads", 1, sevc::portable::kMaxThreads))),
        kernels(portable_kernels(kernel)) {}
};

// y = f(x) elementwise, f(x, y, n, threads, kernels) without the GIL.
template <class F> py::array elementwise(const py::object &x_obj, const Run &run, const F &f) {
  const DoubleArray x = float64_input(x_obj, "x", 0);
  DoubleArray y = like(x);
  double *out = y.mutable_data();
  {
    py::gil_scoped_release release;
    f(x.data(), out, static_cast<int64_t>(x.size()), run.threads, run.kernels);
  }
  return std::move(y);
}

using ElementwiseFn = void (*)(const double *, double *, int64_t, int, Kernels);
template <ElementwiseFn f> py::array elementwise_fn(const py::object &x, const py::object &threads,
                                                    const std::string &kernel) {
  return elementwise(x, Run(threads, kernel), f);
}

py::array softplus(const py::object &x, double threshold, const py::object &threads, const std::string &kernel) {
  if (std::isnan(threshold)) throw py::value_error("threshold must not be NaN");
  return elementwise(x, Run(threads, kernel), [threshold](const double *in, double *out, int64_t n, int t, Kernels k) {
    sevc::portable::softplus(in, out, n, threshold, t, k);
  });
}

py::array softmax(const py::object &x_obj, const py::object &threads, const std::string &kernel) {
  const DoubleArray x = float64_input(x_obj, "x", 1);
  const Run run(threads, kernel);
  DoubleArray y = like(x);
  const int64_t length = x.shape(x.ndim() - 1);
  if (x.size() == 0) return std::move(y);
  double *out = y.mutable_data();
  {
    py::gil_scoped_release release;
    sevc::portable::softmax(x.data(), out, x.size() / length, length, run.threads, run.kernels);
  }
  return std::move(y);
}

py::tuple layer_norm_statistics(const py::object &x_obj, const py::object &threads, const std::string &kernel) {
  const DoubleArray x = float64_input(x_obj, "x", 1);
  const Run run(threads, kernel);
  const int64_t length = x.shape(x.ndim() - 1);
  DoubleArray deviation = like(x);
  std::vector<py::ssize_t> row_shape(x.shape(), x.shape() + x.ndim());
  row_shape.back() = 1;
  DoubleArray variance(row_shape);
  if (x.size() > 0) {
    double *d = deviation.mutable_data(), *v = variance.mutable_data();
    py::gil_scoped_release release;
    sevc::portable::layer_norm_statistics(x.data(), d, v, x.size() / length, length, run.threads, run.kernels);
  }
  return py::make_tuple(std::move(deviation), std::move(variance));
}

py::array to_grid(const py::object &x_obj, const py::object &bits_obj, const py::object &dims_obj,
                  const py::object &threads, const std::string &kernel) {
  const DoubleArray x = float64_input(x_obj, "x", 1);
  const int bits = static_cast<int>(integer_in(bits_obj, "bits", 1, sevc::portable::kMaxGridBits));
  const int64_t dims = integer_in(dims_obj, "dims", 1, x.ndim(), " (x's trailing dims that share a grid)");
  const Run run(threads, kernel);
  DoubleArray y = like(x);
  if (x.size() == 0) return std::move(y);
  int64_t length = 1;
  for (py::ssize_t d = x.ndim() - dims; d < x.ndim(); ++d) length *= x.shape(d);
  double *out = y.mutable_data();
  {
    py::gil_scoped_release release;
    sevc::portable::to_grid(x.data(), out, x.size() / length, length, bits, run.threads, run.kernels);
  }
  return std::move(y);
}

// --- the integer convolution (integer_conv.h) ------------------------------------------------

namespace int_conv = sevc::integer;

// `obj` as an `ndim`-D, C-contiguous, aligned numpy array of T (never a converted copy).
template <class T>
py::array_t<T, py::array::c_style> typed_array(const py::object &obj, const std::string &name, py::ssize_t ndim,
                                               const char *dtype, const char *layout) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a numpy.ndarray of " + dtype + ", not " + type_name(obj));
  const auto array = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<T>>(array))
    throw py::type_error(name + " must have dtype " + dtype + ", got " + py::str(array.dtype()).cast<std::string>());
  if (array.ndim() != ndim)
    throw py::value_error(name + " must be " + std::to_string(ndim) + "-D " + layout + ", got shape " +
                          shape_of(array));
  if (!(array.flags() & py::array::c_style) || !(array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(name + " must be C-contiguous and aligned");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(array);
}

std::unique_ptr<int_conv::IntegerWeight> make_integer_weight(const py::object &q_obj, const py::object &exponents_obj,
                                                            const py::object &groups_obj, const std::string &kernel) {
  const auto q = typed_array<int16_t>(q_obj, "q", 4, "int16", "[O, C / groups, kh, kw]");
  const auto exponents = typed_array<int32_t>(exponents_obj, "exponents", 1, "int32", "[O]");
  if (exponents.shape(0) != q.shape(0))
    throw py::value_error("exponents must have one entry per output channel (" + std::to_string(q.shape(0)) + ")");
  const int64_t groups = integer(groups_obj, "groups");
  const int_conv::Isa isa = int_conv::isa_named(kernel);
  return std::make_unique<int_conv::IntegerWeight>(q.data(), exponents.data(), q.shape(0), q.shape(1), q.shape(2),
                                                  q.shape(3), groups, isa);  // std::invalid_argument -> ValueError
}

py::array integer_conv2d(const py::object &input_obj, const int_conv::IntegerWeight &weight, const py::object &bias_obj,
                         const py::object &stride_obj, const py::object &padding_obj, const py::object &threads_obj) {
  const auto input = typed_array<float>(input_obj, "input", 4, "float32", "[N, C, H, W]");
  int_conv::ConvShape s;
  s.n = input.shape(0), s.c = input.shape(1), s.h = input.shape(2), s.w = input.shape(3);
  s.stride = integer(stride_obj, "stride");
  std::tie(s.ph, s.pw) = padding_pair(padding_obj);
  const int threads = static_cast<int>(integer_in(threads_obj, "threads", 1, int_conv::kMaxThreads));
  int_conv::check_arguments(s, weight, threads);
  const double *bias = nullptr;
  DoubleArray bias_array;
  if (!bias_obj.is_none()) {
    bias_array = float64_array(bias_obj, "bias", 1, "[O]");
    if (bias_array.shape(0) != weight.o)
      throw py::value_error("bias must have shape (" + std::to_string(weight.o) + ",), got " + shape_of(bias_array));
    bias = bias_array.data();
  }
  py::array_t<float, py::array::c_style> output({s.n, weight.o, s.ho(weight), s.wo(weight)});
  float *out = output.mutable_data();
  {
    py::gil_scoped_release release;
    int_conv::conv2d(input.data(), weight, bias, out, s, threads);
  }
  return std::move(output);
}

py::array integer_matmul(const py::object &a_obj, const py::object &b_obj, const py::object &threads_obj,
                         const std::string &kernel) {
  const auto a = typed_array<float>(a_obj, "a", 3, "float32", "[batch, m, k]");
  const auto b = typed_array<float>(b_obj, "b", 3, "float32", "[batch, k, n]");
  if (a.shape(0) != b.shape(0) || a.shape(2) != b.shape(1))
    throw py::value_error("a [batch, m, k] and b [batch, k, n] do not match: " + shape_of(a) + ", " + shape_of(b));
  const int threads = static_cast<int>(integer_in(threads_obj, "threads", 1, int_conv::kMaxThreads));
  const int_conv::Isa isa = int_conv::isa_named(kernel);
  py::array_t<float, py::array::c_style> out({a.shape(0), a.shape(1), b.shape(2)});
  float *data = out.mutable_data();
  {
    py::gil_scoped_release release;
    int_conv::matmul(a.data(), b.data(), data, a.shape(0), a.shape(1), a.shape(2), b.shape(2), threads, isa);
  }
  return std::move(out);
}

py::array integer_softmax(const py::object &x_obj, const py::object &threads_obj, const std::string &kernel) {
  const auto x = typed_array<float>(x_obj, "x", 2, "float32", "[rows, length]");
  const int threads = static_cast<int>(integer_in(threads_obj, "threads", 1, int_conv::kMaxThreads));
  if (kernel != "generic" && kernel != "avx512")
    throw py::value_error("kernel must be 'generic' or 'avx512', got '" + kernel + "'");
  py::array_t<float, py::array::c_style> y({x.shape(0), x.shape(1)});
  float *data = y.mutable_data();
  {
    py::gil_scoped_release release;
    int_conv::softmax(x.data(), data, x.shape(0), x.shape(1), threads,
                      kernel == "avx512" ? int_conv::MathKernels::kAvx512 : int_conv::MathKernels::kGeneric);
  }
  return std::move(y);
}

py::array integer_warp(const py::object &x_obj, const py::object &flow_obj, const py::object &threads_obj) {
  const auto x = typed_array<float>(x_obj, "x", 4, "float32", "[N, C, H, W]");
  const auto flow = typed_array<float>(flow_obj, "flow", 4, "float32", "[N, 2, H, W]");
  if (flow.shape(0) != x.shape(0) || flow.shape(1) != 2 || flow.shape(2) != x.shape(2) || flow.shape(3) != x.shape(3))
    throw py::value_error("flow must be [N, 2, H, W] of x's N, H, W: " + shape_of(x) + ", " + shape_of(flow));
  const int threads = static_cast<int>(integer_in(threads_obj, "threads", 1, int_conv::kMaxThreads));
  py::array_t<float, py::array::c_style> out({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
  float *data = out.mutable_data();
  {
    py::gil_scoped_release release;
    int_conv::warp(x.data(), flow.data(), data, x.shape(0), x.shape(1), x.shape(2), x.shape(3), threads);
  }
  return std::move(out);
}

}  // namespace

PYBIND11_MODULE(_exact, m) {
  m.doc() =
      "sevc exact float64 convolution: the whole convolution of sevc's portable numerics mode on the\n"
      "CPU in one call (input rounded onto its grid, exact sums, bias), bit-identical to torch's; and the\n"
      "portable mode's elementwise functions, softmax, layer-norm statistics and grid rounding,\n"
      "bit-identical to their torch definitions in sevc.numerics.";
  m.def("conv2d", &conv2d, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"),
        py::arg("padding"), py::arg("groups") = 1, py::arg("activation_bits") = 24, py::arg("threads") = 1,
        py::kw_only(), py::arg("kernel") = "auto",
        "conv2d(input, weight, bias, stride, padding, groups=1, activation_bits=24, threads=1, *, kernel='auto')\n"
        "    -> output\n\n"
        "The exact convolution of sevc.numerics.exact in one call, bit for bit equal to (bits = activation_bits)\n\n"
        "    largest = input.abs().amax(dim=(1, 2, 3), keepdim=True)     # per sample\n"
        "    e = torch.frexp(largest).exponent                          # largest < 2 ** e; 0 for 0, NaN, inf\n"
        "    xq = torch.round(input * 2 ** (bits - e)) * 2 ** (e - bits)  # half to even, exact powers of two\n"
        "    y = F.conv2d(xq, weight, None, stride, padding, 1, groups)  # exact sums\n"
        "    output = y if bias is None else y + bias.view(1, -1, 1, 1)  # one rounding\n\n"
        "for any finite input, given weights on their grids (sevc.numerics.exact.weight_grid with the same\n"
        "activation_bits), while products and sums stay in float64's range (not near subnormals or overflow).\n"
        "The rounding is fused into the kernel's padded copy of the input; only the maxima take a pass.\n\n"
        "input: float64 [N, C, H, W], any values; weight: float64 [O, C / groups, kh, kw]; bias: float64 [O]\n"
        "or None; all C-contiguous numpy arrays (tensor.numpy(); the output back with torch.from_numpy).\n"
        "stride: 1 or 2 (both axes); padding: an int or (ph, pw), zero padding; groups: dividing C and O\n"
        "(depthwise stride 1, groups = C = O, has its own loop); activation_bits: 1..52, or None to use\n"
        "the input as it is (already on a grid); threads: 1..256, the most threads to use (fewer for small\n"
        "convolutions; the result is the same for any). kernel: 'auto' (the best this CPU runs), 'avx2' or\n"
        "'generic' (plain C++), all with the same result.\n"
        "Returns output [N, O, Ho, Wo] float64 with Ho = (H + 2 ph - kh) // stride + 1 (same for W).\n"
        "A sample holding a NaN or an infinity is rounded as torch does (e = 0); its outputs are NaN or\n"
        "infinite where IEEE arithmetic makes them so, the others finite but not guaranteed bit-equal.");
  m.def("isa", [] { return sevc::exact::isa_name(sevc::exact::best_isa()); },
        "The kernel conv2d(kernel='auto') runs on this CPU: 'avx2' or 'generic'.");
  // The portable functions, each bit for bit equal to its definition in sevc.numerics.
  const auto elementwise_def = [&m](const char *name, py::array (*f)(const py::object &, const py::object &,
                                                                      const std::string &)) {
    const std::string doc = std::string(name) + "(x, threads=1, *, kernel='auto') -> y\n\n"
        "sevc.numerics.functions." + name + "(x) bit for bit, -0.0, subnormals, infinities and NaNs\n"
        "included, for x a C-contiguous float64 numpy array of any shape (a new array of its shape out).\n"
        "threads: 1..256, the most threads to use (the result is the same for any); kernel: 'auto' (the\n"
        "best this CPU runs), 'avx2' or 'generic' (plain C++), all with the same result.";
    m.def(name, f, py::arg("x"), py::arg("threads") = 1, py::kw_only(), py::arg("kernel") = "auto", doc.c_str());
  };
  elementwise_def("exp", &elementwise_fn<sevc::portable::exp>);
  elementwise_def("sigmoid", &elementwise_fn<sevc::portable::sigmoid>);
  elementwise_def("tanh", &elementwise_fn<sevc::portable::tanh>);
  elementwise_def("normal_cdf", &elementwise_fn<sevc::portable::normal_cdf>);
  elementwise_def("gelu", &elementwise_fn<sevc::portable::gelu>);
  m.def("softplus", &softplus, py::arg("x"), py::arg("threshold") = 20.0, py::arg("threads") = 1, py::kw_only(),
        py::arg("kernel") = "auto",
        "softplus(x, threshold=20.0, threads=1, *, kernel='auto') -> y\n\n"
        "sevc.numerics.functions.softplus(x, threshold) bit for bit (threshold not NaN); otherwise as exp.");
  m.def("softmax", &softmax, py::arg("x"), py::arg("threads") = 1, py::kw_only(), py::arg("kernel") = "auto",
        "softmax(x, threads=1, *, kernel='auto') -> y\n\n"
        "sevc.numerics.exact.softmax(x) (over the last dim) bit for bit, for x a C-contiguous float64 numpy\n"
        "array of at least one dim; threads and kernel as for exp.");
  m.def("layer_norm_statistics", &layer_norm_statistics, py::arg("x"), py::arg("threads") = 1, py::kw_only(),
        py::arg("kernel") = "auto",
        "layer_norm_statistics(x, threads=1, *, kernel='auto') -> (deviation, variance)\n\n"
        "The statistics of sevc.numerics.exact.layer_norm over x's last dim, bit for bit: deviation (x on its\n"
        "grid per row minus the row's exact mean; x's shape) and variance (the exact mean of the squared\n"
        "deviations on their grid; x's shape with a last dim of 1). x: a C-contiguous float64 numpy array of\n"
        "at least one dim; threads and kernel as for exp. (A row holding NaNs of different payloads gets\n"
        "NaNs whose payload may differ.)");
  m.def("to_grid", &to_grid, py::arg("x"), py::arg("bits"), py::arg("dims"), py::arg("threads") = 1, py::kw_only(),
        py::arg("kernel") = "auto",
        "to_grid(x, bits, dims, threads=1, *, kernel='auto') -> y\n\n"
        "sevc.numerics.exact.to_grid(x, bits, the last `dims` dims) bit for bit: one grid per index of x's\n"
        "other dims. x: a C-contiguous float64 numpy array; bits: 1..52; dims: 1..x.ndim; threads and kernel\n"
        "as for exp.");
  m.def("portable_isa", [] { return sevc::portable::uses_avx2() ? "avx2" : "generic"; },
        "The kernel the portable functions run with kernel='auto' on this CPU: 'avx2' or 'generic'.");
  py::class_<int_conv::IntegerWeight>(m, "IntegerWeight",
                                     "A weight on its integer grids, prepared for integer_conv2d (immutable).")
      .def(py::init(&make_integer_weight), py::arg("q"), py::arg("exponents"), py::arg("groups") = 1,
           py::arg("kernel") = "generic",
           "IntegerWeight(q, exponents, groups=1, kernel='generic'): q int16 [O, C / groups, kh, kw] (the\n"
           "integers of the weight), exponents int32 [O] (output channel o is on the grid 2 ** (exponents[o] -\n"
           "15)), C-contiguous numpy arrays; groups dividing O; kernel 'generic', 'avx2', 'avx512' or 'amx'\n"
           "(integer_isas(): those this CPU runs; all give the same results), the one integer_conv2d runs\n"
           "with this weight (which is laid out for it alone).")
      .def_property_readonly("shape", [](const int_conv::IntegerWeight &w) {
        return py::make_tuple(w.o, w.cg, w.kh, w.kw);
      })
      .def_property_readonly("kernel", [](const int_conv::IntegerWeight &w) { return int_conv::isa_name(w.isa); });
  m.def("integer_conv2d", &integer_conv2d, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"),
        py::arg("padding"), py::arg("threads") = 1,
        "integer_conv2d(input, weight, bias, stride, padding, threads=1) -> output\n\n"
        "The convolution of sevc's integer numerics mode (sevc.numerics.integer.reference_conv2d) in one\n"
        "call: input float32 [N, C, H, W] (C-contiguous numpy), weight an IntegerWeight, bias float64 [O] or\n"
        "None; stride 1 or 2; padding an int or (ph, pw); threads 1..256 (the result is the same for any);\n"
        "computed by the weight's kernel. Returns output float32 [N, O, Ho, Wo].");
  m.def("integer_matmul", &integer_matmul, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        py::arg("kernel") = "generic",
        "integer_matmul(a, b, threads=1, kernel='generic') -> out\n\n"
        "Integer numerics' batched product (sevc.numerics.integer.reference_matmul): a float32 [batch, m, k],\n"
        "b float32 [batch, k, n], C-contiguous numpy arrays, each matrix on its own grid; kernel as for\n"
        "IntegerWeight. Returns out float32 [batch, m, n].");
  m.def("integer_softmax", &integer_softmax, py::arg("x"), py::arg("threads") = 1, py::kw_only(),
        py::arg("kernel") = "generic",
        "integer_softmax(x, threads=1, *, kernel='generic') -> y\n\n"
        "Integer numerics' softmax over the last dim (sevc.numerics.integer._softmax_torch) bit for bit: x\n"
        "float32 [rows, length], C-contiguous; kernel 'generic' or 'avx512' (integer_math_isa()), the same bits.");
  m.def("integer_warp", &integer_warp, py::arg("x"), py::arg("flow"), py::arg("threads") = 1,
        "integer_warp(x, flow, threads=1) -> out\n\n"
        "sevc.nn.resample's explicit bilinear backward warp on float32 bit for bit: x [N, C, H, W], flow\n"
        "[N, 2, H, W] (x then y, pixels), C-contiguous float32 numpy arrays. Returns out [N, C, H, W].");
  m.def("integer_math_isa", [] {
        return int_conv::best_math_kernels() == int_conv::MathKernels::kAvx512 ? "avx512" : "generic";
      }, "The best integer_softmax kernel this CPU runs: 'avx512' or 'generic'.");
  m.def("integer_isa", [] { return int_conv::isa_name(int_conv::best_isa()); },
        "The best integer_conv2d kernel this CPU runs: 'avx512', 'avx2' or 'generic'.");
  m.def("integer_isas", [] {
        std::vector<std::string> names;
        for (const int_conv::Isa isa : int_conv::available_isas()) names.emplace_back(int_conv::isa_name(isa));
        return names;
      }, "Every integer_conv2d kernel this CPU runs.");
  m.attr("MAX_THREADS") = sevc::exact::kMaxThreads;
  m.attr("MAX_PADDING") = sevc::exact::kMaxPadding;
  m.attr("MAX_ACTIVATION_BITS") = sevc::exact::kMaxActivationBits;
}
