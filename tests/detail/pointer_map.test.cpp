#include <frugal/detail/pointer_map.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

using frugal::detail::pointer_map;

namespace {
constexpr std::size_t slot_bytes = 16;  // a key and a 32-bit value, padded
}

TEST_CASE("pointer_map: insert, find, take and erase") {
  pointer_map map;
  CHECK(map.find(0x1000) == pointer_map::npos);
  map.insert(0x1000, 7);
  map.insert(0x2000, 9);
  CHECK(map.size() == 2);
  CHECK(map.find(0x1000) == 7);
  map.insert(0x1000, 8);  // overwrites
  CHECK(map.size() == 2);
  CHECK(map.take(0x1000) == 8);
  CHECK(map.find(0x1000) == pointer_map::npos);
  CHECK(map.take(0x1000) == pointer_map::npos);  // absent: nothing changes
  CHECK(map.size() == 1);
  CHECK(map.find(0x2000) == 9);
  CHECK_FALSE(map.erase(0x3000));
  CHECK(map.erase(0x2000));
  CHECK(map.size() == 0);
}

TEST_CASE("pointer_map: the sparseness bounds the load factor") {
  for (const unsigned sparseness : {1u, 2u, 3u}) {
    pointer_map map{sparseness};
    for (std::uintptr_t k = 1; k <= 1000; ++k) {
      const std::size_t before = map.memory_bytes();
      const bool had_room = map.has_room_for(1);
      map.insert(k << 8, static_cast<std::uint32_t>(k));
      CHECK(had_room == (map.memory_bytes() == before));  // has_room_for: no rehash
      const std::size_t slots = map.memory_bytes() / slot_bytes;
      CHECK((map.size() << sparseness) <= slots);
      if (slots > 64) CHECK((map.size() << sparseness) > slots / 2);  // doubles when it must
    }
    map.reserve(5000);
    const std::size_t reserved = map.memory_bytes();
    CHECK((std::size_t{5000} << sparseness) <= reserved / slot_bytes);
    CHECK(map.has_room_for(4000));
    for (std::uintptr_t k = 1001; k <= 5000; ++k) map.insert(k << 8, 0);
    CHECK(map.memory_bytes() == reserved);  // reserve() made room for all of them
  }
}

TEST_CASE("pointer_map: random operations agree with std::unordered_map") {
  for (const unsigned sparseness : {1u, 2u}) {
    pointer_map map{sparseness};
    std::unordered_map<std::uintptr_t, std::uint32_t> model;
    std::mt19937_64 rng(17 + sparseness);
    // Few distinct keys, so that probe runs collide, wrap around the table and shift back.
    std::uniform_int_distribution<std::uintptr_t> key_of(1, 3000);
    for (int step = 0; step < 200000; ++step) {
      const std::uintptr_t key = key_of(rng) << 8;
      switch (rng() % 4) {
        case 0:
        case 1: {
          const auto value = static_cast<std::uint32_t>(rng() % 1000000);
          map.insert(key, value);
          model[key] = value;
          break;
        }
        case 2: {
          const auto it = model.find(key);
          const std::uint32_t expect = it == model.end() ? pointer_map::npos : it->second;
          REQUIRE(map.take(key) == expect);
          if (it != model.end()) model.erase(it);
          break;
        }
        default:
          REQUIRE(map.erase(key) == (model.erase(key) == 1));
      }
      REQUIRE(map.size() == model.size());
    }
    std::size_t seen = 0;
    map.for_each([&](std::uintptr_t key, std::uint32_t value) {
      ++seen;
      REQUIRE(model.count(key) == 1);
      CHECK(model.at(key) == value);
    });
    CHECK(seen == model.size());
    for (const auto& [key, value] : model) CHECK(map.find(key) == value);
  }
}
