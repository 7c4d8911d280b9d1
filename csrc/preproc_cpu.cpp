// CPU twin of the preprocessing kernels: the same math (preproc_math.h), in three passes per
// frame: (A+B) vertical + horizontal resize, `image` and luma, one output row at a time;
// (C) Sobel `gradient` + 4x4 pooling; (D) the small `prior` (blur, centre, max). Version 2 then
// places the crop views on that prior (views.h) and cuts each from its source window alone.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include "preproc.h"

namespace saliq {
namespace {

std::atomic<int> g_threads{0};

int thread_count() {
  const int n = g_threads.load();
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

// fn(begin, end) over [0, n) in chunks, on up to thread_count() threads (the caller is one).
template <class F>
void parallel_for(int n, int grain, const F& fn) {
  const int threads = std::min(thread_count(), (n + grain - 1) / grain);
  if (threads <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  std::atomic<int> next{0};
  auto worker = [&] {
    for (int b; (b = next.fetch_add(grain)) < n;) fn(b, std::min(n, b + grain));
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

// Step 1 for pixels x0 .. x0 + n - 1 of source row y into interleaved RGB floats (x and y are
// frame coordinates, so an NV12 window at an odd offset still takes each pixel's chroma from
// its own 2x2 block); the format is a template argument so the inner loop has no branches.
template <int FMT, int DEPTH>
void decode_span_t(const Source& s, const YuvCoeffs& yuv, int y, int x0, int n, float* out) {
  const uint8_t* row = s.data + static_cast<int64_t>(y) * s.pitch;
  if (FMT == kGRAY) {
    for (int i = 0, x = x0; i < n; ++i, ++x)
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = load_sample(row, x, DEPTH);
  } else if (FMT == kNV12) {
    const uint8_t* uv = s.data + static_cast<int64_t>(s.height + y / 2) * s.pitch;
    for (int i = 0, x = x0; i < n; ++i, ++x) {
      const int cx = (x / 2) * 2;
      yuv_to_rgb(load_sample(row, x, DEPTH), load_sample(uv, cx, DEPTH),
                 load_sample(uv, cx + 1, DEPTH), yuv, out + 3 * i);
    }
  } else {
    constexpr int ch = (FMT == kBGRA || FMT == kRGBA) ? 4 : 3;
    constexpr bool bgr = FMT == kBGR || FMT == kBGRA;
    for (int i = 0, x = x0; i < n; ++i, ++x) {
      const float a = load_sample(row, x * ch, DEPTH), b = load_sample(row, x * ch + 1, DEPTH),
                  c = load_sample(row, x * ch + 2, DEPTH);
      out[3 * i] = bgr ? c : a;
      out[3 * i + 1] = b;
      out[3 * i + 2] = bgr ? a : c;
    }
  }
}

using DecodeSpan = void (*)(const Source&, const YuvCoeffs&, int, int, int, float*);

template <int DEPTH>
DecodeSpan pick_decoder_depth(int fmt) {
  switch (fmt) {
    case kBGR: return decode_span_t<kBGR, DEPTH>;
    case kRGB: return decode_span_t<kRGB, DEPTH>;
    case kBGRA: return decode_span_t<kBGRA, DEPTH>;
    case kRGBA: return decode_span_t<kRGBA, DEPTH>;
    case kGRAY: return decode_span_t<kGRAY, DEPTH>;
    default: return decode_span_t<kNV12, DEPTH>;
  }
}

DecodeSpan pick_decoder(int fmt, int depth) {
  return depth == 1 ? pick_decoder_depth<1>(fmt) : pick_decoder_depth<2>(fmt);
}

// acc[0..n) += wk * samples of one raw row (uint8, or uint16 with 1/257 folded into wk).
template <int DEPTH>
void accumulate_raw(const uint8_t* row, int n, float wk, float* acc) {
  if (DEPTH == 1) {
    for (int x = 0; x < n; ++x) acc[x] += wk * static_cast<float>(row[x]);
  } else {
    const float wv = wk / static_cast<float>(kUint16ToUint8);
    for (int x = 0; x < n; ++x) {
      uint16_t v;
      memcpy(&v, row + 2 * static_cast<int64_t>(x), 2);
      acc[x] += wv * static_cast<float>(v);
    }
  }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SALIQ_HAVE_F16C_DISPATCH 1
__attribute__((target("avx,f16c"))) void to_half_f16c(const float* in, uint16_t* out, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) out[i] = float_to_half_bits(in[i]);
}
#endif

// Writes n floats at element `offset` of an output, as float32 or float16 (nearest even).
void store_row(void* base, int64_t offset, const float* v, int n, bool half) {
  if (!half) {
    memcpy(static_cast<float*>(base) + offset, v, sizeof(float) * n);
    return;
  }
  uint16_t* out = static_cast<uint16_t*>(base) + offset;
#ifdef SALIQ_HAVE_F16C_DISPATCH
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) return to_half_f16c(v, out, n);
#endif
  for (int i = 0; i < n; ++i) out[i] = float_to_half_bits(v[i]);
}

// Steps 1-2 for output rows [i0, i1) of the window of in_w columns at (x0, y0) of `s` (the
// whole frame in version 1, a crop's window in version 2; window row y is frame row y0 + y):
// vertical resize of the raw rows (packed formats and GRAY are linear in their samples, so
// decoding waits until the horizontal pass picks R, G, B; NV12 rows are decoded first, in frame
// coordinates, so each pixel keeps its own chroma block), then horizontal resize. Calls
// pixel(i, j, r, g, b) for every output pixel and row_done(i) after each row.
template <class Pixel, class RowDone>
void resize_rows(const Source& s, const YuvCoeffs& yuv, int x0, int y0, int in_w, const Table& ty,
                 const Table& tx, int i0, int i1, const Pixel& pixel, const RowDone& row_done) {
  const bool nv12 = s.format == kNV12, gray = s.format == kGRAY;
  const int ch = nv12 ? 3 : format_channels(s.format);
  const bool bgr = s.format == kBGR || s.format == kBGRA;
  const int ri = gray ? 0 : (bgr ? 2 : 0), gi = gray ? 0 : 1, bi = gray ? 0 : (bgr ? 0 : 2);
  const int n_in = in_w * ch;
  const int64_t x_bytes = nv12 ? 0 : static_cast<int64_t>(x0) * ch * s.depth;
  const DecodeSpan decode = pick_decoder(s.format, s.depth);
  std::vector<float> acc(n_in), rgb(nv12 ? static_cast<size_t>(in_w) * 3 : 0);
  for (int i = i0; i < i1; ++i) {
    const float* wi = ty.w.data() + static_cast<size_t>(i) * ty.taps;
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int k = 0; k < ty.taps; ++k) {
      const float wk = wi[k];
      if (wk == 0.f) continue;
      const int y = y0 + ty.start[i] + k;
      if (nv12) {
        decode(s, yuv, y, x0, in_w, rgb.data());
        for (int x = 0; x < n_in; ++x) acc[x] += wk * rgb[x];
      } else if (s.depth == 1) {
        accumulate_raw<1>(s.data + static_cast<int64_t>(y) * s.pitch + x_bytes, n_in, wk,
                          acc.data());
      } else {
        accumulate_raw<2>(s.data + static_cast<int64_t>(y) * s.pitch + x_bytes, n_in, wk,
                          acc.data());
      }
    }
    for (int j = 0; j < static_cast<int>(tx.start.size()); ++j) {
      const float* src = acc.data() + static_cast<size_t>(tx.start[j]) * ch;
      const float* wj = tx.w.data() + static_cast<size_t>(j) * tx.taps;
      float r = 0.f, g = 0.f, b = 0.f;
      for (int t = 0; t < tx.taps; ++t) {
        r += wj[t] * src[t * ch + ri];
        g += wj[t] * src[t * ch + gi];
        b += wj[t] * src[t * ch + bi];
      }
      pixel(i, j, r, g, b);
    }
    row_done(i);
  }
}

struct Scratch {  // reused across calls (no zeroing, no fresh pages per frame)
  std::vector<float> lum;              // [h, w]
  std::vector<float> grad;             // [h, w] float32 gradient (the prior pools this)
  std::vector<double> pooled, blur_h;  // [h/4, w/4]
};

// `prior_f32` (optional, [H/4 * W/4]): the float32 prior too, whatever the output dtype (the
// crop views are placed on it).
void run_frame(const Source& s, const Params& p, const Table& ty, const Table& tx, Scratch& sc,
               const Outputs& out, int64_t index, float* prior_f32) {
  const int h = p.out_h, w = p.out_w, hp = h / kPriorStride, wp = w / kPriorStride;
  sc.lum.resize(static_cast<size_t>(h) * w);
  sc.grad.resize(static_cast<size_t>(h) * w);
  sc.pooled.resize(static_cast<size_t>(hp) * wp);
  sc.blur_h.resize(static_cast<size_t>(hp) * wp);
  // (A+B) per output row: resize (resize_rows), then `image` (normalised, NCHW) and luma.
  const int64_t plane = static_cast<int64_t>(h) * w;
  parallel_for(h, 8, [&](int i0, int i1) {
    std::vector<float> out_rows(3 * static_cast<size_t>(w));
    float *ro = out_rows.data(), *go = ro + w, *bo = go + w;
    resize_rows(
        s, p.yuv, 0, 0, s.width, ty, tx, i0, i1,
        [&](int i, int j, float r, float g, float b) {
          sc.lum[static_cast<size_t>(i) * w + j] = luma(r, g, b);
          ro[j] = (r * (1.0f / 255.0f) - p.mean[0]) / p.stdev[0];
          go[j] = (g * (1.0f / 255.0f) - p.mean[1]) / p.stdev[1];
          bo[j] = (b * (1.0f / 255.0f) - p.mean[2]) / p.stdev[2];
        },
        [&](int i) {
          const int64_t base = index * 3 * plane + static_cast<int64_t>(i) * w;
          store_row(out.image, base, ro, w, p.half);
          store_row(out.image, base + plane, go, w, p.half);
          store_row(out.image, base + 2 * plane, bo, w, p.half);
        });
  });

  // (C) Sobel gradient, then the 4x4 pooled means of each band of four rows.
  parallel_for(hp, 4, [&](int q0, int q1) {
    for (int q = q0; q < q1; ++q) {
      for (int y = q * kPriorStride; y < (q + 1) * kPriorStride; ++y) {
        float* g = sc.grad.data() + static_cast<size_t>(y) * w;
        for (int x = 0; x < w; ++x) g[x] = sobel_gradient(sc.lum.data(), h, w, x, y);
        store_row(out.gradient, index * plane + static_cast<int64_t>(y) * w, g, w, p.half);
      }
      for (int px = 0; px < wp; ++px)
        sc.pooled[static_cast<size_t>(q) * wp + px] = pool4(sc.grad.data(), w, px, q);
    }
  });

  // (D) prior: separable Gaussian blur, centre Gaussian, divide by the maximum.
  const double sigma = prior_blur_sigma(h, w);
  const int r = prior_blur_radius(sigma);
  std::vector<double> k(2 * r + 1);
  gaussian_kernel(sigma, r, k.data());
  for (int y = 0; y < hp; ++y)
    for (int x = 0; x < wp; ++x)
      sc.blur_h[static_cast<size_t>(y) * wp + x] =
          blur_tap(sc.pooled.data() + static_cast<size_t>(y) * wp, wp, 1, x, k.data(), r);
  double peak = 0.0;
  std::vector<double>& weighted = sc.pooled;  // pooled is no longer needed
  for (int y = 0; y < hp; ++y)
    for (int x = 0; x < wp; ++x) {
      const double v = blur_tap(sc.blur_h.data() + x, hp, wp, y, k.data(), r) *
                       centre_weight(x, y, wp, hp);
      weighted[static_cast<size_t>(y) * wp + x] = v;
      peak = std::max(peak, v);
    }
  const double inv = peak > 0.0 ? 1.0 / peak : 1.0;
  std::vector<float> row(wp);
  for (int y = 0; y < hp; ++y) {
    for (int x = 0; x < wp; ++x)
      row[x] = static_cast<float>(weighted[static_cast<size_t>(y) * wp + x] * inv);
    store_row(out.prior, (index * hp + y) * wp, row.data(), wp, p.half);
    if (prior_f32) std::copy(row.begin(), row.end(), prior_f32 + static_cast<size_t>(y) * wp);
  }
}

// Version 2, one crop (docs/preprocessing.md, "A crop"): the side x side window at `win` ->
// size x size by version 1's resize (table `t` on both axes: the window is square; the same
// row pass as the whole frame, so only the window's pixels are read), then `image`'s
// normalisation and the Sobel gradient of the crop alone. Writes crop `index` of `rgb_out`
// ([.., 3, size, size]) and, unless null (grid crops), `grad_out` ([.., 1, size, size]).
void run_crop(const Source& s, const Params& p, const Table& t, Window win, int side, int size,
              void* rgb_out, void* grad_out, int64_t index, std::vector<float>& buf) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  buf.resize(5 * static_cast<size_t>(plane));
  float* planes = buf.data();  // R, G, B normalised, luma, gradient: [size, size] each
  float* lum = planes + 3 * plane;
  float* grad = lum + plane;
  resize_rows(
      s, p.yuv, win.x0, win.y0, side, t, t, 0, size,
      [&](int i, int j, float r, float g, float b) {
        const int64_t at = static_cast<int64_t>(i) * size + j;
        lum[at] = luma(r, g, b);
        planes[at] = (r * (1.0f / 255.0f) - p.mean[0]) / p.stdev[0];
        planes[plane + at] = (g * (1.0f / 255.0f) - p.mean[1]) / p.stdev[1];
        planes[2 * plane + at] = (b * (1.0f / 255.0f) - p.mean[2]) / p.stdev[2];
      },
      [](int) {});
  store_row(rgb_out, index * 3 * plane, planes, static_cast<int>(3 * plane), p.half);
  if (!grad_out) return;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      grad[static_cast<int64_t>(y) * size + x] = sobel_gradient(lum, size, size, x, y);
  store_row(grad_out, index * plane, grad, static_cast<int>(plane), p.half);
}

// Version 2 for one frame (batch position `f`): place the detail crops on its float32 prior,
// lay out the grid, write boxes and weights, and cut every crop, decoding only its window.
void run_views(const Source& s, const Params& p, const ViewParams& v, const float* prior,
               const ViewOutputs& vo, int64_t f) {
  const int hp = p.out_h / kPriorStride, wp = p.out_w / kPriorStride;
  const int k_detail = v.detail_crops, n_grid = v.grid_crops;
  std::vector<Window> windows(static_cast<size_t>(k_detail + n_grid));
  int side = 0;
  place_detail_crops(prior, hp, wp, s.width, s.height, v, windows.data(),
                     vo.crop_weights + f * k_detail, &side);
  const int grid_side = grid_windows(s.width, s.height, v, windows.data() + k_detail);
  for (int k = 0; k < k_detail; ++k)
    window_box(windows[k], side, s.width, s.height, vo.crop_boxes + (f * k_detail + k) * 4);
  for (int k = 0; k < n_grid; ++k)
    window_box(windows[k_detail + k], grid_side, s.width, s.height,
               vo.grid_boxes + (f * n_grid + k) * 4);
  Table t, tg;
  t.build(side, v.crop_size);
  if (n_grid) tg.build(grid_side, v.grid_size);
  parallel_for(k_detail + n_grid, 1, [&](int c0, int c1) {
    std::vector<float> buf;
    for (int c = c0; c < c1; ++c) {
      if (c < k_detail)
        run_crop(s, p, t, windows[c], side, v.crop_size, vo.crops, vo.crop_gradient,
                 f * k_detail + c, buf);
      else
        run_crop(s, p, tg, windows[c], grid_side, v.grid_size, vo.grid, nullptr,
                 f * n_grid + (c - k_detail), buf);
    }
  });
}

}  // namespace

void set_num_threads(int n) { g_threads.store(n < 0 ? 0 : n); }
int get_num_threads() { return thread_count(); }

void preprocess_cpu(const Source* frames, int n, const Params& p, const Outputs& out,
                    const ViewParams& views, const ViewOutputs& view_out) {
  Table ty, tx;
  int last_h = -1, last_w = -1;
  thread_local Scratch sc;  // per calling thread: concurrent calls never share it
  std::vector<float> prior;  // this frame's float32 prior, for the crop placement
  if (views.detail_crops)
    prior.resize(static_cast<size_t>(p.out_h / kPriorStride) * (p.out_w / kPriorStride));
  for (int i = 0; i < n; ++i) {
    if (frames[i].height != last_h) ty.build(last_h = frames[i].height, p.out_h);
    if (frames[i].width != last_w) tx.build(last_w = frames[i].width, p.out_w);
    run_frame(frames[i], p, ty, tx, sc, out, i, views.detail_crops ? prior.data() : nullptr);
    if (views.detail_crops) run_views(frames[i], p, views, prior.data(), view_out, i);
  }
}

}  // namespace saliq
