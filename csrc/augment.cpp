// Fused data path on the CPU: gather rows by index, add an int8 perturbation with clamping, random crop
// with zero or reflect padding, horizontal flip, normalization, NCHW or channels_last output, in one pass over
// memory: every output pixel reads its uint8 source (and int8 delta) once and is written once. OpenMP splits
// the (sample, row) pairs; per row the image columns [x0, x1) are computed without per-pixel bounds checks
// (with delta, the clamped source row is staged in an L1 buffer) and the at most 2 pad padding columns apart.
//
// Convention (shared with the torch reference and the Triton kernel): output pixel (b, c, y, x) reads
// source row sy = y + dy - pad and column sx = xf + dx - pad, where xf = W-1-x if flipped else x (crop,
// then flip the crop). Outside the image, zero padding gives the integer pixel 0 (it stays 0 even with
// delta) and reflect padding mirrors the index about the edge pixel (s < 0 -> -s, s >= n -> 2(n-1) - s,
// pad < n); a pixel read from the image is v = clamp(img[idx[b], sy, sx, c] + delta[delta_rows[b], sy, sx, c], 0, 255).
// The output element is lut[c * 256 + v]: the caller tabulates v -> v * scale[c] + bias[c] in the output
// dtype (or the identity for uint8), so normalization and rounding are exactly the reference's, and one
// kernel serves uint8, bfloat16 and float32 outputs (element sizes 1, 2, 4 bytes).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace py = pybind11;

namespace {

struct Args {
  const uint8_t* img;      // (N, H, W, C)
  const int64_t* idx;      // (B,)
  const int8_t* delta;     // (M, H, W, C) or nullptr
  const int64_t* drow;     // (B,) rows of delta
  const int64_t* shifts;   // (B, 2) dy, dx in [0, 2 pad]
  const uint8_t* flips;    // (B,) 0/1
  const void* lut;         // (C, 256) output values
  void* out;               // (B, C, H, W) contiguous or channels_last
  int64_t B;
  int H, W, C, pad;
  bool reflect;
  bool channels_last;
};

// The index s in [-(n-1), 2(n-1)] mirrored into [0, n) about the edge pixels.
inline int mirror(int s, int n) { return s < 0 ? -s : s >= n ? 2 * (n - 1) - s : s; }

// Writes the m interior pixels of one output row: pixel j of v (source order, C channels each) goes to
// output column j (Dir = +1) or m-1-j (Dir = -1, flipped) relative to o, through the per-channel table.
template <typename T, int CC, int Dir>
inline void write_row(const uint8_t* v, T* o, int m, int C_, int64_t xs, int64_t cs, const T* lut) {
  const int C = CC ? CC : C_;
  T* p = Dir > 0 ? o : o + (m - 1) * xs;
  for (int j = 0; j < m; ++j, v += C, p += Dir * xs)
    for (int c = 0; c < C; ++c) p[c * cs] = lut[c * 256 + v[c]];
}

// CC: the channel count when specialized (1 or 3), 0 for any C. CL: channels_last output. D: delta given.
template <typename T, int CC, bool CL, bool D>
void run(const Args& a) {
  const int H = a.H, W = a.W, C = CC ? CC : a.C, pad = a.pad;
  const int64_t plane = int64_t(H) * W * C, row_in = int64_t(W) * C;
  // Output strides in elements of x, c and y within one sample.
  const int64_t xs = CL ? C : 1, cs = CL ? 1 : int64_t(H) * W, ys = CL ? int64_t(W) * C : W;
  const T* lut = static_cast<const T*>(a.lut);
  T* const out = static_cast<T*>(a.out);
#pragma omp parallel
  {
    std::vector<uint8_t> clamped(D ? row_in : 0);  // one row of clamp(image + delta), per thread
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < a.B; ++b) {
      for (int y = 0; y < H; ++y) {
        T* o = out + b * plane + y * ys;
        const int sy = a.reflect ? mirror(y + int(a.shifts[2 * b]) - pad, H) : y + int(a.shifts[2 * b]) - pad;
        const int dx = int(a.shifts[2 * b + 1]) - pad;
        const bool flip = a.flips[b] != 0;
        // Output columns [x0, x1) read the image (sx = x + dx, or W-1-x + dx when flipped); the rest is padding.
        int x0 = W, x1 = W;
        if (sy >= 0 && sy < H) {
          x0 = flip ? std::max(0, dx) : std::max(0, -dx);
          x1 = std::max(x0, flip ? std::min(W, W + dx) : std::min(W, W - dx));
        }
        const int64_t row_off = sy >= 0 && sy < H ? int64_t(sy) * row_in : 0;
        const uint8_t* src_row = a.img + a.idx[b] * plane + row_off;
        const int8_t* dlt_row = D ? a.delta + a.drow[b] * plane + row_off : nullptr;
        auto padding = [&](int x) {  // zero, or the mirrored source pixel (sy is then inside)
          if (!a.reflect) {
            for (int c = 0; c < C; ++c) o[x * xs + c * cs] = lut[c * 256];
            return;
          }
          const int64_t sx = int64_t(mirror((flip ? W - 1 - x : x) + dx, W)) * C;
          for (int c = 0; c < C; ++c) {
            const int v = D ? std::min(255, std::max(0, int(src_row[sx + c]) + int(dlt_row[sx + c]))) : int(src_row[sx + c]);
            o[x * xs + c * cs] = lut[c * 256 + v];
          }
        };
        for (int x = 0; x < x0; ++x) padding(x);
        for (int x = x1; x < W; ++x) padding(x);
        const int m = x1 - x0;
        if (m == 0) continue;
        // The interior's source pixels are contiguous, starting at column x0 + dx (W - x1 + dx when flipped).
        const int64_t lo = int64_t(flip ? W - x1 + dx : x0 + dx) * C;
        const uint8_t* v = src_row + lo;
        if (D) {
          const int8_t* d = dlt_row + lo;
          for (int i = 0; i < m * C; ++i) clamped[i] = uint8_t(std::min(255, std::max(0, int(v[i]) + int(d[i]))));
          v = clamped.data();
        }
        if (flip) write_row<T, CC, -1>(v, o + x0 * xs, m, C, xs, cs, lut);
        else write_row<T, CC, +1>(v, o + x0 * xs, m, C, xs, cs, lut);
      }
    }
  }
}

