// KV page transfers over UCX between device page pools (cuda_copy / cuda_ipc). They need a GPU
// and a UCX built with CUDA: Debian's libucx-dev has no CUDA transports, so without one the
// case is skipped and says why.
#include "gpu/gpu.hpp"

#include <frugal/kv/transfer.hpp>
#include <frugal/mr/cuda_resource.hpp>

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace {
namespace kv = frugal::kv;
constexpr kv::layout layout16{
    .num_layers = 2, .num_kv_heads = 2, .head_dim = 64, .page_size = 16, .dtype = kv::dtype::fp16};
}  // namespace

TEST_CASE("transfer: device pages move through UCX's CUDA transports", "[gpu][transfer]") {
  FRUGAL_REQUIRE_DEVICE();
  if (!kv::transfer_available()) {
    std::printf("SKIPPED: this build has no UCX (FRUGAL_ENABLE_UCX)\n");
    std::_Exit(4);
  }
  frugal::cuda_resource gpu;
  kv::page_pool pool{layout16, 8, gpu};
  kv::transfer_agent agent{"gpu", pool, {.failure_detection = kv::peer_failure_detection::process}};
  if (!agent.supports_device_memory()) {
    std::printf(
        "SKIPPED: UCX here has no CUDA memory support (Debian's libucx-dev is built "
        "without cuda_copy/cuda_ipc)\n");
    std::fflush(stdout);
    std::_Exit(4);
  }
  std::vector<kv::page_id> pages;
  for (int i = 0; i < 4; ++i) pages.push_back(pool.allocate());
  const std::size_t bytes = layout16.page_bytes();
  std::vector<std::uint8_t> pattern(bytes);
  for (std::size_t i = 0; i < bytes; ++i) pattern[i] = static_cast<std::uint8_t>(i * 7 + 3);
  REQUIRE(cudaMemcpy(pool.page_address(pages[0]), pattern.data(), bytes, cudaMemcpyHostToDevice) ==
          cudaSuccess);
  REQUIRE(cudaMemcpy(pool.page_address(pages[1]), pattern.data(), bytes, cudaMemcpyHostToDevice) ==
          cudaSuccess);
  agent.load_peer(agent.metadata());
  const std::vector<kv::page_id> from{pages[0], pages[1]}, to{pages[2], pages[3]};
  kv::transfer t = agent.write(from, "gpu", to, 1);
  REQUIRE(t.wait(std::chrono::seconds(20)) == kv::transfer_status::done);
  std::vector<std::uint8_t> back(bytes);
  for (const kv::page_id p : to) {
    REQUIRE(cudaMemcpy(back.data(), pool.page_address(p), bytes, cudaMemcpyDeviceToHost) ==
            cudaSuccess);
    CHECK(back == pattern);
  }
}
