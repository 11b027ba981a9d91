// frugal/mr/cuda_async_resource.hpp: stream-ordered device memory from cudaMallocAsync, drawn
// from the device's current memory pool; synchronous use works on a stream fixed at construction.
// snippet: cuda
//   frugal::cuda_async_resource gpu{stream};
//   void* p = gpu.allocate_async(bytes, 256, stream);   // usable by work queued on `stream`
//   launch_kernel(p, stream);                          // a kernel of one's own, on `stream`
//   gpu.deallocate_async(p, bytes, 256, stream);
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/cuda_async_resource.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/cuda_support.hpp>

#include <cuda/stream_ref>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace frugal {

/// @brief Device memory from cudaMallocAsync / cudaFreeAsync. See docs/concepts.md#resource;
/// it also models frugal::stream_ordered_resource (allocate_async / deallocate_async).
///
/// Synchronous allocate allocates on the stored stream and then synchronizes it, so the memory
/// is ready for any stream; synchronous deallocate frees on the stored stream without waiting
/// (the caller guarantees that no work still uses the memory, as with any deallocate).
/// The *_async members order the operation on the stream given to them instead, which must
/// belong to the resource's device.
/// Two resources compare equal when they have the same stream and device. Alignments up to 256
/// bytes are accepted; larger ones throw invalid_argument. Zero bytes gives nullptr.
/// Thread-safe: it has no mutable state. The stream must outlive the resource.
class cuda_async_resource {
 public:
  /// @brief A resource on the legacy default stream 0 and the current device (0 when none can be
  /// queried; allocate then reports the real error).
  cuda_async_resource() noexcept : cuda_async_resource(cudaStream_t{}) {}

  /// @brief A resource on `stream` and the stream's device (for stream 0, the current device).
  explicit cuda_async_resource(cudaStream_t stream) noexcept
      : stream_(stream), device_(device_of(stream)) {}

  /// @brief A resource on `stream`, which belongs to device ordinal `device`.
  cuda_async_resource(cudaStream_t stream, int device) noexcept
      : stream_(stream), device_(device) {}

  /// @brief Allocates on the stored stream and synchronizes it before returning.
  /// @param alignment a power of two no larger than 256
  /// @returns device memory ready for use on any stream, or nullptr when bytes is 0
  /// @throws invalid_argument for a bad alignment; out_of_memory when the pool cannot grow
  ///         (cudaErrorMemoryAllocation); cuda_error for other CUDA errors
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    void* p = allocate_async(bytes, alignment, ::cuda::stream_ref{stream_});
    if (p == nullptr) return nullptr;
    const detail::scoped_device on(device_);
    const cudaError_t status = cudaStreamSynchronize(stream_);
    if (status != cudaSuccess) {
      (void)cudaFreeAsync(p, stream_);
      (void)cudaGetLastError();
      FRUGAL_FAIL(std::string("cuda_async_resource: cudaStreamSynchronize "
                              "failed: ") +
                      cudaGetErrorName(status) + ": " + cudaGetErrorString(status),
                  cuda_error);
    }
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    try {
      return allocate(bytes, alignment);
    } catch (...) {
      return nullptr;
    }
  }

  /// @brief Frees `p` on the stored stream with cudaFreeAsync; does not wait. nullptr is a
  /// no-op; a failure goes to the misuse handler.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    deallocate_async(p, bytes, alignment, ::cuda::stream_ref{stream_});
  }

  /// @brief Allocates in stream order on `stream`: the memory may be used by work queued on
  /// `stream` after this call (other streams must first wait for `stream`).
  /// @param alignment a power of two no larger than 256
  /// @returns device memory, or nullptr when bytes is 0
  /// @throws as allocate
  void* allocate_async(std::size_t bytes, std::size_t alignment, ::cuda::stream_ref stream) {
    detail::check_cuda_alignment(alignment, "cuda_async_resource");
    if (bytes == 0) return nullptr;
    const detail::scoped_device on(device_);
    on.check("cuda_async_resource", device_);
    void* p = nullptr;
    const cudaError_t status = cudaMallocAsync(&p, bytes, stream.get());
    if (status != cudaSuccess) {
      detail::throw_allocation_failure(status, "cudaMallocAsync", bytes, "cuda_async_resource",
                                       memory_state());
    }
    return p;
  }

  /// @brief Frees `p` in stream order on `stream`: the memory is reused only after work queued
  /// on `stream` before this call has finished. nullptr is a no-op; a failure goes to the misuse
  /// handler.
  void deallocate_async(void* p, std::size_t bytes, [[maybe_unused]] std::size_t alignment,
                        ::cuda::stream_ref stream) noexcept {
    if (p == nullptr) return;
    const detail::scoped_device on(device_);
    const cudaError_t status = cudaFreeAsync(p, stream.get());
    if (status != cudaSuccess)
      detail::report_free_failure(status, "cudaFreeAsync", "cuda_async_resource", p, bytes);
  }

  /// @brief The stream used by allocate and deallocate.
  cudaStream_t stream() const noexcept { return stream_; }
  /// @brief The device ordinal this resource allocates on.
  int device() const noexcept { return device_; }

  friend bool operator==(const cuda_async_resource& a, const cuda_async_resource& b) noexcept {
    return a.stream_ == b.stream_ && a.device_ == b.device_;
  }
  friend constexpr void get_property(const cuda_async_resource&, device_accessible) noexcept {}

 private:
  static int device_of(cudaStream_t stream) noexcept {
#if CUDART_VERSION >= 12080
    if (stream != nullptr) {
      int device = 0;
      if (cudaStreamGetDevice(stream, &device) == cudaSuccess) return device;
      (void)cudaGetLastError();
    }
#endif
    (void)stream;
    return detail::current_device_or_zero();
  }

  /// The device's free memory plus what its current pool holds (the device is current).
  std::string memory_state() const {
    std::string state = detail::device_memory_state(device_);
    cudaMemPool_t pool = nullptr;
    std::uint64_t reserved = 0;  // the attributes are cuuint64_t
    std::uint64_t used = 0;
    if (cudaDeviceGetMemPool(&pool, device_) == cudaSuccess &&
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) ==
            cudaSuccess &&
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) == cudaSuccess) {
      state += "; memory pool: in use " + format_bytes(static_cast<std::size_t>(used)) +
               ", reserved " + format_bytes(static_cast<std::size_t>(reserved));
    } else {
      (void)cudaGetLastError();
    }
    return state;
  }

  cudaStream_t stream_;
  int device_;
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::cuda_async_resource, frugal::device_accessible>);
static_assert(frugal::stream_ordered_resource<frugal::cuda_async_resource>);
static_assert(!frugal::has_property_v<frugal::cuda_async_resource, frugal::host_accessible>);
static_assert(frugal::try_allocatable<frugal::cuda_async_resource>);
