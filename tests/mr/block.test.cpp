#include "mr/test_resources.hpp"

#include <frugal/mr/block.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <set>
#include <vector>

using frugal::block_id;
using frugal::block_resource;
using frugal::ref_t;
using frugal::testing::budget_resource;
using frugal::testing::capture_misuse;
using budget_blocks = block_resource<ref_t<budget_resource>>;

TEST_CASE("block: a fixed-capacity resource is one contiguous slab addressed by id") {
  budget_resource upstream;
  budget_blocks pages{frugal::ref(upstream), 1000, {.initial_blocks = 8, .max_blocks = 8}};
  CHECK(pages.stride() == 1024);
  CHECK(pages.capacity() == 8);
  CHECK(pages.num_slabs() == 1);
  CHECK(upstream.allocations == 1);
  std::set<block_id> ids;
  for (int i = 0; i < 8; ++i) ids.insert(pages.allocate_id());
  CHECK(ids == std::set<block_id>{0, 1, 2, 3, 4, 5, 6, 7});
  for (block_id id : ids) {
    CHECK(pages.address_of(id) == pages.slab(0).data() + id * 1024);
    CHECK(pages.id_of(pages.address_of(id)) == id);
  }
  CHECK_FALSE(pages.try_allocate_id().has_value());
  CHECK_THROWS_AS(pages.allocate_id(), frugal::out_of_memory);
  pages.deallocate_id(5);
  CHECK(pages.allocate_id() == 5);  // the most recently freed block comes back first
}

TEST_CASE("block: growing by slabs keeps ids dense and addresses right") {
  budget_resource upstream;
  budget_blocks pages{frugal::ref(upstream), 4096, {.initial_blocks = 3, .blocks_per_slab = 5}};
  std::vector<block_id> ids;
  for (int i = 0; i < 13; ++i) ids.push_back(pages.allocate_id());
  CHECK(pages.capacity() == 13);  // 3 + 5 + 5
  CHECK(pages.num_slabs() == 3);
  std::set<void*> addresses;
  for (block_id id : ids) {
    void* p = pages.address_of(id);
    CHECK(pages.id_of(p) == id);
    addresses.insert(p);
  }
  CHECK(addresses.size() == 13);
  CHECK_FALSE(pages.id_of(static_cast<char*>(pages.address_of(4)) + 1).has_value());
  CHECK(pages.is_valid());
}

TEST_CASE("block: allocate_n is all-or-nothing") {
  budget_resource upstream(10 * 4096);
  budget_blocks pages{frugal::ref(upstream), 4096, {.initial_blocks = 4, .blocks_per_slab = 4}};
  std::array<block_id, 6> six{};
  REQUIRE(pages.try_allocate_n(six));  // grows one slab: 8 blocks, 6 taken
  CHECK(pages.num_allocated() == 6);
  const auto before = pages.stats();
  std::array<block_id, 7> seven{};
  // 2 free + one more slab of 4 would still be short of 7, and the budget allows only 2 slabs
  // more at most: the attempt must leave nothing behind.
  CHECK_FALSE(pages.try_allocate_n(seven));
  CHECK(pages.stats() == before);
  CHECK(pages.capacity() == 8);
  CHECK(upstream.in_use() == 8 * 4096);
  try {
    pages.allocate_n(seven);
    FAIL("allocate_n succeeded");
  } catch (const frugal::out_of_memory& e) {
    CHECK(e.requested_bytes() == 7 * 4096);
    CHECK(std::string(e.what()).find("7 blocks of 4.00 KiB requested, 2 free") !=
          std::string::npos);
  }
  CHECK(pages.stats() == before);
  pages.deallocate_n(six);
  CHECK(pages.num_allocated() == 0);
}

TEST_CASE("block: the resource interface serves requests up to the block size") {
  block_resource<frugal::host_resource> pages{
      frugal::host_resource{}, 4096, {.alignment = 4096, .initial_blocks = 2}};
  void* p = pages.allocate(4096, 4096);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 4096 == 0);
  const auto before = pages.stats();
  CHECK_THROWS_AS(pages.allocate(4097), frugal::invalid_argument);
  CHECK_THROWS_AS(pages.allocate(100, 8192), frugal::invalid_argument);
  CHECK_THROWS_AS(pages.allocate(100, 5), frugal::invalid_argument);
  CHECK(pages.try_allocate(4097) == nullptr);
  CHECK(pages.stats() == before);
  pages.deallocate(p, 4096);
  CHECK(pages.num_allocated() == 0);
}

TEST_CASE("block: misuse is reported and changes nothing") {
  block_resource<frugal::host_resource> pages{frugal::host_resource{}, 256, {.initial_blocks = 4}};
  const block_id id = pages.allocate_id();
  void* p = pages.address_of(id);
  const auto before = pages.stats();
  capture_misuse capture;
  auto& reports = capture_misuse::reports();

  pages.deallocate(static_cast<char*>(p) + 8, 256);
  pages.deallocate(p, 257);
  pages.deallocate_id(1000);
  pages.deallocate_id(id + 1);  // never allocated
  REQUIRE(reports.size() == 4);
  CHECK(reports[0].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[1].kind == frugal::misuse_kind::size_mismatch);
  CHECK(reports[2].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[2].message.find("out of range") != std::string::npos);
  CHECK(reports[3].kind == frugal::misuse_kind::double_free);
  CHECK(pages.stats() == before);
  pages.deallocate(p, 256);
  pages.deallocate(p, 256);
  REQUIRE(reports.size() == 5);
  CHECK(reports[4].kind == frugal::misuse_kind::double_free);
  CHECK(pages.num_free() == 4);
  CHECK(pages.is_valid());
}

TEST_CASE("block: bad construction arguments") {
  frugal::host_resource host;
  CHECK_THROWS_AS((block_resource<frugal::host_resource>{host, 0}), frugal::invalid_argument);
  CHECK_THROWS_AS((block_resource<frugal::host_resource>{host, 64, {.alignment = 3}}),
                  frugal::invalid_argument);
  CHECK_THROWS_AS(
      (block_resource<frugal::host_resource>{host, 64, {.initial_blocks = 9, .max_blocks = 8}}),
      frugal::invalid_argument);
}

TEST_CASE("block_resource: metadata_bytes counts its free stack and live bitmap") {
  frugal::host_resource host;
  block_resource<frugal::host_resource> small{host, 64, {.initial_blocks = 64, .max_blocks = 64}};
  block_resource<frugal::host_resource> large{
      host, 64, {.initial_blocks = 4096, .max_blocks = 4096}};
  // At least 4 bytes of free stack and one bit of bitmap per block.
  CHECK(small.metadata_bytes() >= 64 * 4 + 64 / 8);
  CHECK(large.metadata_bytes() >= 4096 * 4 + 4096 / 8);
  CHECK(large.metadata_bytes() > small.metadata_bytes());
  void* p = large.allocate(64);
  CHECK(large.metadata_bytes() >= 4096 * 4 + 4096 / 8);  // capacity, not use
  large.deallocate(p, 64);
}
