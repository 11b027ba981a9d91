// Device utilities: device discovery and byte fill/count kernels used by tests and debug fills.
#include "stream_memory.cuh"

#include <frugal/device.hpp>
#include <frugal/error.hpp>

#include <cuda_runtime_api.h>

namespace frugal::device {
namespace {

/// Launch shape for the byte kernels (grid-stride loops).
struct byte_kernel_tuning {
  int threads_per_block = 256;
  int max_blocks = 4096;
};

__global__ void fill_kernel(std::uint8_t* p, std::size_t bytes, std::uint8_t value) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += stride)
    p[i] = value;
}

__global__ void count_kernel(const std::uint8_t* p, std::size_t bytes, std::uint8_t value,
                             unsigned long long* result) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  unsigned long long local = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += stride)
    local += (p[i] == value);
  if (local != 0) atomicAdd(result, local);
}

int blocks_for(std::size_t bytes, const byte_kernel_tuning& t) {
  const std::size_t needed = (bytes + t.threads_per_block - 1) / t.threads_per_block;
  return static_cast<int>(needed < static_cast<std::size_t>(t.max_blocks) ? needed : t.max_blocks);
}

}  // namespace

int count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void fill_bytes(void* p, std::size_t bytes, std::uint8_t value, cudaStream_t stream) {
  if (bytes == 0) return;
  const byte_kernel_tuning tuning{};
  fill_kernel<<<blocks_for(bytes, tuning), tuning.threads_per_block, 0, stream>>>(
      static_cast<std::uint8_t*>(p), bytes, value);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

std::size_t count_bytes(const void* p, std::size_t bytes, std::uint8_t value, cudaStream_t stream) {
  if (bytes == 0) return 0;
  unsigned long long host = 0;
  {
    // Freed on `stream` on every way out, a failed launch included.
    const cuda_detail::stream_allocation counter(sizeof(unsigned long long), stream,
                                                 "device::count_bytes");
    auto* result = static_cast<unsigned long long*>(counter.get());
    FRUGAL_CUDA_TRY(cudaMemsetAsync(result, 0, sizeof *result, stream));
    const byte_kernel_tuning tuning{};
    count_kernel<<<blocks_for(bytes, tuning), tuning.threads_per_block, 0, stream>>>(
        static_cast<const std::uint8_t*>(p), bytes, value, result);
    FRUGAL_CUDA_TRY(cudaGetLastError());
    FRUGAL_CUDA_TRY(cudaMemcpyAsync(&host, result, sizeof host, cudaMemcpyDeviceToHost, stream));
  }
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(stream));
  return static_cast<std::size_t>(host);
}

}  // namespace frugal::device
