// frugal's allocators side by side: a pool for general allocations, pages for the KV cache,
// and a step arena for a forward pass's intermediates, all over one simulated device.
#include <frugal/frugal.hpp>

#include <array>
#include <cstdio>

int main() {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  frugal::virtual_resource device{{.reserve_bytes = 4096 * MiB, .commit = false}};
  auto upstream = frugal::ref(device);  // one upstream shared by three allocators

  // General-purpose pool: coalescing, O(1), bookkeeping off-band.
  frugal::pool_resource pool{upstream, {.chunk_size = 256 * MiB}};
  void* embeddings = pool.allocate(100 * MiB);
  void* lm_head = pool.allocate(100 * MiB, 4096);

  // Fixed-size pages with 32-bit ids: what a paged KV cache is made of.
  frugal::block_resource pages{upstream, 2 * MiB, {.initial_blocks = 512, .max_blocks = 512}};
  std::array<frugal::block_id, 8> sequence{};
  pages.allocate_n(sequence);  // all or nothing
  std::printf("first page id %u at %p; %u pages free\n", sequence[0], pages.address_of(sequence[0]),
              pages.num_free());

  // Step arena: every intermediate of a step released at once.
  frugal::arena_resource arena{upstream, {.chunk_size = 64 * MiB}};
  for (int step = 0; step < 3; ++step) {
    const auto start = arena.mark();
    for (int layer = 0; layer < 32; ++layer) (void)arena.allocate(1 * MiB);
    arena.release(start);
  }
  std::printf("arena high-water mark %s, reserved %s\n",
              frugal::format_bytes(arena.high_water_mark()).c_str(),
              frugal::format_bytes(arena.stats().bytes_reserved).c_str());

  pages.deallocate_n(sequence);
  pool.deallocate(lm_head, 100 * MiB, 4096);
  pool.deallocate(embeddings, 100 * MiB);
  const auto s = pool.stats();
  std::printf("pool: peak in use %s, peak reserved %s, now %s in use\n",
              frugal::format_bytes(s.peak_bytes_in_use).c_str(),
              frugal::format_bytes(s.peak_bytes_reserved).c_str(),
              frugal::format_bytes(s.bytes_in_use).c_str());
}
