#include "gpu/stream_pool_kernels.hpp"

#include <frugal/error.hpp>

namespace frugal::testing {
namespace {

__global__ void stamp_kernel(std::uint32_t* words, std::size_t count, std::uint32_t owner) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < count;
       i += std::size_t{gridDim.x} * blockDim.x)
    words[i] = owner;
}

__global__ void check_kernel(const std::uint32_t* words, std::size_t count, std::uint32_t owner,
                             unsigned long long* foreign) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < count;
       i += std::size_t{gridDim.x} * blockDim.x)
    if (words[i] != owner) atomicAdd(foreign, 1ull);
}

}  // namespace

void stamp_on(cudaStream_t stream, void* block, std::size_t bytes, std::uint32_t owner) {
  // Many passes make the kernel long enough for a wrongly shared block to be written by two
  // owners while the first still checks it.
  const std::size_t count = bytes / sizeof(std::uint32_t);
  for (int pass = 0; pass < 4; ++pass)
    stamp_kernel<<<64, 256, 0, stream>>>(static_cast<std::uint32_t*>(block), count, owner);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

void check_on(cudaStream_t stream, const void* block, std::size_t bytes, std::uint32_t owner,
              unsigned long long* foreign) {
  check_kernel<<<64, 256, 0, stream>>>(static_cast<const std::uint32_t*>(block),
                                       bytes / sizeof(std::uint32_t), owner, foreign);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

}  // namespace frugal::testing
