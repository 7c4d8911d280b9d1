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

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidValue = 1,
  cudaErrorNotSupported = 801,
  cudaErrorNoKernelImageForDevice = 209,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
using cudaStream_t = struct CUstream_st*;
using cudaEvent_t = struct CUevent_st*;
using cudaMemPool_t = struct CUmemPoolHandle_st*;
#define cudaStreamLegacy reinterpret_cast<cudaStream_t>(0x1)
#define cudaStreamPerThread reinterpret_cast<cudaStream_t>(0x2)
constexpr unsigned cudaEventDisableTiming = 0x02;
struct cudaFuncAttributes {
  int maxThreadsPerBlock = 1024;
};
struct cudaDeviceProp {
  int major = 0, minor = 0;
};
enum cudaDeviceAttr { cudaDevAttrMemoryPoolsSupported = 115 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaMemAllocationType { cudaMemAllocationTypeInvalid = 0, cudaMemAllocationTypePinned = 1 };
enum cudaMemAllocationHandleType { cudaMemHandleTypeNone = 0 };
enum cudaMemLocationType { cudaMemLocationTypeInvalid = 0, cudaMemLocationTypeDevice = 1 };
struct cudaMemLocation {
  cudaMemLocationType type;
  int id;
};
struct cudaMemPoolProps {
  cudaMemAllocationType allocType;
  cudaMemAllocationHandleType handleTypes;
  cudaMemLocation location;
  void* win32SecurityAttributes;
  size_t maxSize;
  unsigned char reserved[56];
};

namespace saliq_emu {

// The ordered record of stream-ordered calls, one line each, e.g. "memcpy s=7",
// "launch k_hpass s=7", "event_record e=3 s=5", "wait s=7 e=3" (streams as integer handles).
struct Log {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::string joined;  // what saliq_emu_log() returned last (the pointer must stay valid)
  bool pools_supported = true;
  bool kernels_missing = false;
  int major = 0, minor = 0;  // the device's compute capability when kernels_missing
};
inline Log& log() {
  static Log instance;
  return instance;
}
inline std::string handle(const void* p) {
  return std::to_string(reinterpret_cast<uintptr_t>(p));
}
inline void record(const std::string& line) {
  std::lock_guard<std::mutex> guard(log().mutex);
  log().lines.push_back(line);
}

// SALIQ_EMU_FAIL_ALLOC=N[,M...] makes the N-th (M-th, ...) device allocation of the process
// (cudaMallocAsync, cudaMallocFromPoolAsync or cudaMalloc) fail (error paths).
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
  const char* name = "";
  LaunchConfig named(const char* kernel) const {  // build.py's rewrite names each launch
    LaunchConfig c = *this;
    c.name = kernel;
    return c;
  }
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
// One kernel at a time in the process, whichever host thread launches it: `__shared__` is one
// static copy per kernel and SyncPool serves one launch, so concurrent launches from several
// host threads (an Assessor used by many threads) would share both.
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

template <bool kSync, class... Params, class... Args>
void launch(void (*kernel)(Params...), const LaunchConfig& cfg, Args... args) {
  std::lock_guard<std::mutex> serial(launch_mutex());
  record(std::string("launch ") + cfg.name + " s=" + handle(cfg.stream));
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
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorNotSupported: return "operation not supported (emulated)";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available (emulated)";
    default: return "invalid argument (emulated)";
  }
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
  p->major = saliq_emu::log().major;
  p->minor = saliq_emu::log().minor;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  saliq_emu::record("device_attribute " + std::to_string(attr) + " dev=" +
                    std::to_string(device));
  *value = attr == cudaDevAttrMemoryPoolsSupported && saliq_emu::log().pools_supported;
  return cudaSuccess;
}
template <class F>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, F) {
  if (saliq_emu::log().kernels_missing) return cudaErrorNoKernelImageForDevice;
  *a = cudaFuncAttributes{};
  return cudaSuccess;
}

// Memory: host memory. A stream-ordered allocation on a device without pool support fails
// as the runtime does (cudaErrorNotSupported), so a missing check shows as an error.
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  saliq_emu::record("malloc_async s=" + saliq_emu::handle(s));
  if (!saliq_emu::log().pools_supported) return cudaErrorNotSupported;
  if (saliq_emu::fail_this_allocation()) return cudaErrorMemoryAllocation;
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t pool,
                                           cudaStream_t s) {
  saliq_emu::record("malloc_pool pool=" + saliq_emu::handle(pool) + " s=" +
                    saliq_emu::handle(s));
  if (!saliq_emu::log().pools_supported || !pool) return cudaErrorNotSupported;
  if (saliq_emu::fail_this_allocation()) return cudaErrorMemoryAllocation;
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  saliq_emu::record("free_async s=" + saliq_emu::handle(s));
  if (!saliq_emu::log().pools_supported) return cudaErrorNotSupported;
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  saliq_emu::record("malloc");
  if (saliq_emu::fail_this_allocation()) return cudaErrorMemoryAllocation;
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFree(void* p) {
  saliq_emu::record("free");
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props) {
  if (!saliq_emu::log().pools_supported) return cudaErrorNotSupported;
  if (props->allocType != cudaMemAllocationTypePinned ||
      props->location.type != cudaMemLocationTypeDevice)
    return cudaErrorInvalidValue;
  static uintptr_t next = 0x1000;
  *pool = reinterpret_cast<cudaMemPool_t>(next++);
  saliq_emu::record("pool_create pool=" + saliq_emu::handle(*pool) + " dev=" +
                    std::to_string(props->location.id));
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool) {
  saliq_emu::record("pool_destroy pool=" + saliq_emu::handle(pool));
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr,
                                           void* value) {
  std::string line = "pool_set pool=" + saliq_emu::handle(pool) + " attr=" + std::to_string(attr);
  if (attr == cudaMemPoolAttrReleaseThreshold)  // the runtime reads a cuuint64_t
    line += " release_threshold=" + std::to_string(*static_cast<const uint64_t*>(value));
  saliq_emu::record(line);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                                   cudaStream_t s) {
  saliq_emu::record("memcpy s=" + saliq_emu::handle(s));
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                                     size_t width, size_t height, cudaMemcpyKind,
                                     cudaStream_t s) {
  saliq_emu::record("memcpy2d s=" + saliq_emu::handle(s));
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                width);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  saliq_emu::record("sync s=" + saliq_emu::handle(s));
  return cudaSuccess;
}

// Events: numbered handles; record and wait only log (the work already ran in order).
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  static uintptr_t next = 0;
  *e = reinterpret_cast<cudaEvent_t>(++next);
  saliq_emu::record("event_create e=" + saliq_emu::handle(*e) + " flags=" +
                    std::to_string(flags));
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
  saliq_emu::record("event_record e=" + saliq_emu::handle(e) + " s=" + saliq_emu::handle(s));
  return cudaSuccess;
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0) {
  saliq_emu::record("wait s=" + saliq_emu::handle(s) + " e=" + saliq_emu::handle(e) +
                    " flags=" + std::to_string(flags));
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  saliq_emu::record("event_destroy e=" + saliq_emu::handle(e));
  return cudaSuccess;
}
