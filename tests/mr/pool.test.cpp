#include "mr/live_ranges.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using frugal::pool_options;
using frugal::pool_resource;
using frugal::ref_t;
using frugal::testing::budget_resource;
using frugal::testing::capture_misuse;
using budget_pool = pool_resource<ref_t<budget_resource>>;

TEST_CASE("pool: blocks are granular, stats add up, everything returns to one free block") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.initial_size = 1 << 20}};
  CHECK(upstream.allocations == 1);
  CHECK(pool.stats().bytes_reserved == (1u << 20));
  CHECK(pool.stats().largest_free_block == (1u << 20));

  void* a = pool.allocate(1);
  void* b = pool.allocate(300);
  void* c = pool.allocate(256);
  CHECK(static_cast<char*>(b) - static_cast<char*>(a) == 256);  // 1 byte takes one granule
  CHECK(static_cast<char*>(c) - static_cast<char*>(b) == 512);  // 300 bytes take two
  auto s = pool.stats();
  CHECK(s.bytes_in_use == 1 + 300 + 256);
  CHECK(s.allocations == 3);
  CHECK(s.largest_free_block == (1u << 20) - 4 * 256);
  CHECK(pool.is_valid());

  pool.deallocate(b, 300);  // middle first: no merge possible
  CHECK(pool.is_valid());
  pool.deallocate(a, 1);    // merges with b's block
  pool.deallocate(c, 256);  // merges both sides into the whole chunk
  CHECK(pool.is_valid());
  s = pool.stats();
  CHECK(s.bytes_in_use == 0);
  CHECK(s.allocations == 0);
  CHECK(s.largest_free_block == (1u << 20));
  CHECK(s.peak_bytes_in_use == 557);
  CHECK(upstream.allocations == 1);  // no growth was needed
}

TEST_CASE("pool: freed space is reused before growing") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 1 << 20}};
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) blocks.push_back(pool.allocate(16 << 10));
  CHECK(upstream.allocations == 1);
  for (void* p : blocks) pool.deallocate(p, 16 << 10);
  void* big = pool.allocate(1 << 20);  // fits only because everything coalesced
  CHECK(upstream.allocations == 1);
  pool.deallocate(big, 1 << 20);
}

TEST_CASE("pool: a remainder under 1/8 of a block stays with it, except at the segment's end") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.initial_size = 1 << 20}};
  void* hole = pool.allocate(64 << 10);
  void* fence = pool.allocate(1024);  // keeps the hole from merging with the free tail
  pool.deallocate(hole, 64 << 10);

  // 60 KiB from the 64 KiB hole: the 4 KiB left (1/16 of it) is not split off.
  void* a = pool.allocate(60 << 10);
  CHECK(a == hole);
  auto segments = pool.segments();
  REQUIRE(segments.size() == 1);
  REQUIRE(segments[0].blocks.size() == 3);
  CHECK(segments[0].blocks[0].size == (64u << 10));
  CHECK(segments[0].blocks[0].requested == (60u << 10));
  CHECK(pool.stats().bytes_in_use == (60u << 10) + 1024);
  CHECK(pool.is_valid());

  // The block is freed with the size asked for; the kept granules are no part of the request.
  capture_misuse capture;
  const auto before = pool.stats();
  pool.deallocate(a, 64 << 10);
  REQUIRE(capture_misuse::reports().size() == 1);
  CHECK(capture_misuse::reports()[0].kind == frugal::misuse_kind::size_mismatch);
  CHECK(capture_misuse::reports()[0].message.find("allocated with 61440 bytes") !=
        std::string::npos);
  CHECK(pool.stats() == before);
  pool.deallocate(a, 60 << 10);
  CHECK(pool.is_valid());

  // 56 KiB leaves 8 KiB, 1/8 of the hole: split off and free.
  void* b = pool.allocate(56 << 10);
  segments = pool.segments();
  REQUIRE(segments[0].blocks.size() == 4);
  CHECK(segments[0].blocks[0].size == (56u << 10));
  CHECK(segments[0].blocks[1].free);
  CHECK(segments[0].blocks[1].size == (8u << 10));

  // At the end of the segment a small remainder is split off all the same: it is where the
  // segment grows, and the free tail must stay whole for that.
  const std::size_t tail = pool.stats().largest_free_block;
  void* c = pool.allocate(tail - 1024);
  segments = pool.segments();
  CHECK(segments[0].blocks.back().free);
  CHECK(segments[0].blocks.back().size == 1024);
  CHECK(pool.is_valid());
  for (auto [p, n] : {std::pair{b, std::size_t{56} << 10}, std::pair{c, tail - 1024},
                      std::pair{fence, std::size_t{1024}}})
    pool.deallocate(p, n);
  CHECK(pool.stats().largest_free_block == (1u << 20));
  CHECK(pool.is_valid());
}

