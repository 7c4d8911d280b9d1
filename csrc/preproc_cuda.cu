// CUDA kernels of preprocessing version 1: the same per-pixel math as the CPU twin
// (preproc_math.h), in the same four passes and accumulation order, so both paths agree.
// Version 2's crop views: the float32 priors go to the host, the crops are placed there
// (views.h, the CPU twin's code), then three small kernels cut them from the source windows.
#include <cuda_runtime.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "preproc.h"

namespace saliq {
namespace {

#define SALIQ_CK(expr)                                                         \
  do {                                                                         \
    const cudaError_t err_ = (expr);                                           \
    if (err_ != cudaSuccess)                                                   \
      return std::string(#expr) + ": " + cudaGetErrorString(err_);             \
  } while (0)

__device__ __forceinline__ void store_out(void* base, int64_t i, float v, bool half) {
  if (half)
    static_cast<uint16_t*>(base)[i] = float_to_half_bits(v);
  else
    static_cast<float*>(base)[i] = v;
}

// (A) decode + horizontal resize: one thread per (output column j, source row y).
__global__ void k_hpass(Source s, YuvCoeffs yuv, const int* __restrict__ start,
                        const float* __restrict__ w, int taps, int w_out, float* rows) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y;
  if (j >= w_out || y >= s.height) return;
  float r = 0.f, g = 0.f, b = 0.f, rgb[3];
  const float* wj = w + static_cast<int64_t>(j) * taps;
  for (int k = 0; k < taps; ++k) {
    decode_pixel(s, yuv, start[j] + k, y, rgb);
    r += wj[k] * rgb[0];
    g += wj[k] * rgb[1];
    b += wj[k] * rgb[2];
  }
  float* out = rows + (static_cast<int64_t>(y) * w_out + j) * 3;
  out[0] = r;
  out[1] = g;
  out[2] = b;
}

// (B) vertical resize, `image` and luma: one thread per output pixel.
__global__ void k_vpass(const float* __restrict__ rows, const int* __restrict__ start,
                        const float* __restrict__ w, int taps, Params p, int64_t index,
                        void* image, float* lum) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
  const int h = p.out_h, wd = p.out_w;
  if (x >= wd || i >= h) return;
  float acc[3] = {0.f, 0.f, 0.f};
  const float* wi = w + static_cast<int64_t>(i) * taps;
  for (int k = 0; k < taps; ++k) {
    const float wk = wi[k];
    if (wk == 0.f) continue;
    const float* src = rows + (static_cast<int64_t>(start[i] + k) * wd + x) * 3;
    for (int c = 0; c < 3; ++c) acc[c] += wk * src[c];
  }
  const int64_t plane = static_cast<int64_t>(h) * wd;
  const int64_t base = index * 3 * plane + static_cast<int64_t>(i) * wd + x;
  lum[static_cast<int64_t>(i) * wd + x] = luma(acc[0], acc[1], acc[2]);
  for (int c = 0; c < 3; ++c)
    store_out(image, base + c * plane, (acc[c] * (1.0f / 255.0f) - p.mean[c]) / p.stdev[c],
              p.half);
}

// (C) Sobel gradient: one thread per output pixel.
__global__ void k_gradient(const float* __restrict__ lum, int h, int w, int64_t index,
                           bool half, void* gradient, float* grad) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y;
  if (x >= w || y >= h) return;
  const float g = sobel_gradient(lum, h, w, x, y);
  grad[static_cast<int64_t>(y) * w + x] = g;
  store_out(gradient, index * h * w + static_cast<int64_t>(y) * w + x, g, half);
}

