// pool_resource growing in place over an upstream that hands out address space in order
// (virtual_resource), and its chunk policy over one that does not.
#include "mr/live_ranges.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

using frugal::pool_options;
using frugal::pool_resource;
using frugal::ref_t;
using frugal::virtual_resource;
using frugal::testing::budget_resource;

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;
using virtual_pool = pool_resource<ref_t<virtual_resource>>;
}  // namespace

TEST_CASE(
    "pool growth: over virtual memory the pool is one segment and blocks merge across pieces") {
  virtual_resource space{{.reserve_bytes = std::size_t{1} << 30, .commit = false}};
  virtual_pool pool{frugal::ref(space)};
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t i = 1; i <= 8; ++i) blocks.emplace_back(pool.allocate(i * 3 * MiB), i * 3 * MiB);
  const std::size_t reserved = pool.stats().bytes_reserved;
  CHECK(pool.segments().size() == 1);  // every growth extended the one segment
  CHECK(reserved == space.stats().bytes_in_use);
  CHECK(reserved < 108 * MiB + 2 * MiB);  // 3 + 6 + ... + 24 MiB, grown by what the tail lacked
  // The blocks came from different pieces; freed, they are one block that serves a request as
  // large as all of them together without growing.
  for (auto [p, n] : blocks) pool.deallocate(p, n);
  CHECK(pool.is_valid());
  REQUIRE(pool.segments().front().blocks.size() == 1);
  CHECK(pool.stats().largest_free_block == reserved);
  void* all = pool.allocate(108 * MiB);
  CHECK(pool.stats().bytes_reserved == reserved);
  pool.deallocate(all, 108 * MiB);
  CHECK(pool.is_valid());
}

TEST_CASE("pool growth: trim gives the free tail back and the upstream decommits it") {
  virtual_resource space{{.reserve_bytes = 256 * MiB}};  // committed: the blocks are writable
  virtual_pool pool{frugal::ref(space)};
  auto* a = static_cast<char*>(pool.allocate(2 * MiB));
  auto* b = static_cast<char*>(pool.allocate(6 * MiB));
  auto* c = static_cast<char*>(pool.allocate(MiB));
  std::memset(a, 1, 2 * MiB);
  std::memset(b, 2, 6 * MiB);
  std::memset(c, 3, MiB);
  CHECK(pool.segments().size() == 1);
  CHECK(pool.stats().bytes_reserved == 10 * MiB);  // pieces of 2, 6 and 2 MiB
  CHECK(space.committed_bytes() == 10 * MiB);

  pool.deallocate(b, 6 * MiB);
  CHECK(pool.trim() == 0);  // b's range is free but c lies after it: not a tail
  pool.deallocate(c, MiB);
  CHECK(pool.trim() == 8 * MiB);  // the pieces of c and b
  CHECK(pool.stats().bytes_reserved == 2 * MiB);
  CHECK(space.committed_bytes() == 2 * MiB);  // pool.trim() let the upstream decommit
  CHECK(space.stats().bytes_in_use == 2 * MiB);
  CHECK(pool.is_valid());
  CHECK(a[0] == 1);
  CHECK(a[2 * MiB - 1] == 1);

  // Growth after a trim extends the same segment again.
  void* d = pool.allocate(4 * MiB);
  CHECK(pool.segments().size() == 1);
  CHECK(pool.stats().bytes_reserved == 6 * MiB);
  pool.deallocate(d, 4 * MiB);
  pool.deallocate(a, 2 * MiB);
  CHECK(pool.trim() == 6 * MiB);
  CHECK(pool.segments().empty());
  CHECK(space.committed_bytes() == 0);
  CHECK(pool.is_valid());
}

TEST_CASE("pool growth: trim keeps release_threshold and a piece partly in use") {
  virtual_resource space{{.reserve_bytes = 256 * MiB, .commit = false}};
  virtual_pool pool{frugal::ref(space), {.release_threshold = 2 * MiB}};
  void* a = pool.allocate(MiB);
  void* b = pool.allocate(7 * MiB);  // the segment is 8 MiB: pieces of 2 and 6 MiB
  CHECK(pool.stats().bytes_reserved == 8 * MiB);
  pool.deallocate(b, 7 * MiB);
  // The free tail starts 1 MiB into the first piece: only the 6 MiB piece can go, and it may.
  CHECK(pool.trim() == 6 * MiB);
  CHECK(pool.stats().bytes_reserved == 2 * MiB);
  CHECK(pool.is_valid());
  pool.deallocate(a, MiB);
  CHECK(pool.trim() == 0);  // giving the last 2 MiB back would go below the threshold
  CHECK(pool.stats().bytes_reserved == 2 * MiB);
}

