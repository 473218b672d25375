// pst_fast._C: CPU fast paths. Every function takes raw pointers to contiguous buffers (passed from
// Python as integers via Tensor.data_ptr()) plus sizes, validates nothing the Python wrapper has
// already checked, and releases the GIL while it runs. OpenMP parallelizes over the batch.
#include <pybind11/pybind11.h>
#include <omp.h>

namespace py = pybind11;

void register_augment(py::module_& m);
void register_pgd(py::module_& m);
void register_sal(py::module_& m);

PYBIND11_MODULE(_C, m) {
  m.doc() = "pst_fast CPU kernels (C++17, OpenMP)";
  m.def("num_threads", []() { return omp_get_max_threads(); }, "OpenMP threads the kernels use");
  register_augment(m);
  register_pgd(m);
  register_sal(m);
}