// (D) prior, one block per frame (the map is H/4 x W/4): pool, blur, centre, max, divide.
// launch_bounds makes ptxas fit the block's registers (a 1024-thread block needs <= 64 each).
constexpr int kPriorThreads = 1024;  // a power of two: the max reduction halves it
// `prior_f32` (optional, [n, H/4 * W/4]): the float32 prior too, for the crop placement.
__global__ void __launch_bounds__(kPriorThreads) k_prior(const float* __restrict__ grad, int h, int w, const double* __restrict__ k,
                        int r, int64_t index, bool half, double* pooled, double* blur_h,
                        void* prior, float* prior_f32) {
  const int hp = h / kPriorStride, wp = w / kPriorStride, n = hp * wp;
  for (int i = threadIdx.x; i < n; i += blockDim.x) pooled[i] = pool4(grad, w, i % wp, i / wp);
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    blur_h[i] = blur_tap(pooled + static_cast<int64_t>(i / wp) * wp, wp, 1, i % wp, k, r);
  __syncthreads();
  __shared__ double peaks[kPriorThreads];
  double peak = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int x = i % wp, y = i / wp;
    const double v = blur_tap(blur_h + x, hp, wp, y, k, r) * centre_weight(x, y, wp, hp);
    pooled[i] = v;
    peak = v > peak ? v : peak;
  }
  peaks[threadIdx.x] = peak;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s && peaks[threadIdx.x + s] > peaks[threadIdx.x])
      peaks[threadIdx.x] = peaks[threadIdx.x + s];
    __syncthreads();
  }
  const double inv = peaks[0] > 0.0 ? 1.0 / peaks[0] : 1.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = static_cast<float>(pooled[i] * inv);
    store_out(prior, index * n + i, v, half);
    if (prior_f32) prior_f32[index * n + i] = v;
  }
}

// Version 2, (A') decode + horizontal resize of crop windows (docs/preprocessing.md, "A
// crop"): one thread per (output column j, window row r, crop blockIdx.z); frame coordinates,
// so NV12 chroma comes from each pixel's own 2x2 block at any window offset. `rows`:
// [crops, side, size, 3]. The tap order is the CPU twin's (run_crop).
__global__ void k_crop_h(Source s, YuvCoeffs yuv, const Window* __restrict__ wins, int side,
                         const int* __restrict__ start, const float* __restrict__ w, int taps,
                         int size, float* rows) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y, c = blockIdx.z;
  if (j >= size || r >= side) return;
  const Window win = wins[c];
  float acc[3] = {0.f, 0.f, 0.f}, rgb[3];
  const float* wj = w + static_cast<int64_t>(j) * taps;
  for (int k = 0; k < taps; ++k) {
    decode_pixel(s, yuv, win.x0 + start[j] + k, win.y0 + r, rgb);
    for (int ch = 0; ch < 3; ++ch) acc[ch] += wj[k] * rgb[ch];
  }
  float* out = rows + ((static_cast<int64_t>(c) * side + r) * size + j) * 3;
  for (int ch = 0; ch < 3; ++ch) out[ch] = acc[ch];
}

// (B') vertical resize, normalisation and (when `lum` is given) luma of each crop: one thread
// per output pixel (j, i) of crop blockIdx.z, written as crop `first + c` of `out`.
__global__ void k_crop_v(const float* __restrict__ rows, int side, const int* __restrict__ start,
                         const float* __restrict__ w, int taps, int size, Params p,
                         int64_t first, void* out, float* lum) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y, c = blockIdx.z;
  if (j >= size || i >= size) return;
  float acc[3] = {0.f, 0.f, 0.f};
  const float* wi = w + static_cast<int64_t>(i) * taps;
  for (int k = 0; k < taps; ++k) {
    const float* src = rows + ((static_cast<int64_t>(c) * side + start[i] + k) * size + j) * 3;
    for (int ch = 0; ch < 3; ++ch) acc[ch] += wi[k] * src[ch];
  }
  const int64_t plane = static_cast<int64_t>(size) * size, at = static_cast<int64_t>(i) * size + j;
  if (lum) lum[c * plane + at] = luma(acc[0], acc[1], acc[2]);
  for (int ch = 0; ch < 3; ++ch)
    store_out(out, (first + c) * 3 * plane + ch * plane + at,
              (acc[ch] * (1.0f / 255.0f) - p.mean[ch]) / p.stdev[ch], p.half);
}

// (C') Sobel gradient of each crop alone (replicated border at the crop's edge).
__global__ void k_crop_grad(const float* __restrict__ lum, int size, int64_t first, bool half,
                            void* out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y, c = blockIdx.z;
  if (j >= size || i >= size) return;
  const int64_t plane = static_cast<int64_t>(size) * size;
  store_out(out, (first + c) * plane + static_cast<int64_t>(i) * size + j,
            sobel_gradient(lum + c * plane, size, size, j, i), half);
}

