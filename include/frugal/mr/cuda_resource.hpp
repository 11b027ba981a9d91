// frugal/mr/cuda_resource.hpp: device memory from cudaMalloc, the plain device upstream.
// snippet: cuda
//   frugal::cuda_resource gpu;            // the current device
//   void* p = gpu.allocate(1 << 20);      // device memory, 256-byte aligned
//   gpu.deallocate(p, 1 << 20);
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/cuda_resource.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/cuda_support.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>

namespace frugal {

/// @brief Device memory from cudaMalloc / cudaFree on one device. See docs/concepts.md#resource.
///
/// The device is fixed at construction; every call makes it current for its duration, so the
/// memory comes from that device whichever device the calling thread has current. All instances
/// for the same device compare equal (memory from one may be freed by another).
/// Alignments up to 256 bytes (what cudaMalloc guarantees) are accepted; larger ones throw
/// invalid_argument, as CCCL's cuda::mr::device_memory_resource does. Zero bytes gives nullptr.
/// Thread-safe: it has no mutable state.
class cuda_resource {
 public:
  /// @brief A resource for the current device (device 0 when none can be queried; allocate then
  /// reports the real error).
  cuda_resource() noexcept : device_(detail::current_device_or_zero()) {}

  /// @brief A resource for device ordinal `device` (checked when allocating).
  explicit cuda_resource(int device) noexcept : device_(device) {}

  /// @brief Allocates `bytes` bytes of device memory aligned to `alignment`.
  /// @param alignment a power of two no larger than 256
  /// @returns device memory, or nullptr when bytes is 0
  /// @throws invalid_argument for a bad alignment; out_of_memory when cudaMalloc reports
  ///         cudaErrorMemoryAllocation (its state names the device's free and total memory);
  ///         cuda_error for any other CUDA error
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_cuda_alignment(alignment, "cuda_resource");
    if (bytes == 0) return nullptr;
    const detail::scoped_device on(device_);
    on.check("cuda_resource", device_);
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status != cudaSuccess) {
      detail::throw_allocation_failure(status, "cudaMalloc", bytes, "cuda_resource",
                                       detail::device_memory_state(device_));
    }
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_cuda_alignment(alignment)) return nullptr;
    const detail::scoped_device on(device_);
    if (on.status() != cudaSuccess) return nullptr;
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    return detail::allocation_or_null(status, p);
  }

  /// @brief Frees `p` (from allocate of any equal resource) with cudaFree, which waits for the
  /// device to finish work that may use it. nullptr is a no-op. A failure goes to the misuse
  /// handler.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const detail::scoped_device on(device_);
    const cudaError_t status = cudaFree(p);
    if (status != cudaSuccess)
      detail::report_free_failure(status, "cudaFree", "cuda_resource", p, bytes);
  }

  /// @brief The device ordinal this resource allocates on.
  int device() const noexcept { return device_; }

  friend bool operator==(const cuda_resource& a, const cuda_resource& b) noexcept {
    return a.device_ == b.device_;
  }
  friend constexpr void get_property(const cuda_resource&, device_accessible) noexcept {}

 private:
  int device_;
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::cuda_resource, frugal::device_accessible>);
static_assert(!frugal::has_property_v<frugal::cuda_resource, frugal::host_accessible>);
static_assert(frugal::try_allocatable<frugal::cuda_resource>);
