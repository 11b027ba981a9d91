// stream_pool_resource on a device: two streams allocate, stamp every block they hold with a
// kernel, check it and free it in stream order, with no synchronization of their own. A block
// handed to the second stream before the first one's work on it finished would show up as a
// word written by two owners.
#include "gpu/gpu.hpp"
#include "gpu/stream_pool_kernels.hpp"

#include <frugal/mr/cuda_stream_policy.hpp>
#include <frugal/mr/cuda_virtual_resource.hpp>
#include <frugal/mr/stream_pool.hpp>

#include <cuda_runtime_api.h>

#include <random>
#include <vector>

TEST_CASE("stream pool on a device: two streams never write the same bytes at once", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  constexpr std::size_t MiB = std::size_t{1} << 20;
  frugal::cuda_virtual_resource gpu{{.reserve_bytes = 1024 * MiB}};
  {
    // A small cap makes the streams reuse each other's blocks all the time.
    frugal::stream_pool_resource pool{frugal::ref(gpu), frugal::cuda_stream_policy{},
                                      frugal::pool_options{.max_size = 64 * MiB}};
    cudaStream_t streams[2];
    for (auto& s : streams) FRUGAL_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void* counter = nullptr;
    FRUGAL_CUDA_TRY(cudaMalloc(&counter, sizeof(unsigned long long)));
    auto* foreign = static_cast<unsigned long long*>(counter);
    FRUGAL_CUDA_TRY(cudaMemset(foreign, 0, sizeof *foreign));

    struct held {
      void* p;
      std::size_t bytes;
      std::uint32_t owner;
    };
    std::vector<held> live[2];
    std::mt19937_64 rng(7);
    std::uint32_t next_owner = 1;
    for (int step = 0; step < 4000; ++step) {
      const int s = static_cast<int>(rng() % 2);
      auto& mine = live[s];
      if (!mine.empty() && (mine.size() > 8 || rng() % 2 == 0)) {
        const held h = mine.back();
        mine.pop_back();
        frugal::testing::check_on(streams[s], h.p, h.bytes, h.owner, foreign);
        pool.deallocate_async(h.p, h.bytes, 256, streams[s]);
      } else {
        const std::size_t bytes = (1 + rng() % 1024) * 4096;
        void* p = pool.try_allocate_async(bytes, 256, streams[s]);
        if (p == nullptr) continue;
        const std::uint32_t owner = next_owner++;
        frugal::testing::stamp_on(streams[s], p, bytes, owner);
        mine.push_back({p, bytes, owner});
      }
    }
    for (int s = 0; s < 2; ++s)
      for (const held& h : live[s]) {
        frugal::testing::check_on(streams[s], h.p, h.bytes, h.owner, foreign);
        pool.deallocate_async(h.p, h.bytes, 256, streams[s]);
      }
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    unsigned long long words = 0;
    FRUGAL_CUDA_TRY(cudaMemcpy(&words, foreign, sizeof words, cudaMemcpyDeviceToHost));
    CHECK(words == 0);
    CHECK(pool.is_valid());
    CHECK(pool.pool().segments().size() == 1);  // grown in place over the reserved range
    for (auto s : streams) {
      pool.release_stream(s);  // the rule: before the stream is destroyed
      FRUGAL_CUDA_TRY(cudaStreamDestroy(s));
    }
    FRUGAL_CUDA_TRY(cudaFree(foreign));
  }
  CHECK(gpu.stats().bytes_in_use == 0);
}