// How a device gets scratch memory, decided once per device (allocator_for).
struct Allocator {
  cudaMemPool_t pool = nullptr;  // null: cudaMalloc/cudaFree (no memory-pool support)
};

// What the pool keeps mapped across synchronisations. With the default threshold of 0, the
// pool hands its free memory back to the OS at the next stream/event/device sync anywhere in
// the process (an application's per-frame wait for its inference), so every call mapped its
// tens of MB again. The pool keeps only what was allocated, so this is a cap, not a
// reservation: 256 MiB holds a 4K host frame's scratch (about 45 MB to 384x512) or a batch of
// ~32 1080p frames, and stays small beside a Jetson's memory; a one-off larger batch is trimmed
// back to it at the next sync (UINT64_MAX would pin that peak for the life of the process).
constexpr uint64_t kPoolKeepBytes = uint64_t(256) << 20;

uint64_t pool_keep_bytes() {
  const char* mb = std::getenv("SALIQ_CUDA_POOL_KEEP_MB");
  if (!mb || !*mb) return kPoolKeepBytes;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(mb, &end, 10);
  return end && !*end ? uint64_t(v) << 20 : kPoolKeepBytes;
}

// A private pool rather than the device's default one: raising the default pool's threshold
// would change when every other cudaMallocAsync user in the process (PyTorch's or CuPy's async
// allocators, the application) gets memory back.
Allocator make_allocator(int device) {
  Allocator a;
  const char* off = std::getenv("SALIQ_CUDA_MEMPOOL");
  if (off && std::string(off) == "0") return a;
  int supported = 0;
  if (cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device) !=
          cudaSuccess ||
      !supported) {
    cudaGetLastError();
    return a;
  }
  cudaMemPoolProps props = {};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool = nullptr;
  if (cudaMemPoolCreate(&pool, &props) != cudaSuccess) {
    cudaGetLastError();
    return a;
  }
  uint64_t keep = pool_keep_bytes();
  if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess) {
    cudaGetLastError();
    cudaMemPoolDestroy(pool);
    return a;
  }
  a.pool = pool;
  return a;
}

// Checked once per device: the attribute query and the pool live for the process.
Allocator allocator_for(int device) {
  static std::mutex mutex;
  static std::map<int, Allocator> known;
  std::lock_guard<std::mutex> guard(mutex);
  const auto it = known.find(device);
  if (it != known.end()) return it->second;
  return known.emplace(device, make_allocator(device)).first->second;
}

// Device buffers released when the call ends, success or not: on the stream (pool), or after
// waiting for it (cudaFree of memory a queued kernel still uses would be a use after free).
struct DeviceArena {
  cudaStream_t stream;
  Allocator allocator;
  std::vector<void*> ptrs;
  DeviceArena(cudaStream_t s, Allocator a) : stream(s), allocator(a) {}
  ~DeviceArena() {
    if (allocator.pool) {
      for (void* p : ptrs) cudaFreeAsync(p, stream);
      return;
    }
    if (!ptrs.empty()) cudaStreamSynchronize(stream);
    for (void* p : ptrs) cudaFree(p);
  }
  cudaError_t alloc(void** p, size_t bytes) {
    const size_t n = bytes ? bytes : 1;
    const cudaError_t e = allocator.pool ? cudaMallocFromPoolAsync(p, n, allocator.pool, stream)
                                         : cudaMalloc(p, n);
    if (e == cudaSuccess) ptrs.push_back(*p);
    return e;
  }
};

// Orders the call after the work already queued on the producers' streams (inputs still being
// written, outputs still being read): an event on each, waited on by `stream`. The events can
// go at once: a queued wait keeps what it needs.
std::string wait_for_producers(const std::vector<uintptr_t>& producers, cudaStream_t stream) {
  for (const uintptr_t handle : producers) {
    cudaEvent_t event;
    SALIQ_CK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(event, reinterpret_cast<cudaStream_t>(handle));
    if (e == cudaSuccess) e = cudaStreamWaitEvent(stream, event, 0);
    cudaEventDestroy(event);
    if (e != cudaSuccess)
      return "waiting for the __cuda_array_interface__ stream " + std::to_string(handle) +
             " (is it a live stream of this device?): " + cudaGetErrorString(e);
  }
  return "";
}

