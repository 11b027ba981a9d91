// frugal/mr/pinned_resource.hpp: page-locked host memory from cudaMallocHost, readable and
// writable by the host and by every device (staging buffers, fast copies, zero-copy reads).
// snippet: cuda
//   frugal::pinned_resource pinned;
//   auto* staging = static_cast<float*>(pinned.allocate(n * sizeof(float)));
//   cudaMemcpyAsync(device_ptr, staging, n * sizeof(float), cudaMemcpyHostToDevice, stream);
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/pinned_resource.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/cuda_support.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>

namespace frugal {

/// @brief Page-locked host memory from cudaMallocHost / cudaFreeHost. See
/// docs/concepts.md#resource.
///
/// Host- and device-accessible: with unified addressing, pinned memory is mapped into every
/// device's address space. Stateless: all instances compare equal. Alignments up to 256 bytes
/// are accepted; larger ones throw invalid_argument (as CCCL's pinned_memory_resource).
/// Zero bytes gives nullptr. Thread-safe.
class pinned_resource {
 public:
  /// @brief Allocates `bytes` bytes of page-locked host memory aligned to `alignment`.
  /// @param alignment a power of two no larger than 256
  /// @returns host memory that devices can access, or nullptr when bytes is 0
  /// @throws invalid_argument for a bad alignment; out_of_memory when the system cannot lock
  ///         that much memory (cudaErrorMemoryAllocation); cuda_error for other CUDA errors
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_cuda_alignment(alignment, "pinned_resource");
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t status = cudaMallocHost(&p, bytes);
    if (status != cudaSuccess) {
      detail::throw_allocation_failure(status, "cudaMallocHost", bytes, "pinned_resource",
                                       "the system could not page-lock that much host memory");
    }
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_cuda_alignment(alignment)) return nullptr;
    void* p = nullptr;
    const cudaError_t status = cudaMallocHost(&p, bytes);
    return detail::allocation_or_null(status, p);
  }

  /// @brief Frees `p` with cudaFreeHost (which waits for device work that may use it).
  /// nullptr is a no-op; a failure goes to the misuse handler.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const cudaError_t status = cudaFreeHost(p);
    if (status != cudaSuccess)
      detail::report_free_failure(status, "cudaFreeHost", "pinned_resource", p, bytes);
  }

  friend bool operator==(const pinned_resource&, const pinned_resource&) noexcept { return true; }
  friend constexpr void get_property(const pinned_resource&, host_accessible) noexcept {}
  friend constexpr void get_property(const pinned_resource&, device_accessible) noexcept {}
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::pinned_resource, frugal::host_accessible,
                                    frugal::device_accessible>);
static_assert(frugal::try_allocatable<frugal::pinned_resource>);
