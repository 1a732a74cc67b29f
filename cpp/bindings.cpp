// sevc: Python bindings of the rANS coder (module sevc._rans).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "rans.h"

namespace py = pybind11;
using sevc::CdfTables;

namespace {

using Int16Array = py::array_t<int16_t, py::array::c_style | py::array::forcecast>;
using Int32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

std::shared_ptr<CdfTables> make_tables(const Int32Array &cdfs, const Int32Array &lengths, const Int32Array &offsets) {
  if (cdfs.ndim() != 2) throw std::invalid_argument("cdfs must be a 2-D array [tables, entries]");
  const auto n = static_cast<int>(cdfs.shape(0));
  if (lengths.size() != n || offsets.size() != n)
    throw std::invalid_argument("cdfs, lengths and offsets must describe the same number of tables");
  return std::make_shared<CdfTables>(cdfs.data(), n, static_cast<int>(cdfs.shape(1)),
                                           lengths.data(), offsets.data());
}

void check_same_size(const Int16Array &symbols, const Int32Array &indexes) {
  if (symbols.size() != indexes.size())
    throw std::invalid_argument("symbols and indexes must have the same number of elements");
}

py::bytes to_bytes(const std::vector<uint8_t> &v) {
  return py::bytes(reinterpret_cast<const char *>(v.data()), v.size());
}

}  // namespace

PYBIND11_MODULE(_rans, m) {
  m.doc() = "sevc rANS entropy coder: 64-bit state, 16-bit CDF tables, escape coding.";
  py::register_exception<sevc::StreamError>(m, "StreamError", PyExc_ValueError);

  py::class_<CdfTables, std::shared_ptr<CdfTables>>(m, "CdfTables")
      .def(py::init(&make_tables),
           py::arg("cdfs"), py::arg("lengths"), py::arg("offsets"),
           "Quantized CDFs [n, L] (int32, 0..65536), used lengths [n] and value offsets [n].")
      .def("__len__", &CdfTables::size);

  py::class_<sevc::Encoder>(m, "RansEncoder")
      .def(py::init<int, bool>(), py::arg("stream_part") = 1, py::arg("threaded") = false)
      .def(
          "encode",
          [](sevc::Encoder &self, const Int16Array &symbols, const Int32Array &indexes,
             const std::shared_ptr<CdfTables> &tables) {
            check_same_size(symbols, indexes);
            py::gil_scoped_release release;
            self.encode(symbols.data(), indexes.data(), static_cast<size_t>(symbols.size()), tables);
          },
          py::arg("symbols"), py::arg("indexes"), py::arg("tables"),
          "Queue symbols (int16), each coded with the CDF table its index names.")
      .def(
          "flush",
          [](sevc::Encoder &self) {
            py::gil_scoped_release release;
            self.flush();
          },
          "Code everything queued since the last reset (in the background if threaded).")
      .def(
          "get_encoded_stream",
          [](sevc::Encoder &self) {
            std::vector<uint8_t> out;
            {
              py::gil_scoped_release release;
              out = self.get_stream();
            }
            return to_bytes(out);
          },
          "The stream written by the last flush, as bytes.")
      .def("reset", &sevc::Encoder::reset)
      .def_property_readonly("stream_part", &sevc::Encoder::parts);

  py::class_<sevc::Decoder>(m, "RansDecoder")
      .def(py::init<>())
      .def(
          "set_stream",
          [](sevc::Decoder &self, const py::bytes &stream) {
            const std::string_view view = stream;
            self.set_stream(reinterpret_cast<const uint8_t *>(view.data()), view.size());
          },
          py::arg("stream"))
      .def(
          "decode",
          [](sevc::Decoder &self, const Int32Array &indexes, const std::shared_ptr<CdfTables> &tables) {
            Int16Array out(indexes.size());
            int16_t *dst = out.mutable_data();
            {
              py::gil_scoped_release release;
              self.decode(indexes.data(), static_cast<size_t>(indexes.size()), *tables, dst);
            }
            return out;
          },
          py::arg("indexes"), py::arg("tables"), "Decode one symbol per index (int16 array).")
      .def_property_readonly("stream_part", &sevc::Decoder::parts);

  m.def(
      "pmf_to_quantized_cdf",
      [](const std::vector<float> &pmf, int precision) {
        return sevc::pmf_to_quantized_cdf(pmf, precision);
      },
      py::arg("pmf"), py::arg("precision") = 16,
      "Quantized CDF (len(pmf) + 1 entries, 0..2**precision) of a pmf, no symbol left at zero.");
}
