#include <frugal/detail/pointer_map.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

using frugal::detail::pointer_map;

namespace {
constexpr std::size_t slot_bytes = 8;  // 32 bits of the key and a 32-bit index

/// The caller's records: index i holds key keys[i] (what pool_resource keeps in its blocks).
struct records {
  std::vector<std::uint64_t> keys;
  std::uint32_t add(std::uint64_t key) {
    keys.push_back(key);
    return static_cast<std::uint32_t>(keys.size() - 1);
  }
  auto key_of() const {
    return [this](std::uint32_t i) { return keys.at(i); };
  }
};
}  // namespace

TEST_CASE("pointer_map: insert, find, take and erase") {
  pointer_map map;
  records r;
  const auto key_of = r.key_of();
  const std::uint32_t a = r.add(0x1000), b = r.add(0x2000), a2 = r.add(0x1000);
  CHECK(map.find(0x1000, key_of) == pointer_map::npos);
  map.insert(0x1000, a, key_of);
  map.insert(0x2000, b, key_of);
  CHECK(map.size() == 2);
  CHECK(map.find(0x1000, key_of) == a);
  map.insert(0x1000, a2, key_of);  // overwrites
  CHECK(map.size() == 2);
  CHECK(map.take(0x1000, key_of) == a2);
  CHECK(map.find(0x1000, key_of) == pointer_map::npos);
  CHECK(map.take(0x1000, key_of) == pointer_map::npos);  // absent: nothing changes
  CHECK(map.size() == 1);
  CHECK(map.find(0x2000, key_of) == b);
  CHECK_FALSE(map.erase(0x3000, key_of));
  CHECK(map.erase(0x2000, key_of));
  CHECK(map.size() == 0);
}

TEST_CASE("pointer_map: keys that share the stored 32 bits are told apart by their records") {
  // Bits 8-39 of the key are stored: addresses 1 TiB apart share them (and so their home slot).
  pointer_map map;
  records r;
  const auto key_of = r.key_of();
  constexpr std::uint64_t tib = std::uint64_t{1} << 40;
  std::vector<std::uint32_t> ids;
  for (std::uint64_t k = 1; k <= 5; ++k) {
    ids.push_back(r.add(0x7000 + k * tib));
    map.insert(0x7000 + k * tib, ids.back(), key_of);
  }
  CHECK(map.size() == 5);
  for (std::uint64_t k = 1; k <= 5; ++k) CHECK(map.find(0x7000 + k * tib, key_of) == ids[k - 1]);
  CHECK(map.find(0x7000, key_of) == pointer_map::npos);            // same bits, never inserted
  CHECK(map.take(0x7000 + 6 * tib, key_of) == pointer_map::npos);  // nothing changes
  CHECK(map.size() == 5);
  CHECK(map.take(0x7000 + 2 * tib, key_of) == ids[1]);  // from the middle of the run
  CHECK(map.find(0x7000 + 2 * tib, key_of) == pointer_map::npos);
  for (const std::uint64_t k : {1, 3, 4, 5})
    CHECK(map.find(0x7000 + k * tib, key_of) == ids[k - 1]);
  const std::uint32_t again = r.add(0x7000 + 3 * tib);
  map.insert(0x7000 + 3 * tib, again, key_of);  // overwrites the right one of the equals
  CHECK(map.size() == 4);
  CHECK(map.find(0x7000 + 3 * tib, key_of) == again);
  CHECK(map.find(0x7000 + 4 * tib, key_of) == ids[3]);
}

TEST_CASE("pointer_map: the sparseness bounds the load factor") {
  for (const unsigned sparseness : {1u, 2u, 3u}) {
    pointer_map map{sparseness};
    records r;
    const auto key_of = r.key_of();
    for (std::uint64_t k = 1; k <= 1000; ++k) {
      const std::size_t before = map.memory_bytes();
      const bool had_room = map.has_room_for(1);
      map.insert(k << 8, r.add(k << 8), key_of);
      CHECK(had_room == (map.memory_bytes() == before));  // has_room_for: no rehash
      const std::size_t slots = map.memory_bytes() / slot_bytes;
      CHECK((map.size() << sparseness) <= slots);
      if (slots > 64) CHECK((map.size() << sparseness) > slots / 2);  // doubles when it must
    }
    map.reserve(5000);
    const std::size_t reserved = map.memory_bytes();
    CHECK((std::size_t{5000} << sparseness) <= reserved / slot_bytes);
    CHECK(map.has_room_for(4000));
    for (std::uint64_t k = 1001; k <= 5000; ++k) map.insert(k << 8, r.add(k << 8), key_of);
    CHECK(map.memory_bytes() == reserved);  // reserve() made room for all of them
  }
}

TEST_CASE("pointer_map: random operations agree with std::unordered_map") {
  for (const unsigned sparseness : {1u, 2u}) {
    pointer_map map{sparseness};
    records r;
    const auto key_of = r.key_of();
    std::unordered_map<std::uint64_t, std::uint32_t> model;
    std::mt19937_64 rng(17 + sparseness);
    // Few distinct keys, so that probe runs collide, wrap around the table and shift back; a
    // quarter of the draws 1 TiB higher, so that the same stored bits stand for two keys.
    std::uniform_int_distribution<std::uint64_t> key_of_draw(1, 3000);
    for (int step = 0; step < 200000; ++step) {
      std::uint64_t key = key_of_draw(rng) << 8;
      if (rng() % 4 == 0) key += std::uint64_t{1} << 40;
      switch (rng() % 4) {
        case 0:
        case 1: {
          const std::uint32_t value = r.add(key);
          map.insert(key, value, key_of);
          model[key] = value;
          break;
        }
        case 2: {
          const auto it = model.find(key);
          const std::uint32_t expect = it == model.end() ? pointer_map::npos : it->second;
          REQUIRE(map.take(key, key_of) == expect);
          if (it != model.end()) model.erase(it);
          break;
        }
        default:
          REQUIRE(map.erase(key, key_of) == (model.erase(key) == 1));
      }
      REQUIRE(map.size() == model.size());
    }
    std::size_t seen = 0;
    map.for_each([&](std::uint32_t value) {
      ++seen;
      const auto it = model.find(r.keys.at(value));
      REQUIRE(it != model.end());
      CHECK(it->second == value);
    });
    CHECK(seen == model.size());
    for (const auto& [key, value] : model) CHECK(map.find(key, key_of) == value);
  }
}
