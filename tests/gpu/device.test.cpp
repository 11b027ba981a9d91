#include "gpu/gpu.hpp"

#include <frugal/error.hpp>

#include <cuda_runtime_api.h>

TEST_CASE("device: fill_bytes and count_bytes agree", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  const std::size_t bytes = (std::size_t{1} << 24) + 17;
  void* p = nullptr;
  FRUGAL_CUDA_TRY(cudaMalloc(&p, bytes));
  frugal::device::fill_bytes(p, bytes, 0xAB);
  frugal::device::fill_bytes(p, 17, 0x00);
  CHECK(frugal::device::count_bytes(p, bytes, 0xAB) == bytes - 17);
  CHECK(frugal::device::count_bytes(p, bytes, 0x00) == 17);
  FRUGAL_CUDA_TRY(cudaFree(p));
}
