// Kernels of the stream-ordered pool's device test: stamp a block with its owner, count the
// words of a block that another owner wrote.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace frugal::testing {
/// Writes `owner` into every 32-bit word of the block, on `stream`.
void stamp_on(cudaStream_t stream, void* block, std::size_t bytes, std::uint32_t owner);
/// Adds to *foreign (device memory) the number of words of the block that are not `owner`.
void check_on(cudaStream_t stream, const void* block, std::size_t bytes, std::uint32_t owner,
              unsigned long long* foreign);
}  // namespace frugal::testing
