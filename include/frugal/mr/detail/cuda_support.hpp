// frugal/mr/detail/cuda_support.hpp: what the CUDA runtime resources share: the alignment rule,
// a scoped device switch, and turning a failed cudaMalloc* into out_of_memory or cuda_error.
// snippet: cuda
//   frugal::detail::scoped_device on{device_};
//   if (on.status() != cudaSuccess) return;   // else cudaMalloc on `device_`
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/detail/cuda_support.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/error.hpp>
#include <frugal/mr/concepts.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace frugal::detail {

// Error helpers take the caller's file and line as defaulted __builtin_FILE() / __builtin_LINE()
// arguments (GCC, Clang, NVCC and MSVC have them; <source_location> needs Clang 15+).

/// The largest alignment the cudaMalloc family guarantees, and so the largest the runtime
/// resources accept (the same rule as CCCL's cuda::mr resources).
inline constexpr std::size_t cuda_max_alignment = 256;

/// True for a power of two no larger than cuda_max_alignment.
constexpr bool is_cuda_alignment(std::size_t alignment) noexcept {
  return is_pow2(alignment) && alignment <= cuda_max_alignment;
}

/// Throws invalid_argument unless is_cuda_alignment(alignment).
inline void check_cuda_alignment(std::size_t alignment, const char* who) {
  check_alignment(alignment, who);
  FRUGAL_EXPECTS(alignment <= cuda_max_alignment,
                 std::string(who) + ": alignment " + std::to_string(alignment) +
                     " exceeds the 256 bytes that CUDA allocations guarantee",
                 invalid_argument);
}

/// The current device, or 0 when it cannot be queried (no driver or no device); the error is
/// cleared so that it does not surface in an unrelated call.
inline int current_device_or_zero() noexcept {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return device;
}

/// Makes `device` current for the lifetime of the object and restores the previous device.
/// Never throws: callers look at status() and decide. With `bind` the device is set even when
/// it is already current, which makes its primary context current on this thread (CUDA 12+),
/// as driver API calls need.
class scoped_device {
 public:
  explicit scoped_device(int device, bool bind = false) noexcept {
    status_ = cudaGetDevice(&previous_);
    if (status_ == cudaSuccess && (bind || previous_ != device)) {
      status_ = cudaSetDevice(device);
      switched_ = status_ == cudaSuccess && previous_ != device;
    }
    if (status_ != cudaSuccess) (void)cudaGetLastError();
  }
  ~scoped_device() {
    if (switched_) (void)cudaSetDevice(previous_);
  }
  scoped_device(const scoped_device&) = delete;
  scoped_device& operator=(const scoped_device&) = delete;

  cudaError_t status() const noexcept { return status_; }

  /// Throws cuda_error naming `who` and the device unless the switch succeeded.
  void check(const char* who, int device, const char* file = __builtin_FILE(),
             int line = __builtin_LINE()) const {
    if (status_ == cudaSuccess) return;
    throw_error<cuda_error>(file, line,
                            std::string(who) + ": cannot make device " + std::to_string(device) +
                                " current: " + cudaGetErrorName(status_) + ": " +
                                cudaGetErrorString(status_));
  }

 private:
  int previous_ = 0;
  cudaError_t status_ = cudaSuccess;
  bool switched_ = false;
};

/// "device 0: 1.00 GiB free of 140.00 GiB" from cudaMemGetInfo on the current device, which the
/// caller has made `device`; says "free memory unknown" when the query fails.
inline std::string device_memory_state(int device) {
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  std::string state = "device " + std::to_string(device) + ": ";
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return state + "free memory unknown";
  }
  return state + format_bytes(free_bytes) + " free of " + format_bytes(total_bytes);
}

/// The try_allocate ending shared by the CUDA resources: `p` when `status` is success, else
/// nullptr with the error cleared (so it does not surface at the next CUDA call).
inline void* allocation_or_null(cudaError_t status, void* p) noexcept {
  if (status == cudaSuccess) return p;
  (void)cudaGetLastError();
  return nullptr;
}

/// Turns the failed `status` of allocation call `call` into an exception and clears the error:
/// cudaErrorMemoryAllocation becomes out_of_memory(bytes, state, who), anything else cuda_error.
[[noreturn]] inline void throw_allocation_failure(cudaError_t status, const char* call,
                                                  std::size_t bytes, const char* who,
                                                  const std::string& state,
                                                  const char* file = __builtin_FILE(),
                                                  int line = __builtin_LINE()) {
  (void)cudaGetLastError();
  if (status == cudaErrorMemoryAllocation) FRUGAL_OUT_OF_MEMORY(bytes, state, who);
  throw_error<cuda_error>(file, line,
                          std::string(who) + ": " + call + " of " + std::to_string(bytes) +
                              " bytes failed: " + cudaGetErrorName(status) + ": " +
                              cudaGetErrorString(status));
}

/// Reports a failed free (`call` returned `status`) through the misuse handler, from a noexcept
/// deallocate. Failures while the runtime shuts down are expected and ignored.
inline void report_free_failure(cudaError_t status, const char* call, const char* who,
                                const void* p, std::size_t bytes) noexcept {
  (void)cudaGetLastError();
  if (status == cudaErrorCudartUnloading) return;
  const auto kind = status == cudaErrorInvalidValue || status == cudaErrorInvalidDevicePointer
                        ? misuse_kind::unknown_pointer
                        : misuse_kind::other;
  try {
    report_misuse(kind, who, p, bytes,
                  std::string(call) + " failed: " + cudaGetErrorName(status) + ": " +
                      cudaGetErrorString(status));
  } catch (...) {
    // Building the message ran out of host memory; nothing more can be said.
  }
}

}  // namespace frugal::detail
