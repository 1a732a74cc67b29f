// sevc: Python bindings of the rANS coder (module sevc._rans).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "rans.h"

namespace py = pybind11;
using sevc::CdfTables;

namespace {

using Int16Array = py::array_t<int16_t, py::array::c_style | py::array::forcecast>;
using Int32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::string type_name(const py::handle &obj) { return Py_TYPE(obj.ptr())->tp_name; }

std::string shape_of(const py::array &array) { return py::str(array.attr("shape")).cast<std::string>(); }

// `obj` (an array of any shape, or a sequence of ints) as a C-contiguous array of T. None,
// non-integer dtypes (float, bool, object...) and values outside T's range are rejected,
// never cast: a silent cast would code other symbols than the caller's.
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> integer_array(const py::handle &obj,
                                                                        const std::string &name) {
  if (obj.is_none()) throw py::type_error(name + " must be an integer array, not None");
  const py::array array = py::array::ensure(obj);
  if (!array) throw py::type_error(name + " must be an integer array, not " + type_name(obj));
  const char kind = array.dtype().kind();
  const bool empty_sequence = array.size() == 0 && !py::isinstance<py::array>(obj);  // [] is float64
  if (kind != 'i' && kind != 'u' && !empty_sequence)
    throw py::type_error(name + " must be an integer array, not dtype " +
                         py::str(array.dtype()).cast<std::string>());
  const auto size = static_cast<size_t>(array.itemsize());
  const bool always_fits = (kind == 'i' && size <= sizeof(T)) || (kind == 'u' && size < sizeof(T));
  if (!always_fits && array.size() > 0) {
    const py::object low = array.attr("min")(), high = array.attr("max")();
    if (low < py::int_(std::numeric_limits<T>::min()) || high > py::int_(std::numeric_limits<T>::max()))
      throw py::value_error(name + " must fit in " + (sizeof(T) == 2 ? "int16" : "int32") + ", got values " +
                            py::str(low).cast<std::string>() + ".." + py::str(high).cast<std::string>());
  }
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(array);
}

// The tables a coding call names: pybind11 passes None as a null pointer.
const CdfTables &require_tables(const std::shared_ptr<CdfTables> &tables) {
  if (!tables) throw py::type_error("tables must be a CdfTables, not None");
  return *tables;
}

// CdfTables from Python arrays: cdfs [n, L], lengths [n] and offsets [n], all integers fitting int32.
std::shared_ptr<CdfTables> make_tables(const py::object &cdfs_obj, const py::object &lengths_obj,
                                       const py::object &offsets_obj) {
  const Int32Array cdfs = integer_array<int32_t>(cdfs_obj, "cdfs");
  const Int32Array lengths = integer_array<int32_t>(lengths_obj, "lengths");
  const Int32Array offsets = integer_array<int32_t>(offsets_obj, "offsets");
  if (cdfs.ndim() != 2 || cdfs.shape(0) < 1 || cdfs.shape(1) < 2)
    throw py::value_error("cdfs must be a 2-D array [tables, entries] with at least 1 table of 2 entries, "
                          "got shape " + shape_of(cdfs));
  if (cdfs.shape(0) > INT32_MAX || cdfs.shape(1) > INT32_MAX)
    throw py::value_error("cdfs holds more than 2**31 - 1 entries");
  const auto n = static_cast<int>(cdfs.shape(0));
  for (const auto &[array, name] : {std::pair{&lengths, "lengths"}, std::pair{&offsets, "offsets"}}) {
    if (array->ndim() != 1 || array->shape(0) != n)
      throw py::value_error(std::string(name) + " must be a 1-D array of " + std::to_string(n) +
                            " entries (one per CDF table), got shape " + shape_of(*array));
  }
  return std::make_shared<CdfTables>(cdfs.data(), n, static_cast<int>(cdfs.shape(1)), lengths.data(),
                                     offsets.data());
}

py::bytes to_bytes(const std::vector<uint8_t> &v) {
  return py::bytes(reinterpret_cast<const char *>(v.data()), v.size());
}

// A coder as Python holds it: the bindings release the GIL while it codes, so Python threads
// may call one object at once; each call runs `work` holding the object's mutex, taken after
// the GIL is released and let go before it is taken back (no lock-order inversion), so calls
// on one object run one after another.
template <typename Coder>
class Locked {
 public:
  template <typename... Args>
  explicit Locked(Args... args) : coder_(args...) {}

  template <typename Work>
  auto run(Work &&work) {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(mutex_);
    return work(coder_);
  }

  int parts() const { return coder_.parts(); }  // fixed when the coder is built

 private:
  Coder coder_;
  std::mutex mutex_;
};

using Encoder = Locked<sevc::Encoder>;
using Decoder = Locked<sevc::Decoder>;

}  // namespace

