// Where a kernel reaches a kv::page_pool's pages, shared by the KV copy and attention launchers.
#pragma once

#include <frugal/error.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace frugal::cuda_detail {

/// @brief The device address of `pool`'s first page: its own address, or the device mapping of
/// registered or pinned host memory.
/// @throws invalid_argument "WHO: POOL memory is pageable host memory, ...HINT" when no kernel can
///   reach the pages
inline std::byte* pool_device_base(const kv::page_pool& pool, const std::string& who,
                                   const std::string& pool_name, const char* hint = "") {
  std::byte* base = pool.memory().data();
  cudaPointerAttributes attributes{};
  FRUGAL_CUDA_TRY(cudaPointerGetAttributes(&attributes, base));
  FRUGAL_EXPECTS(attributes.type != cudaMemoryTypeUnregistered,
                 who + ": " + pool_name +
                     " memory is pageable host memory, which a kernel cannot reach; use "
                     "device, managed or pinned memory" +
                     hint,
                 invalid_argument);
  if (attributes.type == cudaMemoryTypeHost && attributes.devicePointer != nullptr)
    return static_cast<std::byte*>(attributes.devicePointer);
  return base;
}

}  // namespace frugal::cuda_detail
