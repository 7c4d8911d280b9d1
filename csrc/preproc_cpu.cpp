// CPU twin of the preprocessing kernels: the same math (preproc_math.h), in three passes per
// frame: (A+B) vertical + horizontal resize, `image` and luma, one output row at a time;
// (C) Sobel `gradient` + 4x4 pooling; (D) the small `prior` (blur, centre, max).
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

// Step 1 for one source row into interleaved RGB floats; the format is a template argument
// so the inner loop has no branches.
template <int FMT, int DEPTH>
void decode_row_t(const Source& s, const YuvCoeffs& yuv, int y, float* out) {
  const uint8_t* row = s.data + static_cast<int64_t>(y) * s.pitch;
  const int w = s.width;
  if (FMT == kGRAY) {
    for (int x = 0; x < w; ++x)
      out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = load_sample(row, x, DEPTH);
  } else if (FMT == kNV12) {
    const uint8_t* uv = s.data + static_cast<int64_t>(s.height + y / 2) * s.pitch;
    for (int x = 0; x < w; ++x) {
      const int cx = (x / 2) * 2;
      yuv_to_rgb(load_sample(row, x, DEPTH), load_sample(uv, cx, DEPTH),
                 load_sample(uv, cx + 1, DEPTH), yuv, out + 3 * x);
    }
  } else {
    constexpr int ch = (FMT == kBGRA || FMT == kRGBA) ? 4 : 3;
    constexpr bool bgr = FMT == kBGR || FMT == kBGRA;
    for (int x = 0; x < w; ++x) {
      const float a = load_sample(row, x * ch, DEPTH), b = load_sample(row, x * ch + 1, DEPTH),
                  c = load_sample(row, x * ch + 2, DEPTH);
      out[3 * x] = bgr ? c : a;
      out[3 * x + 1] = b;
      out[3 * x + 2] = bgr ? a : c;
    }
  }
}

using DecodeRow = void (*)(const Source&, const YuvCoeffs&, int, float*);

template <int DEPTH>
DecodeRow pick_decoder_depth(int fmt) {
  switch (fmt) {
    case kBGR: return decode_row_t<kBGR, DEPTH>;
    case kRGB: return decode_row_t<kRGB, DEPTH>;
    case kBGRA: return decode_row_t<kBGRA, DEPTH>;
    case kRGBA: return decode_row_t<kRGBA, DEPTH>;
    case kGRAY: return decode_row_t<kGRAY, DEPTH>;
    default: return decode_row_t<kNV12, DEPTH>;
  }
}

DecodeRow pick_decoder(int fmt, int depth) {
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

struct Scratch {  // reused across calls (no zeroing, no fresh pages per frame)
  std::vector<float> lum;              // [h, w]
  std::vector<float> grad;             // [h, w] float32 gradient (the prior pools this)
  std::vector<double> pooled, blur_h;  // [h/4, w/4]
};

void run_frame(const Source& s, const Params& p, const Table& ty, const Table& tx, Scratch& sc,
               const Outputs& out, int64_t index) {
  const int h = p.out_h, w = p.out_w, hp = h / kPriorStride, wp = w / kPriorStride;
  sc.lum.resize(static_cast<size_t>(h) * w);
  sc.grad.resize(static_cast<size_t>(h) * w);
  sc.pooled.resize(static_cast<size_t>(hp) * wp);
  sc.blur_h.resize(static_cast<size_t>(hp) * wp);
  const DecodeRow decode = pick_decoder(s.format, s.depth);

  // (A+B) per output row: vertical resize of the raw rows (packed formats and GRAY are linear
  // in their samples, so decoding waits until the horizontal pass picks R, G, B; NV12 rows are
  // decoded first), horizontal resize, then `image` (normalised, NCHW) and luma.
  const int64_t plane = static_cast<int64_t>(h) * w;
  const bool nv12 = s.format == kNV12, gray = s.format == kGRAY;
  const int ch = nv12 ? 3 : format_channels(s.format);
  const bool bgr = s.format == kBGR || s.format == kBGRA;
  const int ri = gray ? 0 : (bgr ? 2 : 0), gi = gray ? 0 : 1, bi = gray ? 0 : (bgr ? 0 : 2);
  const int n_in = s.width * ch;
  parallel_for(h, 8, [&](int i0, int i1) {
    std::vector<float> acc(n_in), rgb(nv12 ? static_cast<size_t>(s.width) * 3 : 0);
    std::vector<float> out_rows(3 * static_cast<size_t>(w));
    float *ro = out_rows.data(), *go = ro + w, *bo = go + w;
    for (int i = i0; i < i1; ++i) {
      const float* wi = ty.w.data() + static_cast<size_t>(i) * ty.taps;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int k = 0; k < ty.taps; ++k) {
        const float wk = wi[k];
        if (wk == 0.f) continue;
        const int y = ty.start[i] + k;
        if (nv12) {
          decode(s, p.yuv, y, rgb.data());
          for (int x = 0; x < n_in; ++x) acc[x] += wk * rgb[x];
        } else if (s.depth == 1) {
          accumulate_raw<1>(s.data + static_cast<int64_t>(y) * s.pitch, n_in, wk, acc.data());
        } else {
          accumulate_raw<2>(s.data + static_cast<int64_t>(y) * s.pitch, n_in, wk, acc.data());
        }
      }
      float* lum = sc.lum.data() + static_cast<size_t>(i) * w;
      for (int j = 0; j < w; ++j) {
        const float* src = acc.data() + static_cast<size_t>(tx.start[j]) * ch;
        const float* wj = tx.w.data() + static_cast<size_t>(j) * tx.taps;
        float r = 0.f, g = 0.f, b = 0.f;
        for (int t = 0; t < tx.taps; ++t) {
          r += wj[t] * src[t * ch + ri];
          g += wj[t] * src[t * ch + gi];
          b += wj[t] * src[t * ch + bi];
        }
        lum[j] = luma(r, g, b);
        ro[j] = (r * (1.0f / 255.0f) - p.mean[0]) / p.stdev[0];
        go[j] = (g * (1.0f / 255.0f) - p.mean[1]) / p.stdev[1];
        bo[j] = (b * (1.0f / 255.0f) - p.mean[2]) / p.stdev[2];
      }
      const int64_t base = index * 3 * plane + static_cast<int64_t>(i) * w;
      store_row(out.image, base, ro, w, p.half);
      store_row(out.image, base + plane, go, w, p.half);
      store_row(out.image, base + 2 * plane, bo, w, p.half);
    }
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
  }
}

}  // namespace

void set_num_threads(int n) { g_threads.store(n < 0 ? 0 : n); }
int get_num_threads() { return thread_count(); }

void preprocess_cpu(const Source* frames, int n, const Params& p, const Outputs& out) {
  Table ty, tx;
  int last_h = -1, last_w = -1;
  thread_local Scratch sc;  // per calling thread: concurrent calls never share it
  for (int i = 0; i < n; ++i) {
    if (frames[i].height != last_h) ty.build(last_h = frames[i].height, p.out_h);
    if (frames[i].width != last_w) tx.build(last_w = frames[i].width, p.out_w);
    run_frame(frames[i], p, ty, tx, sc, out, i);
  }
}

}  // namespace saliq