template <class T>
cudaError_t upload(DeviceArena& arena, const std::vector<T>& v, T** dst) {
  cudaError_t e = arena.alloc(reinterpret_cast<void**>(dst), v.size() * sizeof(T));
  if (e != cudaSuccess) return e;
  return cudaMemcpyAsync(*dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice,
                         arena.stream);
}

// A resize table on the device, rebuilt only when its input size changes.
struct DeviceTable {
  Table t;
  int n_in = -1;
  int* start = nullptr;
  float* w = nullptr;
  std::string ensure(DeviceArena& arena, int in, int out_size) {
    if (in == n_in) return "";
    t.build(n_in = in, out_size);
    SALIQ_CK(upload(arena, t.start, &start));
    SALIQ_CK(upload(arena, t.w, &w));
    return "";
  }
};

// A device scratch buffer that grows (the old one is released with the arena).
struct Growing {
  void* ptr = nullptr;
  size_t cap = 0;
  cudaError_t ensure(DeviceArena& arena, size_t bytes) {
    if (bytes <= cap) return cudaSuccess;
    cap = bytes;
    return arena.alloc(&ptr, bytes);
  }
};

constexpr int kCropChunk = 16;  // crops cut per launch: bounds the [crops, Q, P, 3] scratch

// Version 2: place and cut the crop views of frames [f0, f1), whose version 1 kernels are
// queued and whose pixels are at `src[f]` on the device. Waits for their priors (`prior32`).
struct ViewCutter {
  const Params& p;
  const ViewParams& v;
  const ViewOutputs& host_out;  // the caller's outputs (host or device, see outputs_on_device)
  bool outputs_on_device;
  cudaStream_t stream;
  DeviceArena& arena;
  const float* prior32;  // [n, H/4 * W/4]
  void* crops;           // device outputs (the caller's, or staging for a host copy)
  void* crop_gradient;
  void* grid;
  DeviceTable table, grid_table;
  Growing wins, rows, lum;
  std::vector<float> prior;

  // Cuts `count` crops (windows at `d_wins`) of side `side` -> size, as crops first.. of out.
  std::string cut(const Source& s, const Window* d_wins, int count, int side, int size,
                  const DeviceTable& t, int64_t first, void* out, void* grad_out) {
    const int64_t plane = static_cast<int64_t>(size) * size;
    for (int c0 = 0; c0 < count; c0 += kCropChunk) {
      const int m = count - c0 < kCropChunk ? count - c0 : kCropChunk;
      SALIQ_CK(rows.ensure(arena, size_t(m) * side * size * 3 * sizeof(float)));
      if (grad_out) SALIQ_CK(lum.ensure(arena, size_t(m) * plane * sizeof(float)));
      float* r = static_cast<float*>(rows.ptr);
      float* l = grad_out ? static_cast<float*>(lum.ptr) : nullptr;
      const dim3 block(128);
      const unsigned bx = (size + 127) / 128;
      k_crop_h<<<dim3(bx, side, m), block, 0, stream>>>(s, p.yuv, d_wins + c0, side, t.start,
                                                        t.w, t.t.taps, size, r);
      k_crop_v<<<dim3(bx, size, m), block, 0, stream>>>(r, side, t.start, t.w, t.t.taps, size, p,
                                                        first + c0, out, l);
      if (grad_out)
        k_crop_grad<<<dim3(bx, size, m), block, 0, stream>>>(l, size, first + c0, p.half,
                                                             grad_out);
      SALIQ_CK(cudaGetLastError());
    }
    return "";
  }