TEST_CASE("pool: any power-of-two alignment") {
  pool_resource<frugal::host_resource> pool{frugal::host_resource{}};
  std::vector<std::pair<void*, std::size_t>> live;
  for (std::size_t alignment = 1; alignment <= (std::size_t{1} << 21); alignment *= 2) {
    void* p = pool.allocate(1000, alignment);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % alignment == 0);
    live.emplace_back(p, alignment);
    REQUIRE(pool.is_valid());
  }
  for (auto [p, alignment] : live) pool.deallocate(p, 1000, alignment);
  CHECK(pool.is_valid());
  CHECK(pool.stats().bytes_in_use == 0);
}

TEST_CASE("pool: growth follows chunk_size and never passes max_size") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 4 << 20, .max_size = 10 << 20}};
  void* a = pool.allocate(1 << 20);
  CHECK(pool.stats().bytes_reserved == (4u << 20));
  void* b = pool.allocate(5 << 20);  // larger than a chunk: a chunk of its own size
  CHECK(pool.stats().bytes_reserved == (9u << 20));
  void* c = pool.allocate(1 << 20);  // fits in the rest of the first chunk
  CHECK(pool.stats().bytes_reserved == (9u << 20));
  void* d = pool.allocate(2 << 20);  // the first chunk is now full
  CHECK(pool.stats().bytes_reserved == (9u << 20));
  void* e = pool.allocate(1 << 20);  // only 1 MiB left under max_size: the chunk shrinks to it
  CHECK(pool.stats().bytes_reserved == (10u << 20));
  CHECK_THROWS_AS(pool.allocate(1), frugal::out_of_memory);
  for (auto [p, n] :
       {std::pair{a, 1 << 20}, {b, 5 << 20}, {c, 1 << 20}, {d, 2 << 20}, {e, 1 << 20}})
    pool.deallocate(p, n);
  CHECK(pool.is_valid());
}

TEST_CASE("pool: allocation beyond max_size throws out_of_memory and changes nothing") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.initial_size = 2 << 20, .max_size = 2 << 20}};
  void* keep = pool.allocate(1 << 20);
  const auto before = pool.stats();
  const int upstream_calls = upstream.allocations;
  try {
    (void)pool.allocate(3 << 20);
    FAIL("allocation beyond max_size succeeded");
  } catch (const frugal::out_of_memory& e) {
    const std::string what = e.what();
    CHECK(e.requested_bytes() == (3u << 20));
    CHECK(what.find("3145728 bytes") != std::string::npos);
    CHECK(what.find("in use 1.00 MiB") != std::string::npos);
    CHECK(what.find("reserved 2.00 MiB") != std::string::npos);
    CHECK(what.find("largest free block 1.00 MiB") != std::string::npos);
    CHECK(what.find("max_size 2.00 MiB") != std::string::npos);
  }
  CHECK(pool.stats() == before);
  CHECK(upstream.allocations == upstream_calls);
  CHECK(pool.try_allocate(3 << 20) == nullptr);
  CHECK(pool.stats() == before);
  CHECK(pool.is_valid());
  pool.deallocate(keep, 1 << 20);
}

TEST_CASE("pool: an upstream that refuses leaves the pool unchanged") {
  budget_resource upstream(1 << 20);
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 1 << 20}};
  void* keep = pool.allocate(512 << 10);
  const auto before = pool.stats();
  CHECK_THROWS_AS(pool.allocate(2 << 20), frugal::out_of_memory);
  CHECK(pool.stats() == before);
  CHECK(pool.is_valid());
  pool.deallocate(keep, 512 << 10);
}

