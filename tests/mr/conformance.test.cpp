// Runs the same behavioural checks against every resource and adaptor (see conformance.hpp).
#include "mr/conformance.hpp"

#include "mr/fixtures.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <vector>

using namespace frugal::testing;

TEMPLATE_TEST_CASE("conformance: models the resource concept", "[conformance]",
                   FRUGAL_CONFORMANCE_FIXTURES) {
  using R = decltype(TestType::r);
  STATIC_REQUIRE(frugal::resource<R>);
  STATIC_REQUIRE(frugal::has_property_v<R, frugal::host_accessible> == TestType::host);
  STATIC_REQUIRE(frugal::has_property_v<R, frugal::device_accessible> == TestType::device);
}

TEMPLATE_TEST_CASE("conformance: sizes from 1 byte up, default alignment", "[conformance]",
                   FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  for (std::size_t bytes = 1; bytes <= TestType::max_bytes; bytes *= 4) {
    for (std::size_t size : {bytes, bytes + bytes / 2 + 1}) {
      if (size > TestType::max_bytes) continue;
      INFO("size " << size);
      void* p = r.allocate(size);
      REQUIRE(p != nullptr);
      CHECK(aligned(p, frugal::default_alignment));
      if constexpr (TestType::writable) {
        static_cast<unsigned char*>(p)[0] = 1;
        static_cast<unsigned char*>(p)[size - 1] = 2;
      }
      r.deallocate(p, size);
    }
  }
}

TEMPLATE_TEST_CASE("conformance: alignments 1..max are honoured", "[conformance]",
                   FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  for (std::size_t alignment = 1; alignment <= TestType::max_alignment; alignment *= 2) {
    for (std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{4097}}) {
      if (size > TestType::max_bytes) continue;
      INFO("alignment " << alignment << " size " << size);
      void* p = r.allocate(size, alignment);
      REQUIRE(p != nullptr);
      CHECK(aligned(p, alignment));
      r.deallocate(p, size, alignment);
    }
  }
}

TEMPLATE_TEST_CASE("conformance: zero bytes gives nullptr, freeing nullptr is a no-op",
                   "[conformance]", FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  const auto before = stats_of(r);
  CHECK(r.allocate(0) == nullptr);
  r.deallocate(nullptr, 0);
  CHECK(stats_of(r) == before);
}

TEMPLATE_TEST_CASE("conformance: equality", "[conformance]", FRUGAL_CONFORMANCE_FIXTURES) {
  TestType a;
  TestType b;
  CHECK(a.r == a.r);
  CHECK_FALSE(a.r != a.r);
  CHECK((a.r == b.r) == TestType::stateless);
}

TEMPLATE_TEST_CASE("conformance: bad alignment throws invalid_argument, nothing changes",
                   "[conformance]", FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  void* keep = r.allocate(64);
  const auto before = stats_of(r);
  for (std::size_t alignment :
       {std::size_t{0}, std::size_t{3}, std::size_t{48}, std::size_t{257}}) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(r.allocate(64, alignment), frugal::invalid_argument);
    CHECK(stats_of(r) == before);
  }
  r.deallocate(keep, 64);
}

TEMPLATE_TEST_CASE("conformance: overflowing sizes throw bad_alloc, nothing changes",
                   "[conformance]", FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  void* keep = r.allocate(64);
  const auto before = stats_of(r);
  const std::size_t huge = std::numeric_limits<std::size_t>::max() - 16;
  CHECK_THROWS_AS(r.allocate(huge, 4096), std::bad_alloc);
  CHECK(stats_of(r) == before);
  r.deallocate(keep, 64);
}

TEMPLATE_TEST_CASE("conformance: live allocations never overlap", "[conformance]",
                   FRUGAL_CONFORMANCE_FIXTURES) {
  TestType f;
  auto& r = f.r;
  std::mt19937_64 rng(42);
  const std::size_t limit = std::min<std::size_t>(TestType::max_bytes, 64 << 10);
  std::uniform_int_distribution<std::size_t> size_of(1, limit);
  std::map<std::uintptr_t, std::size_t> live;  // address -> size
  std::vector<std::pair<void*, std::size_t>> order;
  for (int i = 0; i < 2000; ++i) {
    if (!order.empty() && (rng() % 3 == 0)) {
      const std::size_t k = rng() % order.size();
      auto [p, size] = order[k];
      order[k] = order.back();
      order.pop_back();
      live.erase(reinterpret_cast<std::uintptr_t>(p));
      r.deallocate(p, size);
      continue;
    }
    const std::size_t size = size_of(rng);
    void* p = r.allocate(size);
    REQUIRE(p != nullptr);
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    auto next = live.lower_bound(address);
    if (next != live.end()) REQUIRE(address + size <= next->first);
    if (next != live.begin()) {
      auto prev = std::prev(next);
      REQUIRE(prev->first + prev->second <= address);
    }
    live.emplace(address, size);
    order.emplace_back(p, size);
  }
  for (auto [p, size] : order) r.deallocate(p, size);
  if (auto s = stats_of(r)) {
    CHECK(s->allocations == 0);
    if (TestType::reclaims_every_free) CHECK(s->bytes_in_use == 0);
  }
}
