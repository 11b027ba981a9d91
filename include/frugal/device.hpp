// frugal/device.hpp: small device utilities compiled into frugal::cuda (cuda/device.cu).
// snippet: cuda
//   if (frugal::device::count() == 0) { /* no GPU: skip device work */ }
//   frugal::device::fill_bytes(ptr, bytes, 0xAB, stream);
#pragma once

#include <frugal/config.hpp>

#include <cstddef>
#include <cstdint>

#if FRUGAL_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace frugal::device {

#if FRUGAL_HAS_CUDA
/// @brief Number of usable CUDA devices; 0 without a driver or a device (never throws).
int count() noexcept;

/// @brief Sets `bytes` bytes at device pointer `p` to `value` with a kernel on `stream`.
/// @throws frugal::cuda_error when the launch fails.
void fill_bytes(void* p, std::size_t bytes, std::uint8_t value, cudaStream_t stream = nullptr);

/// @brief Counts bytes equal to `value` in [p, p + bytes) on the device (synchronizes `stream`).
/// Its 8-byte counter comes from the stream's pool and goes back to it on every path.
/// @throws frugal::out_of_memory when the counter cannot be allocated, frugal::cuda_error when
/// a call or the launch fails (the runtime's last error is cleared either way).
std::size_t count_bytes(const void* p, std::size_t bytes, std::uint8_t value,
                        cudaStream_t stream = nullptr);
#endif

}  // namespace frugal::device