PYBIND11_MODULE(_rans, m) {
  m.doc() = "sevc rANS entropy coder: 64-bit state, 16-bit CDF tables, escape coding.";
  py::register_exception<sevc::StreamError>(m, "StreamError", PyExc_ValueError);

  py::class_<CdfTables, std::shared_ptr<CdfTables>>(m, "CdfTables")
      .def(py::init(&make_tables),
           py::arg("cdfs"), py::arg("lengths"), py::arg("offsets"),
           "Quantized CDFs [n, L] (int32, 0..65536), used lengths [n] (2..L) and value offsets [n] (int16).")
      .def("__len__", &CdfTables::size);

  py::class_<Encoder>(m, "RansEncoder",
                      "rANS encoder; one object may be shared by Python threads (its calls run one at a time).")
      .def(py::init<int, bool>(), py::arg("stream_part") = 1, py::arg("threaded") = false)
      .def(
          "encode",
          [](Encoder &self, const py::object &symbols_obj, const py::object &indexes_obj,
             const std::shared_ptr<CdfTables> &tables) {
            const Int16Array symbols = integer_array<int16_t>(symbols_obj, "symbols");
            const Int32Array indexes = integer_array<int32_t>(indexes_obj, "indexes");
            require_tables(tables);
            if (symbols.size() != indexes.size())
              throw py::value_error("symbols and indexes must have the same number of elements, got " +
                                    std::to_string(symbols.size()) + " and " + std::to_string(indexes.size()));
            self.run([&](sevc::Encoder &coder) {
              coder.encode(symbols.data(), indexes.data(), static_cast<size_t>(symbols.size()), tables);
            });
          },
          py::arg("symbols"), py::arg("indexes"), py::arg("tables"),
          "Queue symbols (integers fitting int16, any shape, coded in C order), each coded with the\n"
          "CDF table its index (integers fitting int32, same number of elements) names.")
      .def(
          "flush", [](Encoder &self) { self.run([](sevc::Encoder &coder) { coder.flush(); }); },
          "Code everything queued since the last reset (in the background if threaded).")
      .def(
          "get_encoded_stream",
          [](Encoder &self) { return to_bytes(self.run([](sevc::Encoder &coder) { return coder.get_stream(); })); },
          "The stream written by the last flush, as bytes.")
      .def("reset", [](Encoder &self) { self.run([](sevc::Encoder &coder) { coder.reset(); }); })
      .def_property_readonly("stream_part", &Encoder::parts);

  py::class_<Decoder>(m, "RansDecoder",
                      "rANS decoder; one object may be shared by Python threads (its calls run one at a time).")
      .def(py::init<>())
      .def(
          "set_stream",
          [](Decoder &self, const py::object &stream) {
            if (!py::isinstance<py::bytes>(stream))
              throw py::type_error("stream must be bytes, not " + type_name(stream));
            const auto bytes = stream.cast<py::bytes>();  // immutable, and kept alive by `stream`
            const std::string_view view = bytes;
            self.run([&](sevc::Decoder &coder) {
              coder.set_stream(reinterpret_cast<const uint8_t *>(view.data()), view.size());
            });
          },
          py::arg("stream"), "Start decoding a stream (bytes).")
      .def(
          "decode",
          [](Decoder &self, const py::object &indexes_obj, const std::shared_ptr<CdfTables> &tables) {
            const Int32Array indexes = integer_array<int32_t>(indexes_obj, "indexes");
            const CdfTables &cdf_tables = require_tables(tables);
            Int16Array out(std::vector<py::ssize_t>(indexes.shape(), indexes.shape() + indexes.ndim()));
            int16_t *dst = out.mutable_data();
            self.run([&](sevc::Decoder &coder) {
              coder.decode(indexes.data(), static_cast<size_t>(indexes.size()), cdf_tables, dst);
            });
            return out;
          },
          py::arg("indexes"), py::arg("tables"),
          "Decode one symbol per index (integers fitting int32, any shape): an int16 array of its shape.")
      .def(
          "finish", [](Decoder &self) { self.run([](sevc::Decoder &coder) { coder.finish(); }); },
          "Raise StreamError unless the stream was decoded exactly to its end (no byte left, final\n"
          "state back at the encoder's initial one); call it after the last decode of a stream.")
      .def_property_readonly("stream_part", &Decoder::parts);

  m.def(
      "pmf_to_quantized_cdf",
      [](const std::vector<float> &pmf, int precision) {
        py::gil_scoped_release release;
        return sevc::pmf_to_quantized_cdf(pmf, precision);
      },
      py::arg("pmf"), py::arg("precision") = 16,
      "Quantized CDF (len(pmf) + 1 entries, 0..2**precision) of a pmf, no symbol left at zero.");
}