TEST_CASE("pool: the request still fits when the upstream cannot give a whole chunk") {
  budget_resource upstream(3 << 20);
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 8 << 20}};
  void* p = pool.allocate(2 << 20);
  CHECK(pool.stats().bytes_reserved == (2u << 20));
  pool.deallocate(p, 2 << 20);
}

TEST_CASE("pool: bad alignment and overflowing sizes are rejected without change") {
  pool_resource<frugal::host_resource> pool{frugal::host_resource{}};
  void* keep = pool.allocate(100);
  const auto before = pool.stats();
  CHECK_THROWS_AS(pool.allocate(100, 3), frugal::invalid_argument);
  CHECK_THROWS_AS(pool.allocate(static_cast<std::size_t>(-1) - 100), frugal::out_of_memory);
  CHECK(pool.try_allocate(100, 24) == nullptr);
  CHECK(pool.try_allocate(static_cast<std::size_t>(-1)) == nullptr);
  CHECK(pool.stats() == before);
  pool.deallocate(keep, 100);
  CHECK_THROWS_AS((pool_resource<frugal::host_resource>{frugal::host_resource{},
                                                        {.initial_size = 2, .max_size = 1}}),
                  frugal::invalid_argument);
}

TEST_CASE("pool: trim returns fully free chunks above release_threshold") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 1 << 20, .release_threshold = 1 << 20}};
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(pool.allocate(1 << 20));
  CHECK(pool.stats().bytes_reserved == (4u << 20));
  pool.deallocate(blocks[0], 1 << 20);
  pool.deallocate(blocks[1], 1 << 20);
  pool.deallocate(blocks[2], 1 << 20);
  // The chunk still in use counts towards the threshold, so all three free chunks go.
  CHECK(pool.trim() == (3u << 20));
  CHECK(pool.stats().bytes_reserved == (1u << 20));
  CHECK(upstream.in_use() == (1u << 20));
  CHECK(pool.is_valid());
  pool.deallocate(blocks[3], 1 << 20);
  CHECK(pool.trim() == 0);  // the last chunk is the threshold itself
  CHECK(pool.stats().bytes_reserved == (1u << 20));
  void* again = pool.allocate(1 << 20);  // reuses the kept chunk
  CHECK(upstream.allocations == 4);
  pool.deallocate(again, 1 << 20);
  budget_pool no_threshold{frugal::ref(upstream), {.chunk_size = 1 << 20}};
  void* p = no_threshold.allocate(100);
  CHECK(no_threshold.trim() == 0);  // a chunk with a live block stays
  no_threshold.deallocate(p, 100);
  CHECK(no_threshold.trim() == (1u << 20));
  CHECK(no_threshold.stats().bytes_reserved == 0);
}

TEST_CASE("pool: misuse is reported and never corrupts the free lists") {
  pool_resource<frugal::host_resource> pool{frugal::host_resource{}};
  void* a = pool.allocate(1000);
  void* b = pool.allocate(1000);
  const auto before = pool.stats();
  capture_misuse capture;
  auto& reports = capture_misuse::reports();

  int outside = 0;
  pool.deallocate(&outside, 4);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[0].message.find("unknown pointer") != std::string::npos);

  pool.deallocate(static_cast<char*>(a) + 256, 1000);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[1].message.find("middle of a live block") != std::string::npos);

  pool.deallocate(a, 999);
  REQUIRE(reports.size() == 3);
  CHECK(reports[2].kind == frugal::misuse_kind::size_mismatch);
  CHECK(reports[2].message.find("allocated with 1000 bytes, freed with 999") != std::string::npos);
  CHECK(pool.stats() == before);
  CHECK(pool.is_valid());

  pool.deallocate(b, 1000);
  pool.deallocate(b, 1000);
  REQUIRE(reports.size() == 4);
  CHECK(reports[3].kind == frugal::misuse_kind::double_free);
  CHECK(reports[3].message.find("double free") != std::string::npos);
  CHECK(pool.is_valid());
  CHECK(pool.stats().allocations == 1);
  pool.deallocate(a, 1000);
  CHECK(pool.stats().bytes_in_use == 0);
}

TEST_CASE("pool: properties come from the upstream") {
  using device_pool = pool_resource<frugal::testing::fake_device_resource>;
  STATIC_REQUIRE(frugal::resource_with<device_pool, frugal::device_accessible>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<device_pool, frugal::host_accessible>);
}

