// Behavioural tests of limit_adaptor: the limit is exact, refusals name the numbers and change
// nothing. The conformance suite covers what every resource must do; these cover what the adaptor
// adds, and every bad-input rule.
#include "mr/adaptor_helpers.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/limit_adaptor.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <limits>
#include <string>

using frugal::testing::bad_alignments;
using frugal::testing::capture_misuse;
using frugal::testing::counting_resource;

TEST_CASE("limit_adaptor allows allocations up to the limit exactly") {
  counting_resource upstream;
  frugal::limit_adaptor limited{frugal::ref(upstream), 1000};
  CHECK(limited.limit() == 1000);
  void* a = limited.allocate(600);
  void* b = limited.allocate(400);
  CHECK(limited.bytes_in_use() == 1000);
  CHECK(limited.try_allocate(1) == nullptr);
  limited.deallocate(a, 600);
  CHECK(limited.bytes_in_use() == 400);
  void* c = limited.try_allocate(600);
  CHECK(c != nullptr);
  const auto s = limited.stats();
  CHECK(s.bytes_in_use == 1000);
  CHECK(s.bytes_reserved == 1000);
  CHECK(s.peak_bytes_in_use == 1000);
  CHECK(s.allocations == 2);
  CHECK(s.largest_free_block == 0);  // the cap allows nothing more
  limited.deallocate(b, 400);
  CHECK(limited.stats().largest_free_block == 400);
  limited.deallocate(c, 600);
  CHECK(limited.stats().bytes_in_use == 0);
  CHECK(limited.stats().peak_bytes_in_use == 1000);
}

TEST_CASE("limit_adaptor: exceeding the limit throws out_of_memory naming request, use and limit") {
  counting_resource upstream;
  frugal::limit_adaptor limited{frugal::ref(upstream), std::size_t{1} << 20};
  void* keep = limited.allocate(768 << 10);
  const auto before = limited.stats();
  const int calls_before = upstream.allocate_calls;
  try {
    (void)limited.allocate(512 << 10);
    FAIL("allocation over the limit succeeded");
  } catch (const frugal::out_of_memory& e) {
    const std::string what = e.what();
    CHECK(e.requested_bytes() == (512u << 10));
    CHECK_THAT(what, Catch::Contains("limit_adaptor"));
    CHECK_THAT(what, Catch::Contains("524288 bytes"));
    CHECK_THAT(what, Catch::Contains("in use 768.00 KiB, reserved 768.00 KiB"));
    CHECK(e.state() ==
          "in use 768.00 KiB, reserved 768.00 KiB, largest free block 256.00 KiB, "
          "live allocations 1, limit 1.00 MiB");
  }
  CHECK(limited.stats() == before);
  CHECK(limited.bytes_in_use() == (768u << 10));
  CHECK(upstream.allocate_calls == calls_before);  // refused before the upstream

  // Sizes near SIZE_MAX must not wrap the check.
  CHECK_THROWS_AS(limited.allocate(std::numeric_limits<std::size_t>::max()), frugal::out_of_memory);
  CHECK(limited.try_allocate(std::numeric_limits<std::size_t>::max()) == nullptr);
  CHECK(limited.stats() == before);
  limited.deallocate(keep, 768 << 10);
}

TEST_CASE("limit_adaptor: bad alignment, zero bytes and upstream failures change nothing") {
  counting_resource upstream;
  upstream.capacity = 500;
  frugal::limit_adaptor limited{frugal::ref(upstream), 1000};
  void* keep = limited.allocate(100);
  const auto before = limited.stats();
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(limited.allocate(64, alignment), frugal::invalid_argument);
    CHECK(limited.try_allocate(64, alignment) == nullptr);
    CHECK(limited.stats() == before);
  }
  CHECK(limited.allocate(0) == nullptr);
  limited.deallocate(nullptr, 0);
  CHECK(limited.stats() == before);
  // Within the limit but beyond what the upstream has: the upstream's error, nothing counted.
  CHECK_THROWS_WITH(limited.allocate(800), Catch::Contains("counting_resource"));
  CHECK(limited.try_allocate(800) == nullptr);
  CHECK(limited.stats() == before);
  limited.deallocate(keep, 100);
}

TEST_CASE("limit_adaptor: freeing more than is live is reported and not passed upstream") {
  capture_misuse capture;
  auto& reports = capture_misuse::reports();
  counting_resource upstream;
  frugal::limit_adaptor limited{frugal::ref(upstream), 1000};
  void* p = limited.allocate(10);
  limited.deallocate(p, 20);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == frugal::misuse_kind::other);
  CHECK(upstream.deallocate_calls == 0);
  CHECK(limited.bytes_in_use() == 10);
  limited.deallocate(p, 10);
  CHECK(limited.bytes_in_use() == 0);
}
