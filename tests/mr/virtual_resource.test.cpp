#include "mr/test_resources.hpp"

#include <frugal/mr/arena.hpp>
#include <frugal/mr/block.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <random>
#include <vector>

using frugal::virtual_options;
using frugal::virtual_resource;
using frugal::testing::capture_misuse;

TEST_CASE("virtual: commits granules on demand and decommits them on trim") {
  virtual_resource vm{{.reserve_bytes = 64 << 20, .granularity = 1 << 20}};
  CHECK(vm.reserved_address_space() == (64u << 20));
  CHECK(vm.committed_bytes() == 0);
  auto* a = static_cast<char*>(vm.allocate(1));
  auto* b = static_cast<char*>(vm.allocate((3 << 20) + 1));
  CHECK(vm.contains(a));
  CHECK(b - a == (1 << 20));
  CHECK(vm.committed_bytes() == (5u << 20));
  std::memset(a, 1, 1);
  std::memset(b, 2, (3 << 20) + 1);  // committed memory is writable
  vm.deallocate(b, (3 << 20) + 1);
  CHECK(vm.committed_bytes() == (5u << 20));  // stays committed for reuse
  CHECK(vm.trim() == (4u << 20));
  CHECK(vm.committed_bytes() == (1u << 20));
  CHECK(a[0] == 1);
  auto s = vm.stats();
  CHECK(s.bytes_in_use == 1);
  CHECK(s.bytes_reserved == (1u << 20));
  CHECK(s.largest_free_block == (63u << 20));
  vm.deallocate(a, 1);
}

TEST_CASE("virtual: alignments above the granularity and exhaustion") {
  virtual_resource vm{{.reserve_bytes = 16 << 20, .granularity = 1 << 20}};
  void* small = vm.allocate(100);
  void* p = vm.allocate(100, 8 << 20);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % (8 << 20) == 0);
  const auto before = vm.stats();
  try {
    (void)vm.allocate(9 << 20);
    FAIL("allocation larger than the free address space succeeded");
  } catch (const frugal::out_of_memory& e) {
    CHECK(e.requested_bytes() == (9u << 20));
    CHECK(std::string(e.what()).find("address space 16.00 MiB") != std::string::npos);
  }
  CHECK(vm.stats() == before);
  CHECK(vm.committed_bytes() == (2u << 20));
  vm.deallocate(p, 100, 8 << 20);
  vm.deallocate(small, 100);
}

TEST_CASE("virtual: misuse is reported and changes nothing") {
  virtual_resource vm{{.reserve_bytes = 8 << 20, .commit = false, .granularity = 1 << 20}};
  void* p = vm.allocate(1000);
  const auto before = vm.stats();
  capture_misuse capture;
  int outside = 0;
  vm.deallocate(&outside, 4);
  vm.deallocate(static_cast<char*>(p) + 4096, 1000);
  vm.deallocate(p, 999);
  REQUIRE(capture_misuse::reports().size() == 3);
  CHECK(capture_misuse::reports()[2].kind == frugal::misuse_kind::size_mismatch);
  CHECK(vm.stats() == before);
  vm.deallocate(p, 1000);
  vm.deallocate(p, 1000);
  CHECK(capture_misuse::reports().size() == 4);
  CHECK(vm.stats().allocations == 0);
}

TEST_CASE("virtual: bad options") {
  CHECK_THROWS_AS(virtual_resource({.granularity = 3 << 20}), frugal::invalid_argument);
  CHECK_THROWS_AS(virtual_resource({.granularity = 1024}), frugal::invalid_argument);
  CHECK_THROWS_AS(virtual_resource({.reserve_bytes = 0}), frugal::invalid_argument);
}

// ---- never touch -------------------------------------------------------------------------------
// The allocators run over address space that is reserved but never backed (PROT_NONE): any read
// or write of managed memory by an allocator would fault and end the test.

