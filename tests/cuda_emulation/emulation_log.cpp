// The emulated runtime's switches and ordered log, for tests (ctypes on the built module):
//   saliq_emu_log()            every line recorded since the last clear, "\n"-joined
//   saliq_emu_clear_log()
//   saliq_emu_set_pools_supported(0|1)      cudaDevAttrMemoryPoolsSupported (default 1)
//   saliq_emu_set_kernels_missing(0|1, major, minor)   cudaFuncGetAttributes fails as on a GPU
//                                           the build has no kernel for; the device reports
//                                           compute capability major.minor
#include "cuda_runtime.h"

#define SALIQ_EMU_API extern "C" __attribute__((visibility("default")))

SALIQ_EMU_API const char* saliq_emu_log() {
  auto& log = saliq_emu::log();
  std::lock_guard<std::mutex> guard(log.mutex);
  log.joined.clear();
  for (const auto& line : log.lines) log.joined += line + "\n";
  return log.joined.c_str();
}

SALIQ_EMU_API void saliq_emu_clear_log() {
  auto& log = saliq_emu::log();
  std::lock_guard<std::mutex> guard(log.mutex);
  log.lines.clear();
}

SALIQ_EMU_API void saliq_emu_set_pools_supported(int supported) {
  saliq_emu::log().pools_supported = supported != 0;
}

SALIQ_EMU_API void saliq_emu_set_kernels_missing(int missing, int major, int minor) {
  auto& log = saliq_emu::log();
  log.kernels_missing = missing != 0;
  log.major = major;
  log.minor = minor;
}