namespace {
/// Random allocate/free streams against a model of the live ranges; checks every invariant.
void differential_fuzz(std::uint64_t seed, int operations, std::size_t max_bytes, int check_every) {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 0, .max_size = std::size_t{1} << 34}};
  std::mt19937_64 rng(seed);
  frugal::testing::live_ranges live;
  for (int op = 0; op < operations; ++op) {
    if (!live.empty() && rng() % 100 < 50) {
      const auto r = live.take_random(rng);
      pool.deallocate(r.pointer(), r.size, r.alignment);
    } else {
      const std::size_t size = 1 + rng() % (rng() % 8 == 0 ? max_bytes : 4096);
      const std::size_t alignment = std::size_t{1} << (rng() % 14);
      void* p = pool.try_allocate(size, alignment);
      REQUIRE(p != nullptr);
      live.add(p, size, alignment);
    }
    if (op % check_every == 0) {
      REQUIRE(pool.is_valid());
      const auto s = pool.stats();
      REQUIRE(s.bytes_in_use == live.bytes());
      REQUIRE(s.allocations == live.count());
      REQUIRE(s.bytes_reserved == upstream.in_use());
    }
  }
  for (const auto& r : live.all()) pool.deallocate(r.pointer(), r.size, r.alignment);
  REQUIRE(pool.is_valid());
  REQUIRE(pool.trim() == upstream.in_use());
  REQUIRE(upstream.in_use() == 0);
}
}  // namespace

TEST_CASE("pool: differential fuzz against a map of live ranges") {
  differential_fuzz(1, 20000, 1 << 20, 1);
  differential_fuzz(2, 20000, 64 << 10, 7);
}

TEST_CASE("pool: long differential fuzz", "[long]") {
  for (std::uint64_t seed = 10; seed < 20; ++seed) differential_fuzz(seed, 200000, 4 << 20, 97);
}

TEST_CASE("pool: segments() reports every chunk and block in address order") {
  budget_resource upstream;
  budget_pool pool{frugal::ref(upstream), {.chunk_size = 1 << 20}};
  void* a = pool.allocate(1000);
  void* b = pool.allocate(3000);
  pool.deallocate(a, 1000);
  void* big = pool.allocate(2 << 20);  // a second chunk of its own
  const auto segments = pool.segments();
  REQUIRE(segments.size() == 2);
  CHECK(segments[0].size == (1u << 20));
  REQUIRE(segments[0].blocks.size() == 3);
  CHECK(segments[0].blocks[0].free);
  CHECK(segments[0].blocks[0].size == 1024);
  CHECK(segments[0].blocks[1].address == b);
  CHECK(segments[0].blocks[1].offset == 1024);
  CHECK(segments[0].blocks[1].requested == 3000);
  CHECK_FALSE(segments[0].blocks[1].free);
  CHECK(segments[0].blocks[2].free);
  CHECK(segments[0].blocks[2].offset + segments[0].blocks[2].size == (1u << 20));
  REQUIRE(segments[1].blocks.size() == 1);
  CHECK(segments[1].blocks[0].address == big);
  pool.deallocate(b, 3000);
  pool.deallocate(big, 2 << 20);
}

TEST_CASE("pool: a chunk or block beyond the 1 TiB limit is refused naming the limit") {
  // Block sizes count 256-byte granules in 32 bits: the largest is just under 1 TiB.
  const std::size_t beyond = std::size_t{2} << 40;
  try {
    pool_resource<frugal::host_resource> pool{frugal::host_resource{}, {.initial_size = beyond}};
    FAIL("a 2 TiB initial reservation was accepted");
  } catch (const frugal::invalid_argument& e) {
    CHECK(std::string(e.what()).find("largest chunk") != std::string::npos);
    CHECK(std::string(e.what()).find("32 bits") != std::string::npos);
  }
  pool_resource<frugal::host_resource> pool{frugal::host_resource{}};
  try {
    (void)pool.allocate(beyond);
    FAIL("a 2 TiB block was allocated");
  } catch (const frugal::out_of_memory& e) {
    CHECK(std::string(e.what()).find("largest block") != std::string::npos);
  }
  CHECK(pool.stats().bytes_reserved == 0);
}
