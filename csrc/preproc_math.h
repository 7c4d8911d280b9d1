// Preprocessing version 1 (DESIGN.md, "Preprocessing"): the per-pixel math, written once as
// __host__ __device__ inline functions and compiled into both the CUDA kernels
// (preproc_cuda.cu) and the CPU twin (preproc_cpu.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__CUDACC__)
#define SALIQ_HD __host__ __device__ __forceinline__
#else
#define SALIQ_HD inline
#endif

namespace saliq {

enum Format : int { kBGR = 0, kRGB = 1, kBGRA = 2, kRGBA = 3, kGRAY = 4, kNV12 = 5 };

// Channels per pixel in the source buffer (NV12: the Y plane's 1 byte per pixel).
SALIQ_HD int format_channels(int fmt) {
  return fmt == kBGRA || fmt == kRGBA ? 4 : (fmt == kBGR || fmt == kRGB) ? 3 : 1;
}

constexpr double kUint16ToUint8 = 257.0;
constexpr double kLumaR = 0.299, kLumaG = 0.587, kLumaB = 0.114;
constexpr double kGradientScale = 1442.497833620557;  // 1020 * sqrt(2)
constexpr int kPriorStride = 4;
constexpr double kPriorBlurSigmaFraction = 0.03;    // of max(H, W), in input pixels
constexpr double kPriorCentreSigmaFraction = 0.2;   // of the pooled width / height

// NV12 -> RGB constants, folded for one matrix (bt601|bt709) and range (limited|full):
//   y' = (Y - y_off) * y_gain;  u' = (U - 128) * c_gain;  v' = (V - 128) * c_gain
//   R = y' + rv v';  B = y' + bu u';  G = (y' - kr R - kb B) / kg   (as DESIGN.md's text)
struct YuvCoeffs {
  float y_off, y_gain, c_gain, kr, kb, inv_kg, rv, bu;
};

inline YuvCoeffs make_yuv_coeffs(bool bt709, bool full_range) {
  const double kr = bt709 ? 0.2126 : 0.299, kb = bt709 ? 0.0722 : 0.114;
  YuvCoeffs c;
  c.y_off = full_range ? 0.0f : 16.0f;
  c.y_gain = static_cast<float>(full_range ? 1.0 : 255.0 / 219.0);
  c.c_gain = static_cast<float>(full_range ? 1.0 : 255.0 / 224.0);
  c.kr = static_cast<float>(kr);
  c.kb = static_cast<float>(kb);
  c.inv_kg = static_cast<float>(1.0 / (1.0 - kr - kb));
  c.rv = static_cast<float>(2.0 * (1.0 - kr));
  c.bu = static_cast<float>(2.0 * (1.0 - kb));
  return c;
}

SALIQ_HD float clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// One sample of a uint8 or uint16 buffer as a float on the uint8 scale (uint16 / 257).
SALIQ_HD float load_sample(const uint8_t* row, int index, int depth) {
  if (depth == 1) return static_cast<float>(row[index]);
  uint16_t v;
  memcpy(&v, row + 2 * static_cast<int64_t>(index), 2);  // rows may be unaligned
  return static_cast<float>(v) / static_cast<float>(kUint16ToUint8);
}

// NV12 pixel: luma y and (centred, not yet scaled) chroma u, v on the uint8 scale -> RGB.
SALIQ_HD void yuv_to_rgb(float y, float u, float v, const YuvCoeffs& c, float rgb[3]) {
  const float yy = (y - c.y_off) * c.y_gain;
  const float uu = (u - 128.f) * c.c_gain, vv = (v - 128.f) * c.c_gain;
  const float r = yy + c.rv * vv;
  const float b = yy + c.bu * uu;
  const float g = (yy - c.kr * r - c.kb * b) * c.inv_kg;
  rgb[0] = clamp255(r);
  rgb[1] = clamp255(g);
  rgb[2] = clamp255(b);
}

// A source frame: `height` x `width` pixels, rows `pitch` bytes apart. NV12: the Y plane's
// `height` rows are followed by height/2 interleaved UV rows, same pitch.
struct Source {
  const uint8_t* data;
  int64_t pitch;
  int height, width;
  int format;  // Format
  int depth;   // bytes per sample: 1 (uint8) or 2 (uint16)
};

// Step 1 for one pixel: decode to RGB float in [0, 255].
SALIQ_HD void decode_pixel(const Source& s, const YuvCoeffs& yuv, int x, int y, float rgb[3]) {
  const uint8_t* row = s.data + static_cast<int64_t>(y) * s.pitch;
  switch (s.format) {
    case kGRAY: {
      const float g = load_sample(row, x, s.depth);
      rgb[0] = rgb[1] = rgb[2] = g;
      return;
    }
    case kNV12: {
      const uint8_t* uv = s.data + static_cast<int64_t>(s.height + y / 2) * s.pitch;
      const int cx = (x / 2) * 2;  // chroma replicated over its 2x2 block
      yuv_to_rgb(load_sample(row, x, s.depth), load_sample(uv, cx, s.depth),
                 load_sample(uv, cx + 1, s.depth), yuv, rgb);
      return;
    }
    default: {
      const int ch = format_channels(s.format);
      const bool bgr = s.format == kBGR || s.format == kBGRA;
      const float a = load_sample(row, x * ch, s.depth);
      const float b = load_sample(row, x * ch + 1, s.depth);
      const float c = load_sample(row, x * ch + 2, s.depth);
      rgb[0] = bgr ? c : a;
      rgb[1] = b;
      rgb[2] = bgr ? a : c;
    }
  }
}

// Step 2: one axis of the separable resize as a fixed-tap table. Output j reads inputs
// start[j] .. start[j] + taps - 1 with weights w[j * taps + k] (zero-padded). Shrinking:
// exact area overlap (cv2.INTER_AREA on float input). Growing or same: half-pixel bilinear
// with edge clamp (cv2.INTER_LINEAR on float input). `start` has n_out entries and `w`
// n_out * taps; call with null arrays first to get `taps`.
inline int axis_table(int n_in, int n_out, int* start, float* w) {
  const double scale = static_cast<double>(n_in) / n_out;
  int taps = n_out < n_in ? static_cast<int>(std::ceil(scale)) + 1 : 2;
  taps = std::min(taps, n_in);  // the window never leaves [0, n_in)
  if (!start) return taps;
  for (int j = 0; j < n_out; ++j) {
    double wj[64 + 2] = {0};  // never more than ceil(scale) + 1 non-zero inputs
    double* big = nullptr;
    double* acc = taps <= 66 ? wj : (big = new double[taps]());
    int first;
    if (n_out < n_in) {
      const double lo = j * scale, hi = (j + 1) * scale;
      first = static_cast<int>(std::floor(lo));
      const int last = std::min(n_in, static_cast<int>(std::ceil(hi)));
      for (int i = first; i < last; ++i)
        acc[i - first] = (std::min(hi, i + 1.0) - std::max(lo, static_cast<double>(i))) / scale;
    } else {
      const double src = std::min(std::max((j + 0.5) * scale - 0.5, 0.0), n_in - 1.0);
      first = static_cast<int>(std::floor(src));
      const int i1 = std::min(first + 1, n_in - 1);
      const double frac = src - first;
      acc[0] += 1.0 - frac;
      acc[i1 - first] += frac;
    }
    // Keep the window inside [0, n_in): shift it left, moving the weights with it.
    const int shift = std::max(0, first + taps - n_in);  // <= first since taps <= n_in
    start[j] = first - shift;
    for (int k = 0; k < taps; ++k) w[j * taps + k] = 0.f;
    for (int k = 0; k < taps && k + shift < taps; ++k)
      w[j * taps + k + shift] = static_cast<float>(acc[k]);
    delete[] big;
  }
  return taps;
}

// Host-side holder of one axis' table (both the CPU twin and the CUDA launcher build these).
struct Table {
  int taps = 0;
  std::vector<int> start;
  std::vector<float> w;
  void build(int n_in, int n_out) {
    taps = axis_table(n_in, n_out, nullptr, nullptr);
    start.resize(n_out);
    w.resize(static_cast<size_t>(n_out) * taps);
    axis_table(n_in, n_out, start.data(), w.data());
  }
};

SALIQ_HD float luma(float r, float g, float b) {
  return static_cast<float>(kLumaR) * r + static_cast<float>(kLumaG) * g +
         static_cast<float>(kLumaB) * b;
}

// Step 4: Sobel magnitude at (x, y) of a row-major luma plane, replicated border, scaled.
SALIQ_HD float sobel_gradient(const float* lum, int h, int w, int x, int y) {
  const int x0 = x > 0 ? x - 1 : 0, x2 = x + 1 < w ? x + 1 : w - 1;
  const int y0 = y > 0 ? y - 1 : 0, y2 = y + 1 < h ? y + 1 : h - 1;
  const float* r0 = lum + static_cast<int64_t>(y0) * w;
  const float* r1 = lum + static_cast<int64_t>(y) * w;
  const float* r2 = lum + static_cast<int64_t>(y2) * w;
  const float gx = (r0[x2] + 2.f * r1[x2] + r2[x2]) - (r0[x0] + 2.f * r1[x0] + r2[x0]);
  const float gy = (r2[x0] + 2.f * r2[x] + r2[x2]) - (r0[x0] + 2.f * r0[x] + r0[x2]);
  return sqrtf(gx * gx + gy * gy) * static_cast<float>(1.0 / kGradientScale);
}

// Step 5 helpers. The prior runs at H/4 x W/4 in double (it is small).
inline double prior_blur_sigma(int h, int w) {
  return kPriorBlurSigmaFraction * (h > w ? h : w) / kPriorStride;
}
inline int prior_blur_radius(double sigma) { return static_cast<int>(std::ceil(3.0 * sigma)); }

// Normalised 1-D Gaussian, 2r+1 taps.
inline void gaussian_kernel(double sigma, int r, double* k) {
  double sum = 0.0;
  for (int i = -r; i <= r; ++i) sum += (k[i + r] = std::exp(-0.5 * (i / sigma) * (i / sigma)));
  for (int i = 0; i <= 2 * r; ++i) k[i] /= sum;
}

// Mean of the 4x4 block (px, py) of the gradient plane.
SALIQ_HD double pool4(const float* grad, int w, int px, int py) {
  double s = 0.0;
  for (int dy = 0; dy < kPriorStride; ++dy) {
    const float* row = grad + static_cast<int64_t>(py * kPriorStride + dy) * w + px * kPriorStride;
    for (int dx = 0; dx < kPriorStride; ++dx) s += row[dx];
  }
  return s * (1.0 / (kPriorStride * kPriorStride));
}

// 1-D Gaussian at (i) along an axis of length n with stride `step`, replicated border.
SALIQ_HD double blur_tap(const double* line, int n, int64_t step, int i, const double* k,
                         int r) {
  double s = 0.0;
  for (int t = -r; t <= r; ++t) {
    int j = i + t;
    j = j < 0 ? 0 : (j >= n ? n - 1 : j);
    s += k[t + r] * line[j * step];
  }
  return s;
}

// Centre Gaussian at pixel centre (x, y) of a wp x hp map.
SALIQ_HD double centre_weight(int x, int y, int wp, int hp) {
  const double dx = (x + 0.5 - wp / 2.0) / (kPriorCentreSigmaFraction * wp);
  const double dy = (y + 0.5 - hp / 2.0) / (kPriorCentreSigmaFraction * hp);
  return exp(-0.5 * dx * dx - 0.5 * dy * dy);
}

// Step 6: float32 -> float16 bits, round to nearest even (IEEE 754 binary16).
SALIQ_HD uint16_t float_to_half_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u)  // inf, nan
    return static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
  if (mag >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (mag < 0x38800000u) {  // subnormal half (or zero)
    if (mag < 0x33000000u) return static_cast<uint16_t>(sign);  // below half the smallest
    const uint32_t e = mag >> 23;
    const uint32_t m = (mag & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // value m * 2^(e - 150) = h * 2^-24
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((mag - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
  const uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

}  // namespace saliq
