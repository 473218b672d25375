// SAL bookkeeping on float32 rows (one row per weight variant, V rows of n elements, dense):
//   project:   r = ||w - w0|| / ||w0|| (sums in double); if r > radius: w = w0 + (w - w0) * (radius / r);
//              writes r (before projection) to ratio[v].
//   sharpness: loss_max, loss_min are (R, V) row-major, l0 is (V,):
//              s_max = max(l0, max_k loss_max[k]) - l0;  s_min = l0 - min(l0, min_k loss_min[k]);
//              out[v] = max(s_max, s_min).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace py = pybind11;

namespace {

void project(float* w, const float* w0, float* ratio, int64_t V, int64_t n, float radius) {
#pragma omp parallel for schedule(static)
  for (int64_t v = 0; v < V; ++v) {
    float* row = w + v * n;
    const float* base = w0 + v * n;
    double dd = 0.0, bb = 0.0;
#pragma omp simd reduction(+ : dd, bb)
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(row[i]) - static_cast<double>(base[i]);
      dd += d * d;
      bb += static_cast<double>(base[i]) * base[i];
    }
    const float r = static_cast<float>(std::sqrt(dd) / std::sqrt(bb));
    ratio[v] = r;
    if (r > radius) {
      const float scale = radius / r;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) row[i] = base[i] + (row[i] - base[i]) * scale;
    }
  }
}

void sharpness(const float* l0, const float* loss_max, const float* loss_min, float* out, int64_t R, int64_t V) {
  for (int64_t v = 0; v < V; ++v) {
    float hi = l0[v], lo = l0[v];
    for (int64_t k = 0; k < R; ++k) {
      hi = std::max(hi, loss_max[k * V + v]);
      lo = std::min(lo, loss_min[k * V + v]);
    }
    out[v] = std::max(hi - l0[v], l0[v] - lo);
  }
}

}  // namespace

void register_sal(py::module_& m) {
  m.def(
      "sal_project",
      [](uintptr_t w, uintptr_t w0, uintptr_t ratio, int64_t V, int64_t n, float radius) {
        py::gil_scoped_release release;
        project(reinterpret_cast<float*>(w), reinterpret_cast<const float*>(w0), reinterpret_cast<float*>(ratio), V, n, radius);
      },
      "SAL radius projection of V weight rows in place; writes the pre-projection ratios");
  m.def(
      "sal_sharpness",
      [](uintptr_t l0, uintptr_t loss_max, uintptr_t loss_min, uintptr_t out, int64_t R, int64_t V) {
        py::gil_scoped_release release;
        sharpness(reinterpret_cast<const float*>(l0), reinterpret_cast<const float*>(loss_max),
                  reinterpret_cast<const float*>(loss_min), reinterpret_cast<float*>(out), R, V);
      },
      "per-variant sharpness max(S_max, S_min) from (R, V) round losses");
}
