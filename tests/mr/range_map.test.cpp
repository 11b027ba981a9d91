#include <frugal/mr/detail/range_map.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

using frugal::detail::range_map;

namespace {
using ranges = std::map<std::size_t, std::size_t>;

/// The first-fit answer computed the slow way, unit by unit, from a bitmap of used units.
std::optional<std::size_t> brute_first_fit(const std::vector<bool>& used, std::size_t length,
                                           std::size_t alignment) {
  for (std::size_t start = 0; start + length <= used.size(); start += alignment) {
    bool fits = true;
    for (std::size_t i = start; i < start + length && fits; ++i) fits = !used[i];
    if (fits) return start;
  }
  return std::nullopt;
}
}  // namespace

TEST_CASE("range_map: a new map is one free range") {
  range_map map{100};
  CHECK(map.capacity() == 100);
  CHECK(map.free_units() == 100);
  CHECK(map.allocated_units() == 0);
  CHECK(map.largest_free() == 100);
  CHECK(map.free_ranges() == ranges{{0, 100}});
  CHECK(map.is_valid());

  range_map empty;
  CHECK(empty.free_ranges().empty());
  CHECK_FALSE(empty.allocate(1));
  CHECK(empty.is_valid());
}

TEST_CASE("range_map: first fit hands out the lowest offset that fits") {
  range_map map{100};
  CHECK(map.allocate(10) == std::optional<std::size_t>{0});
  CHECK(map.allocate(20) == std::optional<std::size_t>{10});
  CHECK(map.allocate(30) == std::optional<std::size_t>{30});
  CHECK(map.free_ranges() == ranges{{60, 40}});
  REQUIRE(map.release(10, 20));                               // hole [10, 30)
  CHECK(map.allocate(25) == std::optional<std::size_t>{60});  // the hole is too small
  CHECK(map.allocate(5) == std::optional<std::size_t>{10});   // the hole comes first
  CHECK(map.free_ranges() == ranges{{15, 15}, {85, 15}});
  CHECK(map.free_units() == 30);
  CHECK(map.largest_free() == 15);
  CHECK(map.is_valid());
}

TEST_CASE("range_map: alignment pads the start and keeps the padding free") {
  range_map map{64};
  CHECK(map.allocate(3) == std::optional<std::size_t>{0});
  CHECK(map.allocate(4, 8) == std::optional<std::size_t>{8});
  CHECK(map.free_ranges() == ranges{{3, 5}, {12, 52}});
  CHECK(map.allocate(5, 1) == std::optional<std::size_t>{3});  // the padding is still usable
  CHECK(map.allocate(1, 32) == std::optional<std::size_t>{32});
  CHECK(map.allocate(1, 64) == std::nullopt);  // only offset 0 is 64-aligned, and it is taken
  CHECK(map.allocate(1, 3) == std::nullopt);   // not a power of two
  CHECK(map.allocate(1, 0) == std::nullopt);
  CHECK(map.is_valid());
}

TEST_CASE("range_map: release coalesces with either or both neighbours") {
  range_map map{40};
  for (std::size_t i = 0; i < 4; ++i) REQUIRE(map.allocate(10) == std::optional{i * 10});
  CHECK(map.free_ranges().empty());

  REQUIRE(map.release(0, 10));  // no neighbour
  CHECK(map.free_ranges() == ranges{{0, 10}});
  REQUIRE(map.release(20, 10));  // no neighbour
  CHECK(map.free_ranges() == ranges{{0, 10}, {20, 10}});
  REQUIRE(map.release(10, 10));  // both
  CHECK(map.free_ranges() == ranges{{0, 30}});
  REQUIRE(map.allocate(30) == std::optional<std::size_t>{0});
  REQUIRE(map.release(10, 10));
  REQUIRE(map.release(0, 10));  // next only: re-keyed node
  CHECK(map.free_ranges() == ranges{{0, 20}});
  REQUIRE(map.release(30, 10));  // no neighbour
  REQUIRE(map.release(20, 10));  // both
  CHECK(map.free_ranges() == ranges{{0, 40}});
  CHECK(map.free_units() == 40);
  CHECK(map.is_valid());
}