  std::string operator()(const Source* src, int f0, int f1) {
    const int hp = p.out_h / kPriorStride, wp = p.out_w / kPriorStride;
    const int k_detail = v.detail_crops, n_grid = v.grid_crops, per = k_detail + n_grid;
    const int m = f1 - f0;
    prior.resize(size_t(m) * hp * wp);
    SALIQ_CK(cudaMemcpyAsync(prior.data(), prior32 + int64_t(f0) * hp * wp,
                             prior.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
    SALIQ_CK(cudaStreamSynchronize(stream));  // placement reads the priors on the host
    std::vector<Window> w(size_t(m) * per);
    std::vector<int> sides(m), grid_sides(m);
    std::vector<float> boxes(size_t(m) * k_detail * 4), weights(size_t(m) * k_detail),
        grid_boxes(size_t(m) * n_grid * 4);
    for (int f = 0; f < m; ++f) {
      const Source& s = src[f0 + f];
      Window* fw = w.data() + size_t(f) * per;
      place_detail_crops(prior.data() + size_t(f) * hp * wp, hp, wp, s.width, s.height, v, fw,
                         weights.data() + size_t(f) * k_detail, &sides[f]);
      grid_sides[f] = grid_windows(s.width, s.height, v, fw + k_detail);
      for (int k = 0; k < k_detail; ++k)
        window_box(fw[k], sides[f], s.width, s.height, &boxes[(size_t(f) * k_detail + k) * 4]);
      for (int k = 0; k < n_grid; ++k)
        window_box(fw[k_detail + k], grid_sides[f], s.width, s.height,
                   &grid_boxes[(size_t(f) * n_grid + k) * 4]);
    }
    // Boxes and weights: straight into host outputs, or uploaded (pageable host memory is
    // staged when the copy is queued, so these vectors may go).
    const std::pair<const std::vector<float>*, float*> small[] = {
        {&boxes, host_out.crop_boxes + int64_t(f0) * k_detail * 4},
        {&weights, host_out.crop_weights + int64_t(f0) * k_detail},
        {&grid_boxes, host_out.grid_boxes ? host_out.grid_boxes + int64_t(f0) * n_grid * 4
                                          : nullptr}};
    for (const auto& [data, dst] : small) {
      if (data->empty()) continue;
      if (outputs_on_device)
        SALIQ_CK(cudaMemcpyAsync(dst, data->data(), data->size() * sizeof(float),
                                 cudaMemcpyHostToDevice, stream));
      else
        std::copy(data->begin(), data->end(), dst);
    }
    SALIQ_CK(wins.ensure(arena, w.size() * sizeof(Window)));
    SALIQ_CK(cudaMemcpyAsync(wins.ptr, w.data(), w.size() * sizeof(Window),
                             cudaMemcpyHostToDevice, stream));
    for (int f = 0; f < m; ++f) {
      const Source& s = src[f0 + f];
      const Window* fw = static_cast<const Window*>(wins.ptr) + size_t(f) * per;
      std::string err = table.ensure(arena, sides[f], v.crop_size);
      if (err.empty())
        err = cut(s, fw, k_detail, sides[f], v.crop_size, table, int64_t(f0 + f) * k_detail,
                  crops, crop_gradient);
      if (err.empty() && n_grid) err = grid_table.ensure(arena, grid_sides[f], v.grid_size);
      if (err.empty() && n_grid)
        err = cut(s, fw + k_detail, n_grid, grid_sides[f], v.grid_size, grid_table,
                  int64_t(f0 + f) * n_grid, grid, nullptr);
      if (!err.empty()) return err;
    }
    return "";
  }
};

std::string run(const Source* frames, int n, const Params& p, const Outputs& out,
                bool inputs_on_device, bool outputs_on_device, cudaStream_t stream,
                const ViewParams& v, const ViewOutputs& vo, Allocator allocator) {
  DeviceArena arena(stream, allocator);
  const int h = p.out_h, w = p.out_w, hp = h / kPriorStride, wp = w / kPriorStride;
  const size_t elem = p.half ? 2 : 4;
  const size_t bytes[3] = {size_t(n) * 3 * h * w * elem, size_t(n) * h * w * elem,
                           size_t(n) * hp * wp * elem};
  void* dout[3] = {out.image, out.gradient, out.prior};
  if (!outputs_on_device)
    for (int i = 0; i < 3; ++i) SALIQ_CK(arena.alloc(&dout[i], bytes[i]));

  float *lum, *grad;
  double *pooled, *blur_h, *kernel;
  SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&lum), size_t(h) * w * sizeof(float)));
  SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&grad), size_t(h) * w * sizeof(float)));
  SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&pooled), size_t(hp) * wp * sizeof(double)));
  SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&blur_h), size_t(hp) * wp * sizeof(double)));
  const double sigma = prior_blur_sigma(h, w);
  const int radius = prior_blur_radius(sigma);
  std::vector<double> k(2 * radius + 1);
  gaussian_kernel(sigma, radius, k.data());
  SALIQ_CK(upload(arena, k, &kernel));

  // Version 2: the float32 priors, and device buffers for the crop outputs when they go to
  // the host at the end.
  const bool views = v.detail_crops > 0;
  const size_t view_bytes[3] = {
      size_t(n) * v.detail_crops * 3 * v.crop_size * v.crop_size * elem,
      size_t(n) * v.detail_crops * v.crop_size * v.crop_size * elem,
      size_t(n) * v.grid_crops * 3 * v.grid_size * v.grid_size * elem};
  void* dview[3] = {vo.crops, vo.crop_gradient, vo.grid};
  float* prior32 = nullptr;
  if (views) {
    SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&prior32), size_t(n) * hp * wp * sizeof(float)));
    if (!outputs_on_device)
      for (int i = 0; i < 3; ++i) SALIQ_CK(arena.alloc(&dview[i], view_bytes[i]));
  }
  ViewCutter cutter{p, v, vo, outputs_on_device, stream, arena, prior32,
                    dview[0], dview[1], dview[2]};
  std::vector<Source> on_device(n);  // each frame as the kernels read it

  Table ty, tx;
  int last_h = -1, last_w = -1;
  int *d_sy = nullptr, *d_sx = nullptr;
  float *d_wy = nullptr, *d_wx = nullptr, *rows = nullptr;
  size_t rows_cap = 0;
  uint8_t* staging = nullptr;
  size_t staging_cap = 0;
  for (int f = 0; f < n; ++f) {
    Source s = frames[f];
    if (s.height != last_h) {
      ty.build(last_h = s.height, h);
      SALIQ_CK(upload(arena, ty.start, &d_sy));
      SALIQ_CK(upload(arena, ty.w, &d_wy));
    }
    if (s.width != last_w) {
      tx.build(last_w = s.width, w);
      SALIQ_CK(upload(arena, tx.start, &d_sx));
      SALIQ_CK(upload(arena, tx.w, &d_wx));
    }
    const size_t need_rows = size_t(s.height) * w * 3 * sizeof(float);
    if (need_rows > rows_cap) {
      SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&rows), rows_cap = need_rows));
    }
    if (!inputs_on_device) {  // copy the (possibly padded) host frame to a packed device one
      const size_t row_bytes =
          size_t(s.width) * s.depth * (s.format == kNV12 ? 1 : format_channels(s.format));
      const size_t total_rows = s.format == kNV12 ? size_t(s.height) * 3 / 2 : s.height;
      if (row_bytes * total_rows > staging_cap)
        SALIQ_CK(arena.alloc(reinterpret_cast<void**>(&staging),
                             staging_cap = row_bytes * total_rows));
      SALIQ_CK(cudaMemcpy2DAsync(staging, row_bytes, s.data, s.pitch, row_bytes, total_rows,
                                 cudaMemcpyHostToDevice, stream));
      s.data = staging;
      s.pitch = static_cast<int64_t>(row_bytes);
    }
    const dim3 block(128);
    k_hpass<<<dim3((w + 127) / 128, s.height), block, 0, stream>>>(s, p.yuv, d_sx, d_wx, tx.taps,
                                                                 w, rows);
    k_vpass<<<dim3((w + 127) / 128, h), block, 0, stream>>>(rows, d_sy, d_wy, ty.taps, p, f,
                                                          dout[0], lum);
    k_gradient<<<dim3((w + 127) / 128, h), block, 0, stream>>>(lum, h, w, f, p.half, dout[1],
                                                             grad);
    k_prior<<<1, kPriorThreads, 0, stream>>>(grad, h, w, kernel, radius, f, p.half, pooled, blur_h,
                                    dout[2], prior32);
    SALIQ_CK(cudaGetLastError());
    on_device[f] = s;
    // Host frames share one staging buffer: cut this frame's crops before the next upload.
    if (views && !inputs_on_device) {
      const std::string err = cutter(on_device.data(), f, f + 1);
      if (!err.empty()) return err;
    }
  }
  if (views && inputs_on_device) {  // device frames stay put: one wait for the whole batch
    const std::string err = cutter(on_device.data(), 0, n);
    if (!err.empty()) return err;
  }
  if (!outputs_on_device) {
    void* host[3] = {out.image, out.gradient, out.prior};
    for (int i = 0; i < 3; ++i)
      SALIQ_CK(cudaMemcpyAsync(host[i], dout[i], bytes[i], cudaMemcpyDeviceToHost, stream));
    if (views) {
      void* host_views[3] = {vo.crops, vo.crop_gradient, vo.grid};
      for (int i = 0; i < 3; ++i)
        if (view_bytes[i])
          SALIQ_CK(cudaMemcpyAsync(host_views[i], dview[i], view_bytes[i],
                                   cudaMemcpyDeviceToHost, stream));
    }
    SALIQ_CK(cudaStreamSynchronize(stream));
  }
  return "";
}

