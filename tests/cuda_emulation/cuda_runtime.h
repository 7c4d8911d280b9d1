// A host stand-in for the parts of the CUDA runtime that csrc/preproc_cuda.cu uses, so its
// kernels AND its host orchestration compile with g++ and run on a machine without a GPU
// (tests/test_cuda_emulation.py). "Device" memory is host memory; streams are ignored (work
// runs in order, synchronously); kernels run block by block, and the threads of a block run
// one after another, or as real threads (a pool kept for the process) meeting at a barrier
// for kernels that call __syncthreads. It checks the CUDA code's indexing and control flow,
// not GPU behaviour (memory model, timing, occupancy): that is for the `gpu` tests on real
// hardware.
#pragma once

#include <barrier>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so one copy is the block's

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 blockIdx, threadIdx;
inline thread_local dim3 blockDim, gridDim;

enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
using cudaStream_t = struct CUstream_st*;
struct cudaFuncAttributes {
  int maxThreadsPerBlock = 1024;
};
struct cudaDeviceProp {
  int major = 0, minor = 0;
};

namespace saliq_emu {

// SALIQ_EMU_FAIL_ALLOC=N[,M...] makes the N-th (M-th, ...) cudaMallocAsync of the process
// fail (error paths).
inline int& allocations() {
  static int count = 0;
  return count;
}
inline bool fail_this_allocation() {
  const char* list = std::getenv("SALIQ_EMU_FAIL_ALLOC");
  if (!list) return false;
  const long count = ++allocations();
  for (const char* p = list; *p;) {
    char* end = nullptr;
    const long n = std::strtol(p, &end, 10);
    if (end == p) break;
    if (n == count) return true;
    p = *end == ',' ? end + 1 : end;
  }
  return false;
}
inline thread_local std::barrier<>* block_barrier = nullptr;

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
};

// Threads for the blocks of kernels that call __syncthreads, kept for the process: starting
// up to 1024 threads per block (under ASan) cost more than the emulated kernels themselves.
class SyncPool {
 public:
  static SyncPool& get() {
    static SyncPool pool;
    return pool;
  }
  // Runs body(t) for t in [0, n) on n threads at once (they may meet at a barrier).
  void run(unsigned n, const std::function<void(unsigned)>& body) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (workers_.size() < n) {
      const unsigned index = static_cast<unsigned>(workers_.size());
      workers_.emplace_back([this, index] { loop(index); });
    }
    body_ = &body;
    active_ = remaining_ = n;
    ++generation_;
    start_.notify_all();
    done_.wait(lock, [this] { return remaining_ == 0; });
    body_ = nullptr;
  }
  ~SyncPool() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stop_ = true;
    }
    start_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  void loop(unsigned index) {
    uint64_t seen = 0;  // a worker started during run() takes part in that launch
    for (;;) {
      const std::function<void(unsigned)>* body;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= active_) continue;
        body = body_;
      }
      (*body)(index);
      std::lock_guard<std::mutex> guard(mutex_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }
  std::mutex mutex_;
  std::condition_variable start_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(unsigned)>* body_ = nullptr;
  unsigned active_ = 0, remaining_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

template <class... Params, class... Args>
void run_thread(void (*kernel)(Params...), const LaunchConfig& cfg, uint3 block, uint3 thread,
                Args... args) {
  gridDim = cfg.grid;
  blockDim = cfg.block;
  blockIdx = block;
  threadIdx = thread;
  kernel(args...);
}

// `kernel<<<grid, block, shared, stream>>>(args)` becomes launch<uses_syncthreads>(...).
template <bool kSync, class... Params, class... Args>
void launch(void (*kernel)(Params...), const LaunchConfig& cfg, Args... args) {
  for (unsigned bz = 0; bz < cfg.grid.z; ++bz)
    for (unsigned by = 0; by < cfg.grid.y; ++by)
      for (unsigned bx = 0; bx < cfg.grid.x; ++bx) {
        const uint3 block{bx, by, bz};
        std::vector<uint3> threads;
        for (unsigned tz = 0; tz < cfg.block.z; ++tz)
          for (unsigned ty = 0; ty < cfg.block.y; ++ty)
            for (unsigned tx = 0; tx < cfg.block.x; ++tx) threads.push_back({tx, ty, tz});
        if (!kSync) {
          for (const uint3& t : threads) run_thread(kernel, cfg, block, t, args...);
          continue;
        }
        std::barrier<> sync(static_cast<std::ptrdiff_t>(threads.size()));
        SyncPool::get().run(static_cast<unsigned>(threads.size()), [&](unsigned i) {
          block_barrier = &sync;
          run_thread(kernel, cfg, block, threads[i], args...);
        });
      }
}

}  // namespace saliq_emu

inline void __syncthreads() { saliq_emu::block_barrier->arrive_and_wait(); }

inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "out of memory (emulated)";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  p->major = 0;
  p->minor = 0;
  return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, F) {
  *a = cudaFuncAttributes{};
  return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  if (saliq_emu::fail_this_allocation()) return cudaErrorMemoryAllocation;
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                                   cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                     size_t width, size_t height, cudaMemcpyKind, cudaStream_t) {
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                width);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