TEST_CASE("range_map: bad releases and takes are refused and change nothing") {
  range_map map{100};
  REQUIRE(map.allocate(50) == std::optional<std::size_t>{0});
  const ranges before = map.free_ranges();

  CHECK_FALSE(map.release(50, 10));                           // already free: a double free
  CHECK_FALSE(map.release(45, 10));                           // half free
  CHECK_FALSE(map.release(95, 10));                           // past the end
  CHECK_FALSE(map.release(0, 0));                             // empty
  CHECK_FALSE(map.release(static_cast<std::size_t>(-1), 2));  // wraps around
  CHECK_FALSE(map.take(40, 20));                              // not entirely free
  CHECK_FALSE(map.take(90, 20));                              // past the end
  CHECK_FALSE(map.take(60, 0));
  CHECK(map.free_ranges() == before);
  CHECK(map.free_units() == 50);
  CHECK(map.is_valid());

  REQUIRE(map.release(10, 10));  // freeing part of an allocation is allowed
  CHECK_FALSE(map.release(10, 10));
  CHECK(map.is_free(10, 10));
  CHECK_FALSE(map.is_free(10, 11));
  CHECK(map.is_valid());
}

TEST_CASE("range_map: take carves an exact range out of the middle of a free range") {
  range_map map{100};
  REQUIRE(map.take(40, 20));
  CHECK(map.free_ranges() == ranges{{0, 40}, {60, 40}});
  REQUIRE(map.take(0, 40));
  REQUIRE(map.take(90, 10));
  CHECK(map.free_ranges() == ranges{{60, 30}});
  CHECK(map.free_units() == 30);
  CHECK(map.is_valid());
}

TEST_CASE("range_map: exhaustion finds nothing and changes nothing") {
  range_map map{16};
  REQUIRE(map.allocate(16));
  CHECK_FALSE(map.allocate(1));
  CHECK_FALSE(map.find_first_fit(1));
  CHECK(map.free_units() == 0);
  CHECK(map.largest_free() == 0);
  REQUIRE(map.release(0, 16));
  CHECK_FALSE(map.allocate(17));
  CHECK_FALSE(map.allocate(0));
  CHECK(map.free_units() == 16);
  CHECK(map.is_valid());
}

TEST_CASE("range_map: random operations agree with a unit-by-unit model") {
  constexpr std::size_t capacity = 512;
  range_map map{capacity};
  std::vector<bool> used(capacity, false);
  std::vector<std::pair<std::size_t, std::size_t>> live;  // offset, length
  std::mt19937_64 rng(7);

  for (int step = 0; step < 20000; ++step) {
    if (!live.empty() && rng() % 2 == 0) {
      const std::size_t k = rng() % live.size();
      const auto [offset, length] = live[k];
      live[k] = live.back();
      live.pop_back();
      REQUIRE(map.release(offset, length));
      for (std::size_t i = offset; i < offset + length; ++i) used[i] = false;
      REQUIRE_FALSE(map.release(offset, length));  // a second release is refused
    } else {
      const std::size_t length = 1 + rng() % 40;
      const std::size_t alignment = std::size_t{1} << (rng() % 5);
      const auto expected = brute_first_fit(used, length, alignment);
      const auto got = map.allocate(length, alignment);
      REQUIRE(got == expected);
      if (got) {
        for (std::size_t i = *got; i < *got + length; ++i) used[i] = true;
        live.emplace_back(*got, length);
      }
    }
    std::size_t free_units = 0;
    for (bool u : used) free_units += !u;
    REQUIRE(map.free_units() == free_units);
    REQUIRE(map.is_valid());
  }
  for (const auto& [offset, length] : live) REQUIRE(map.release(offset, length));
  CHECK(map.free_ranges() == ranges{{0, capacity}});
}