// setup.py passes the compiled list as one pp-number ("75_80_90a": nvcc splits -D values at
// commas, and quotes do not survive every shell between it and the host compiler).
#define SALIQ_STRINGIFY_(x) #x
#define SALIQ_STRINGIFY(x) SALIQ_STRINGIFY_(x)
#ifdef SALIQ_CUDA_ARCHS
constexpr const char* kCudaArchs = SALIQ_STRINGIFY(SALIQ_CUDA_ARCHS);
#else
constexpr const char* kCudaArchs = "";
#endif

// "75_80_90a" -> "7.5, 8.0, 9.0a + PTX 9.0a" (setup.py adds PTX for the last, highest arch).
std::string arch_list(const std::string& define) {
  std::vector<std::string> archs;
  size_t start = 0;
  while (start <= define.size()) {
    const size_t end = define.find('_', start);
    const std::string arch = define.substr(start, end == std::string::npos ? end : end - start);
    size_t digits = 0;
    while (digits < arch.size() && arch[digits] >= '0' && arch[digits] <= '9') ++digits;
    if (digits < 2) return "";  // not setup.py's form: say nothing rather than something wrong
    archs.push_back(arch.substr(0, digits - 1) + "." + arch.substr(digits - 1));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::string out;
  for (size_t i = 0; i < archs.size(); ++i) out += (i ? ", " : "") + archs[i];
  return out + " + PTX " + archs.back();
}

}  // namespace

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return std::string("no usable CUDA driver/device (") + cudaGetErrorString(e) + ")";
  if (count == 0) return "no CUDA device is present";
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return "cannot select a CUDA device";
  cudaFuncAttributes attr;
  if (cudaFuncGetAttributes(&attr, k_vpass) != cudaSuccess) {
    cudaGetLastError();
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, dev);
    const std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const std::string built = arch_list(kCudaArchs);
    return "this build has no kernel for the GPU's compute capability " + cc + " (built for " +
           (built.empty() ? std::string("an unrecorded list of GPUs") : built) +
           "); reinstall saliq with SALIQ_CUDA_ARCHS=" + cc +
           " and a CUDA toolkit that supports it";
  }
  return "";
}

std::string preprocess_cuda(const Source* frames, int n, const Params& p, const Outputs& out,
                            bool inputs_on_device, bool outputs_on_device, uintptr_t stream,
                            const ViewParams& views, const ViewOutputs& view_out,
                            const std::vector<uintptr_t>& producer_streams) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) return reason;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return "cannot select a CUDA device";
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  std::string err = wait_for_producers(producer_streams, s);
  if (err.empty())
    err = run(frames, n, p, out, inputs_on_device, outputs_on_device, s, views, view_out,
              allocator_for(device));
  if (!err.empty()) cudaGetLastError();  // clear a sticky-free error for the next call
  return err;
}

}  // namespace saliq