template <typename T, int CC, bool CL>
void with_delta(const Args& a) { a.delta ? run<T, CC, CL, true>(a) : run<T, CC, CL, false>(a); }

template <typename T, int CC>
void with_layout(const Args& a) { a.channels_last ? with_delta<T, CC, true>(a) : with_delta<T, CC, false>(a); }

template <typename T>
void with_channels(const Args& a) {
  a.C == 3 ? with_layout<T, 3>(a) : a.C == 1 ? with_layout<T, 1>(a) : with_layout<T, 0>(a);
}

template <typename P>
P* ptr(uintptr_t p) { return reinterpret_cast<P*>(p); }

void augment(uintptr_t img, uintptr_t idx, uintptr_t delta, uintptr_t delta_rows, uintptr_t shifts, uintptr_t flips,
             uintptr_t lut, uintptr_t out, int64_t B, int H, int W, int C, int pad, bool reflect, int elem_size,
             bool channels_last) {
  if (elem_size != 1 && elem_size != 2 && elem_size != 4) throw py::value_error("augment: elem_size must be 1, 2 or 4");
  const Args a{ptr<const uint8_t>(img), ptr<const int64_t>(idx), ptr<const int8_t>(delta), ptr<const int64_t>(delta_rows),
               ptr<const int64_t>(shifts), ptr<const uint8_t>(flips), ptr<const void>(lut), ptr<void>(out),
               B, H, W, C, pad, reflect, channels_last};
  py::gil_scoped_release release;
  if (elem_size == 1) with_channels<uint8_t>(a);
  else if (elem_size == 2) with_channels<uint16_t>(a);
  else with_channels<uint32_t>(a);
}

}  // namespace

void register_augment(py::module_& m) {
  m.def("augment", &augment,
        "Fused gather + int8 delta + crop/pad (zero, or reflect when reflect) + flip + table lookup. Pointers to contiguous buffers: img uint8 "
        "(N,H,W,C), idx int64 (B,), delta int8 (M,H,W,C) or 0, delta_rows int64 (B,), shifts int64 (B,2), flips "
        "uint8 (B,), lut (C,256) of the output dtype, out (B,C,H,W) in NCHW or channels_last memory order; "
        "elem_size = bytes per output element (1, 2, 4).",
        py::arg("img"), py::arg("idx"), py::arg("delta"), py::arg("delta_rows"), py::arg("shifts"), py::arg("flips"),
        py::arg("lut"), py::arg("out"), py::arg("B"), py::arg("H"), py::arg("W"), py::arg("C"), py::arg("pad"),
        py::arg("reflect"), py::arg("elem_size"), py::arg("channels_last"));
}