namespace {
#if FRUGAL_DEBUG_LEVEL >= 2
constexpr int never_touch_operations = 20'000;  // every pool operation walks every list here
#else
constexpr int never_touch_operations = 1'000'000;
#endif
constexpr std::size_t max_request = std::size_t{64} << 20;

/// Live ranges must stay inside the reservation and never overlap.
class live_set {
 public:
  explicit live_set(const virtual_resource& vm) : vm_(vm) {}
  void add(void* p, std::size_t bytes) {
    REQUIRE(p != nullptr);
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const auto base = reinterpret_cast<std::uintptr_t>(vm_.base());
    REQUIRE(address >= base);
    REQUIRE(address + bytes <= base + vm_.reserved_address_space());
    auto next = ranges_.lower_bound(address);
    if (next != ranges_.end()) REQUIRE(address + bytes <= next->first);
    if (next != ranges_.begin())
      REQUIRE(std::prev(next)->first + std::prev(next)->second <= address);
    ranges_.emplace(address, bytes);
    order_.push_back(address);
  }
  /// Forgets the most recent ranges until `count` remain (an arena released to a marker).
  void truncate(std::size_t count) {
    while (order_.size() > count) {
      ranges_.erase(order_.back());
      order_.pop_back();
    }
  }
  /// Removes a random live range and returns it.
  std::pair<void*, std::size_t> take_random(std::mt19937_64& rng) {
    const std::size_t k = rng() % order_.size();
    const auto address = order_[k];
    order_[k] = order_.back();
    order_.pop_back();
    const std::size_t bytes = ranges_[address];
    ranges_.erase(address);
    return {reinterpret_cast<void*>(address), bytes};
  }
  bool empty() const { return order_.empty(); }
  std::size_t size() const { return order_.size(); }
  void clear() {
    ranges_.clear();
    order_.clear();
  }

 private:
  const virtual_resource& vm_;
  std::map<std::uintptr_t, std::size_t> ranges_;
  std::vector<std::uintptr_t> order_;
};

std::size_t random_size(std::mt19937_64& rng) { return 1 + rng() % max_request; }
}  // namespace

TEST_CASE("never touch: pool over unbacked address space survives random operations") {
  virtual_resource vm{{.reserve_bytes = std::size_t{1} << 40, .commit = false}};
  frugal::pool_resource pool{frugal::ref(vm)};
  std::mt19937_64 rng(7);
  live_set live(vm);
  for (int op = 0; op < never_touch_operations; ++op) {
    if (!live.empty() && rng() % 2 == 0) {
      auto [p, bytes] = live.take_random(rng);
      pool.deallocate(p, bytes);
    } else {
      const std::size_t bytes = random_size(rng);
      live.add(pool.allocate(bytes), bytes);
    }
  }
  CHECK(pool.is_valid());
  CHECK(vm.committed_bytes() == 0);
  while (!live.empty()) {
    auto [p, bytes] = live.take_random(rng);
    pool.deallocate(p, bytes);
  }
  CHECK(pool.stats().bytes_in_use == 0);
  pool.trim();
  CHECK(vm.stats().allocations == 0);
}

TEST_CASE("never touch: arena over unbacked address space survives random operations") {
  virtual_resource vm{{.reserve_bytes = std::size_t{1} << 40, .commit = false}};
  frugal::arena_resource arena{frugal::ref(vm)};
  std::mt19937_64 rng(8);
  live_set live(vm);
  std::vector<frugal::arena_marker> markers;
  std::vector<std::size_t> live_at_marker;
  for (int op = 0; op < never_touch_operations; ++op) {
    const auto dice = rng() % 1000;
    if (dice < 20) {
      markers.push_back(arena.mark());
      live_at_marker.push_back(live.size());
    } else if (dice < 40 && !markers.empty()) {
      const std::size_t k = rng() % markers.size();  // release to a random earlier marker
      arena.release(markers[k]);
      live.truncate(live_at_marker[k]);  // blocks from before the marker stay live
      markers.resize(k);
      live_at_marker.resize(k);
    } else if (dice < 42 || arena.bytes_in_use() > (std::size_t{64} << 30)) {
      arena.reset();
      markers.clear();
      live_at_marker.clear();
      live.clear();
    } else {
      const std::size_t bytes = random_size(rng);
      live.add(arena.allocate(bytes), bytes);
    }
  }
  CHECK(vm.committed_bytes() == 0);
  arena.reset();
  arena.reset();
  CHECK(vm.stats().allocations == 0);
}

TEST_CASE("never touch: block resource over unbacked address space survives random operations") {
  virtual_resource vm{{.reserve_bytes = std::size_t{1} << 40, .commit = false}};
  frugal::block_resource pages{frugal::ref(vm), max_request, {.blocks_per_slab = 16}};
  std::mt19937_64 rng(9);
  live_set live(vm);
  for (int op = 0; op < never_touch_operations; ++op) {
    if (!live.empty() && rng() % 2 == 0) {
      auto [p, bytes] = live.take_random(rng);
      pages.deallocate(p, bytes);
    } else {
      const std::size_t bytes = random_size(rng);
      live.add(pages.allocate(bytes), bytes);
    }
  }
  CHECK(pages.is_valid());
  CHECK(pages.num_allocated() == live.size());
  CHECK(vm.committed_bytes() == 0);
}
