#include "mr/test_resources.hpp"

#include <frugal/mr/arena.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

using frugal::arena_resource;
using frugal::ref_t;
using frugal::testing::budget_resource;
using budget_arena = arena_resource<ref_t<budget_resource>>;

TEST_CASE("arena: allocation bumps a pointer within a chunk") {
  budget_resource upstream;
  budget_arena arena{frugal::ref(upstream), {.initial_size = 1 << 20}};
  auto* a = static_cast<char*>(arena.allocate(100));
  auto* b = static_cast<char*>(arena.allocate(100));
  auto* c = static_cast<char*>(arena.allocate(10, 16));
  CHECK(b - a == 256);  // default alignment 256
  CHECK(c - b == 112);  // 16-aligned right after b's 100 bytes
  CHECK(arena.bytes_in_use() == 256 + 112 + 10);
  CHECK(arena.stats().allocations == 3);
  CHECK(upstream.allocations == 1);
  std::memset(a, 1, 100);
}

TEST_CASE("arena: mark and release free everything after the mark at once") {
  budget_resource upstream;
  budget_arena arena{frugal::ref(upstream), {.chunk_size = 64 << 10}};
  void* weights = arena.allocate(1000);
  const auto m = arena.mark();
  const std::size_t in_use = arena.bytes_in_use();
  for (int i = 0; i < 100; ++i) (void)arena.allocate(4096);  // spills into several chunks
  CHECK(arena.num_chunks() > 1);
  const std::size_t chunks = arena.num_chunks();
  arena.release(m);
  CHECK(arena.bytes_in_use() == in_use);
  CHECK(arena.stats().allocations == 1);
  CHECK(arena.num_chunks() == chunks);  // capacity kept for the next step
  const int calls = upstream.allocations;
  for (int i = 0; i < 100; ++i) (void)arena.allocate(4096);  // reuses the kept chunks
  CHECK(upstream.allocations == calls);
  CHECK(arena.high_water_mark() >= 100 * 4096);
  arena.release(m);
  void* next = arena.allocate(1000);
  CHECK(static_cast<char*>(next) - static_cast<char*>(weights) == 1024);
}

TEST_CASE("arena: deallocating the most recent block reclaims it, others wait") {
  arena_resource<frugal::host_resource> arena{frugal::host_resource{}};
  void* a = arena.allocate(512);
  void* b = arena.allocate(512);
  arena.deallocate(b, 512);
  CHECK(arena.bytes_in_use() == 512);
  void* c = arena.allocate(512);
  CHECK(c == b);
  arena.deallocate(a, 512);  // not the most recent: waits for release/reset
  CHECK(arena.bytes_in_use() == 1024);
  CHECK(arena.stats().allocations == 1);
}

TEST_CASE("arena: reset keeps the capacity the cycle needed and returns the rest") {
  budget_resource upstream;
  budget_arena arena{frugal::ref(upstream), {.chunk_size = 1 << 20}};
  for (int i = 0; i < 3; ++i) (void)arena.allocate(1 << 20);  // three chunks
  const auto m = arena.mark();
  CHECK(arena.num_chunks() == 3);
  arena.reset();  // the cycle needed 3 MiB: all three chunks stay
  CHECK(arena.num_chunks() == 3);
  CHECK(arena.bytes_in_use() == 0);
  CHECK_THROWS_AS(arena.release(m), frugal::invalid_argument);  // stale after reset
  (void)arena.allocate(1000);
  arena.reset();  // the cycle needed 1000 bytes: one chunk stays
  CHECK(arena.num_chunks() == 1);
  CHECK(upstream.in_use() == (1u << 20));
  CHECK(arena.stats().bytes_reserved == (1u << 20));
  arena.reset();  // nothing needed: everything goes back
  CHECK(arena.num_chunks() == 0);
  CHECK(upstream.in_use() == 0);
}

TEST_CASE("arena: a marker ahead of the current position is rejected without change") {
  arena_resource<frugal::host_resource> arena{frugal::host_resource{}};
  const auto start = arena.mark();
  (void)arena.allocate(1000);
  const auto later = arena.mark();
  arena.release(start);
  const auto before = arena.stats();
  CHECK_THROWS_AS(arena.release(later), frugal::invalid_argument);
  CHECK(arena.stats() == before);
}

TEST_CASE("arena: max_size caps growth with out_of_memory and no change") {
  budget_resource upstream;
  budget_arena arena{frugal::ref(upstream), {.chunk_size = 1 << 20, .max_size = 2 << 20}};
  (void)arena.allocate(1 << 20);
  (void)arena.allocate(512 << 10);
  const auto before = arena.stats();
  try {
    (void)arena.allocate(1 << 20);
    FAIL("allocation beyond max_size succeeded");
  } catch (const frugal::out_of_memory& e) {
    CHECK(e.requested_bytes() == (1u << 20));
    CHECK(std::string(e.what()).find("reserved 2.00 MiB") != std::string::npos);
  }
  CHECK(arena.stats() == before);
  CHECK(arena.try_allocate(1 << 20) == nullptr);
  CHECK(arena.try_allocate(64, 3) == nullptr);
  CHECK(arena.stats() == before);
  CHECK(arena.allocate(512 << 10) != nullptr);  // what is left still serves
}

TEST_CASE("arena: alignments larger than the default are honoured across chunks") {
  arena_resource<frugal::host_resource> arena{frugal::host_resource{}, {.chunk_size = 64 << 10}};
  for (std::size_t alignment = 1; alignment <= (std::size_t{1} << 16); alignment *= 2) {
    void* p = arena.allocate(3000, alignment);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % alignment == 0);
  }
}
