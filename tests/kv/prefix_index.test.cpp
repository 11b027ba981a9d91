#include <frugal/kv/prefix_index.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <vector>

using frugal::kv::page_id;
using frugal::kv::page_pool;
using frugal::kv::prefix_index;

namespace {
frugal::kv::layout small_layout() {
  return {.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .page_size = 4};
}

// Allocates `n` pages, registers page i under hash 100 + i, and lets one sequence release them
// all: each becomes cached.
std::vector<page_id> release_registered(page_pool& pool, prefix_index& index, std::size_t n) {
  std::vector<page_id> pages;
  for (std::size_t i = 0; i < n; ++i) {
    pages.push_back(pool.allocate());
    index.insert(pages.back(), 100 + pages.back());
  }
  index.on_release(pages, [&](page_id p) { return pool.release(p) == 0; });
  return pages;
}
}  // namespace

TEST_CASE("prefix_index: a sequence's pages are evicted tail first, older releases first") {
  frugal::host_resource host;
  page_pool pool{small_layout(), 8, host};
  prefix_index index{8, true};
  const std::vector<page_id> first = release_registered(pool, index, 3);
  const std::vector<page_id> second = release_registered(pool, index, 2);
  REQUIRE(index.cached_count() == 5);
  CHECK(index.is_valid(pool));
  const std::vector<page_id> expected{first[2], first[1], first[0], second[1], second[0]};
  for (const page_id p : expected) {
    const std::uint64_t h = index.hash_of(p);
    REQUIRE(h != 0);
    CHECK(index.evict() == p);
    CHECK(index.hash_of(p) == 0);
    CHECK(index.find(h) == prefix_index::no_page);
    pool.retain(p);  // the cache hands an evicted page to its new holder
  }
  CHECK(index.cached_count() == 0);
  CHECK(index.is_valid(pool));
}

TEST_CASE("prefix_index: a hit takes a page out of the eviction order; held pages never enter") {
  frugal::host_resource host;
  page_pool pool{small_layout(), 8, host};
  prefix_index index{8, true};
  const std::vector<page_id> pages = release_registered(pool, index, 3);
  index.on_hit(pages[2]);  // next in line
  pool.retain(pages[2]);
  CHECK(index.cached_count() == 2);
  CHECK(index.is_valid(pool));
  CHECK(index.evict() == pages[1]);
  pool.retain(pages[1]);
  // A page another holder keeps (drop returns false) is not queued.
  pool.retain(pages[2]);
  const std::vector<page_id> shared{pages[2]};
  index.on_release(shared, [&](page_id p) { return pool.release(p) == 0; });
  CHECK(index.cached_count() == 1);
  CHECK(index.evict() == pages[0]);
}

TEST_CASE("prefix_index: a hash registers one page, a page one hash; clear forgets them all") {
  frugal::host_resource host;
  page_pool pool{small_layout(), 4, host};
  prefix_index index{4, true};
  const page_id a = pool.allocate(), b = pool.allocate();
  index.insert(a, 7);
  index.insert(b, 7);  // the hash has a page: ignored
  index.insert(a, 8);  // the page has a hash: ignored
  CHECK(index.find(7) == a);
  CHECK(index.find(8) == prefix_index::no_page);
  CHECK(index.hash_of(b) == 0);
  const std::vector<page_id> pages{a, b};
  index.on_release(pages, [&](page_id p) {
    if (pool.release(p) != 0) return false;
    if (index.hash_of(p) != 0) return true;
    pool.free(p);
    return false;
  });
  CHECK(index.cached_count() == 1);
  std::vector<page_id> freed;
  index.clear([&](page_id p) {
    freed.push_back(p);
    pool.free(p);
  });
  CHECK(freed == std::vector<page_id>{a});
  CHECK(index.cached_count() == 0);
  CHECK(index.find(7) == prefix_index::no_page);
  CHECK(pool.num_free() == 4);
  CHECK(index.is_valid(pool));
}

TEST_CASE("prefix_index: disabled, the map takes no memory") {
  const prefix_index off{1024, false}, on{1024, true};
  CHECK(off.memory_bytes() < on.memory_bytes());
}