TEST_CASE("pool growth: at the cap the segment grows to exactly max_size and no further") {
  virtual_resource space{{.reserve_bytes = 256 * MiB, .commit = false}};
  virtual_pool pool{frugal::ref(space), {.max_size = 9 * MiB}};
  void* a = pool.allocate(5 * MiB);
  void* b = pool.allocate(3 * MiB + 512 * 1024);  // the last piece is what is left under the cap
  CHECK(pool.stats().bytes_reserved == 9 * MiB);
  CHECK(pool.segments().size() == 1);
  const auto before = pool.stats();
  CHECK_THROWS_AS(pool.allocate(MiB), frugal::out_of_memory);
  CHECK(pool.stats() == before);
  CHECK(pool.try_allocate(512 * 1024) != nullptr);  // the free tail still serves what fits
  pool.deallocate(a, 5 * MiB);
  void* c = pool.allocate(5 * MiB);  // reuses a's block
  CHECK(pool.stats().bytes_reserved == 9 * MiB);
  pool.deallocate(c, 5 * MiB);
  pool.deallocate(b, 3 * MiB + 512 * 1024);
  CHECK(pool.is_valid());
}

TEST_CASE(
    "pool growth: over an upstream that does not extend, free chunks go back before a new one") {
  budget_resource upstream;
  pool_resource<ref_t<budget_resource>> pool{frugal::ref(upstream), {.chunk_size = MiB}};
  void* a = pool.allocate(MiB);
  void* keep = pool.allocate(MiB);
  pool.deallocate(a, MiB);
  // a's chunk is free but too small for 2 MiB: it is returned, not kept beside the new chunk.
  void* big = pool.allocate(2 * MiB);
  CHECK(pool.stats().bytes_reserved == 3 * MiB);
  CHECK(upstream.in_use() == 3 * MiB);
  CHECK(pool.is_valid());
  pool.deallocate(big, 2 * MiB);
  pool.deallocate(keep, MiB);
  CHECK(pool.trim() == 3 * MiB);
  CHECK(upstream.in_use() == 0);
}

namespace {

/// Random allocations, frees and trims of a pool over never-backed address space (any touch of
/// the managed memory faults), checked against a map of live ranges after every step:
/// no overlap, alignment, counters equal to the model's and the upstream's, one segment, and
/// every refusal justified by the cap.
void growth_fuzz(std::uint64_t seed, int operations, std::size_t live_target, std::size_t cap) {
  virtual_resource space{{.reserve_bytes = std::size_t{64} << 30, .commit = false}};
  virtual_pool pool{frugal::ref(space), {.max_size = cap}};
  std::mt19937_64 rng(seed);
  frugal::testing::live_ranges live;
  std::size_t refusals = 0, trims = 0;
  for (int op = 0; op < operations; ++op) {
    const std::uint64_t dice = rng() % 1000;
    if (dice < 3) {
      pool.trim();
      ++trims;
    } else if (!live.empty() && (live.count() >= 2 * live_target || dice < 480)) {
      const auto r = live.take_random(rng);
      pool.deallocate(r.pointer(), r.size, r.alignment);
    } else {
      const std::size_t size = 1 + rng() % (rng() % 16 == 0 ? 48 * MiB : 64 << 10);
      const std::size_t alignment = std::size_t{1} << (rng() % 13);
      const auto before = pool.stats();
      void* p = pool.try_allocate(size, alignment);
      if (p == nullptr) {
        ++refusals;
        // Refused only when the free tail plus the room left under the cap cannot hold it.
        const auto segments = pool.segments();
        REQUIRE(segments.size() <= 1);
        std::size_t tail = 0;
        if (!segments.empty() && segments[0].blocks.back().free)
          tail = segments[0].blocks.back().size;
        const std::size_t need =
            frugal::detail::align_up(size, 256) + std::max<std::size_t>(alignment, 256) - 256;
        REQUIRE(tail + (cap - before.bytes_reserved) < need);
        REQUIRE(pool.stats() == before);
      } else {
        live.add(p, size, alignment);
      }
    }
    REQUIRE(pool.is_valid());
    const auto s = pool.stats();
    REQUIRE(s.bytes_in_use == live.bytes());
    REQUIRE(s.allocations == live.count());
    REQUIRE(s.bytes_reserved <= cap);
    REQUIRE(s.bytes_reserved == space.stats().bytes_in_use);
    REQUIRE(pool.segments().size() <= 1);  // the upstream hands out in order: one segment
  }
  CHECK(trims > 0);
  if (cap < (std::size_t{1} << 40)) CHECK(refusals > 0);  // the cap was reached
  for (const auto& r : live.all()) pool.deallocate(r.pointer(), r.size, r.alignment);
  REQUIRE(pool.is_valid());
  REQUIRE(pool.trim() == space.stats().bytes_in_use);
  REQUIRE(space.stats().bytes_in_use == 0);
}

}  // namespace

TEST_CASE("pool growth: differential fuzz over never-backed address space") {
  growth_fuzz(1, 20000, 100, std::size_t{1} << 62);  // uncapped
  growth_fuzz(2, 20000, 100, 512 * MiB);             // growth stops at the cap
}

TEST_CASE("pool growth: long differential fuzz, 10^6 operations", "[long]") {
  growth_fuzz(11, 500000, 200, std::size_t{1} << 62);
  growth_fuzz(12, 500000, 200, 1024 * MiB);
}
