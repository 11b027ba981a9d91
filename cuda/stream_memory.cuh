// Stream-ordered device memory that a launcher needs for itself (a reduction's scratch, a staged
// copy list, a counter), owned by an object so that every way out of the launcher, an exception
// included, gives it back on the same stream:
//   cuda_detail::stream_allocation scratch(8, stream, "quant::quantize_device");
//   kernel<<<grid, block, 0, stream>>>(static_cast<unsigned*>(scratch.get()));
#pragma once

#include <frugal/error.hpp>
#include <frugal/mr/detail/cuda_support.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>

namespace frugal::cuda_detail {

/// cudaMallocAsync'd memory freed with cudaFreeAsync on the same stream when it goes out of scope
/// (the free is stream-ordered: kernels queued before the destructor runs still see the memory).
class stream_allocation {
 public:
  /// @param bytes how much to allocate (positive)
  /// @param stream the stream the memory is allocated, used and freed on
  /// @param who the calling function, named in the error
  /// @throws out_of_memory when the stream's pool cannot supply `bytes`, cuda_error for any other
  ///         failure; the runtime's error state is cleared either way, so the failure does not
  ///         surface again at the next launch's check.
  stream_allocation(std::size_t bytes, cudaStream_t stream, const char* who) : stream_(stream) {
    const cudaError_t status = cudaMallocAsync(&p_, bytes, stream);
    if (status != cudaSuccess) {
      p_ = nullptr;
      ::frugal::detail::throw_allocation_failure(
          status, "cudaMallocAsync", bytes, who,
          ::frugal::detail::device_memory_state(::frugal::detail::current_device_or_zero()));
    }
  }
  ~stream_allocation() {
    if (p_ != nullptr && cudaFreeAsync(p_, stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  stream_allocation(const stream_allocation&) = delete;
  stream_allocation& operator=(const stream_allocation&) = delete;

  void* get() const noexcept { return p_; }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace frugal::cuda_detail
