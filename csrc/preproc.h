// Host-side interface of the preprocessing kernels (CPU twin and CUDA), shared by the pybind11
// bindings. Plain C++: no CUDA headers, so bindings.cpp builds without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "preproc_math.h"
#include "views.h"

namespace saliq {

struct Params {
  int out_h = 0, out_w = 0;  // positive multiples of 4
  float mean[3] = {0.5f, 0.5f, 0.5f};
  float stdev[3] = {0.5f, 0.5f, 0.5f};
  bool half = false;  // float16 outputs (bits as uint16), else float32
  YuvCoeffs yuv{};
};

// Outputs for a batch of n frames, C-contiguous: image [n,3,H,W], gradient [n,1,H,W],
// prior [n,1,H/4,W/4], each float32 or float16 (Params::half).
struct Outputs {
  void* image;
  void* gradient;
  void* prior;
};

// Version 2's crop views (docs/preprocessing.md) for a batch of n frames, C-contiguous:
// crops [n,K,3,P,P], crop_gradient [n,K,1,P,P], grid [n,G,3,Pg,Pg] in the outputs' dtype;
// crop_boxes [n,K,4], crop_weights [n,K], grid_boxes [n,G,4] always float32. Null when the
// call has no views (ViewParams::detail_crops == 0).
struct ViewOutputs {
  void* crops = nullptr;
  void* crop_gradient = nullptr;
  float* crop_boxes = nullptr;
  float* crop_weights = nullptr;
  void* grid = nullptr;
  float* grid_boxes = nullptr;
};

// CPU twin. Threads: std::thread per call (no persistent pool, so it is fork-safe for data
// loader workers); the count is process-wide, 0 = hardware concurrency.
// With `views.detail_crops > 0` it also cuts the crop views (version 2): placed on each frame's
// float32 prior, decoding only the source windows they cover; the version 1 outputs are the same
// bits as without views.
void preprocess_cpu(const Source* frames, int n, const Params& p, const Outputs& out,
                    const ViewParams& views = {}, const ViewOutputs& view_out = {});
void set_num_threads(int n);
int get_num_threads();

// CUDA (preproc_cuda.cu; only linked when built with SALIQ_WITH_CUDA).
// Returns an empty string on success, otherwise the cause. `frames[i].data` is a device
// pointer when `inputs_on_device`, else host memory; likewise outputs. `stream` is a
// cudaStream_t (0 = legacy default stream). With views (version 2) the call waits once per
// frame (host frames) or once per batch (device frames) for the small priors, places the crops
// on the host, then queues the crop kernels; `view_out` lives where the outputs do.
// `producer_streams`: the streams whose queued work on the device inputs/outputs must finish
// first (__cuda_array_interface__ v3 `stream`; 1 = legacy default, 2 = per-thread default):
// an event recorded on each is waited on by `stream` before the first copy or kernel.
// Scratch memory comes from a per-device stream-ordered pool that keeps up to
// kPoolKeepBytes (SALIQ_CUDA_POOL_KEEP_MB) between calls, or from cudaMalloc/cudaFree (after
// a stream sync) where the device has no memory pools or SALIQ_CUDA_MEMPOOL=0.
std::string cuda_unavailable_reason();  // "" when a usable device is present
std::string preprocess_cuda(const Source* frames, int n, const Params& p, const Outputs& out,
                            bool inputs_on_device, bool outputs_on_device, uintptr_t stream,
                            const ViewParams& views = {}, const ViewOutputs& view_out = {},
                            const std::vector<uintptr_t>& producer_streams = {});

}  // namespace saliq
