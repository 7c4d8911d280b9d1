// CUDA kernels of preprocessing version 1: the same per-pixel math as the CPU twin
// (preproc_math.h), in the same four passes and accumulation order, so both paths agree.
#include <cuda_runtime.h>

#include <string>
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
__global__ void __launch_bounds__(kPriorThreads) k_prior(const float* __restrict__ grad, int h, int w, const double* __restrict__ k,
                        int r, int64_t index, bool half, double* pooled, double* blur_h,
                        void* prior) {
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
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    store_out(prior, index * n + i, static_cast<float>(pooled[i] * inv), half);
}

// Device buffers released on the stream when the call ends, success or not.
struct DeviceArena {
  cudaStream_t stream;
  std::vector<void*> ptrs;
  explicit DeviceArena(cudaStream_t s) : stream(s) {}
  ~DeviceArena() {
    for (void* p : ptrs) cudaFreeAsync(p, stream);
  }
  cudaError_t alloc(void** p, size_t bytes) {
    const cudaError_t e = cudaMallocAsync(p, bytes ? bytes : 1, stream);
    if (e == cudaSuccess) ptrs.push_back(*p);
    return e;
  }
};

template <class T>
cudaError_t upload(DeviceArena& arena, const std::vector<T>& v, T** dst) {
  cudaError_t e = arena.alloc(reinterpret_cast<void**>(dst), v.size() * sizeof(T));
  if (e != cudaSuccess) return e;
  return cudaMemcpyAsync(*dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice,
                         arena.stream);
}

std::string run(const Source* frames, int n, const Params& p, const Outputs& out,
                bool inputs_on_device, bool outputs_on_device, cudaStream_t stream) {
  DeviceArena arena(stream);
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
                                    dout[2]);
    SALIQ_CK(cudaGetLastError());
  }
  if (!outputs_on_device) {
    void* host[3] = {out.image, out.gradient, out.prior};
    for (int i = 0; i < 3; ++i)
      SALIQ_CK(cudaMemcpyAsync(host[i], dout[i], bytes[i], cudaMemcpyDeviceToHost, stream));
    SALIQ_CK(cudaStreamSynchronize(stream));
  }
  return "";
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
    return "this build has no kernel for the GPU's compute capability " +
           std::to_string(prop.major) + "." + std::to_string(prop.minor) +
           " (built for 7.5, 8.6, 8.7, 8.9, 9.0 + PTX)";
  }
  return "";
}

std::string preprocess_cuda(const Source* frames, int n, const Params& p, const Outputs& out,
                            bool inputs_on_device, bool outputs_on_device, uintptr_t stream) {
  const std::string reason = cuda_unavailable_reason();
  if (!reason.empty()) return reason;
  std::string err = run(frames, n, p, out, inputs_on_device, outputs_on_device,
                        reinterpret_cast<cudaStream_t>(stream));
  if (!err.empty()) cudaGetLastError();  // clear a sticky-free error for the next call
  return err;
}

}  // namespace saliq
