// Behavioural tests of stats_adaptor: what it counts and what it leaves alone. The conformance
// suite covers what every resource must do; these cover what the adaptor adds, and every
// bad-input rule. Tests of a stack of adaptors live with the outermost one.
#include "mr/adaptor_helpers.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/limit_adaptor.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <utility>

using frugal::host_resource;
using frugal::testing::bad_alignments;
using frugal::testing::capture_misuse;
using frugal::testing::counting_resource;

TEST_CASE("adaptors compose by value and a failure deep in the stack changes nothing above it") {
  counting_resource upstream;
  frugal::stats_adaptor stack{
      frugal::limit_adaptor{frugal::tracking_adaptor{frugal::ref(upstream)}, 1000}};
  auto& limit = stack.upstream();
  auto& tracker = limit.upstream();

  void* p = stack.allocate(600);
  CHECK(tracker.outstanding_count() == 1);
  const auto stats_before = stack.stats();
  CHECK_THROWS_AS(stack.allocate(500), frugal::out_of_memory);  // the limit refuses
  CHECK(stack.stats() == stats_before);
  CHECK(limit.bytes_in_use() == 600);
  CHECK(tracker.outstanding_count() == 1);
  CHECK(upstream.allocate_calls == 1);
  stack.deallocate(p, 600);
  CHECK(tracker.outstanding_count() == 0);
  CHECK(upstream.in_use == 0);
}

TEST_CASE("stats_adaptor counts bytes and allocations, live and at peak") {
  frugal::stats_adaptor<host_resource> stats{host_resource{}};
  void* a = stats.allocate(100);
  void* b = stats.allocate(300, 64);
  frugal::resource_stats expected{};
  expected.bytes_in_use = 400;
  expected.bytes_reserved = 400;
  expected.peak_bytes_in_use = 400;
  expected.peak_bytes_reserved = 400;
  expected.allocations = 2;
  CHECK(stats.stats() == expected);
  CHECK(stats.total_allocations() == 2);

  stats.deallocate(a, 100);
  const auto s = stats.stats();
  CHECK(s.bytes_in_use == 300);
  CHECK(s.bytes_reserved == 300);
  CHECK(s.peak_bytes_in_use == 400);
  CHECK(s.peak_bytes_reserved == 400);
  CHECK(s.largest_free_block == 0);
  CHECK(s.allocations == 1);

  void* c = stats.allocate(50);
  CHECK(stats.total_allocations() == 3);
  CHECK(stats.stats().peak_bytes_in_use == 400);
  stats.reset_peak();
  CHECK(stats.stats().peak_bytes_in_use == 350);
  stats.deallocate(b, 300, 64);
  stats.deallocate(c, 50);
  CHECK(stats.stats().bytes_in_use == 0);
  CHECK(stats.stats().allocations == 0);
  CHECK(stats.total_allocations() == 3);
}

TEST_CASE("stats_adaptor: zero bytes and nullptr are not counted") {
  counting_resource upstream;
  frugal::stats_adaptor stats{frugal::ref(upstream)};
  CHECK(stats.allocate(0) == nullptr);
  CHECK(stats.try_allocate(0) == nullptr);
  stats.deallocate(nullptr, 0);
  CHECK(stats.stats() == frugal::resource_stats{});
  CHECK(stats.total_allocations() == 0);
  CHECK(upstream.allocate_calls == 0);
  CHECK(upstream.deallocate_calls == 0);
}

TEST_CASE("stats_adaptor: bad alignment throws invalid_argument before the upstream") {
  counting_resource upstream;
  frugal::stats_adaptor stats{frugal::ref(upstream)};
  void* keep = stats.allocate(64);
  const auto before = stats.stats();
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(stats.allocate(64, alignment), frugal::invalid_argument);
    CHECK(stats.try_allocate(64, alignment) == nullptr);
    CHECK(stats.stats() == before);
  }
  CHECK(upstream.allocate_calls == 1);
  stats.deallocate(keep, 64);
}

TEST_CASE("stats_adaptor: an upstream failure changes no counter") {
  counting_resource upstream;
  upstream.capacity = 1000;
  frugal::stats_adaptor stats{frugal::ref(upstream)};
  void* keep = stats.allocate(800);
  const auto before = stats.stats();
  CHECK_THROWS_AS(stats.allocate(300), frugal::out_of_memory);
  CHECK(stats.try_allocate(300) == nullptr);
  CHECK(stats.stats() == before);
  CHECK(stats.total_allocations() == 1);
  void* p = stats.try_allocate(200);
  CHECK(p != nullptr);
  CHECK(stats.stats().bytes_in_use == 1000);
  stats.deallocate(p, 200);
  stats.deallocate(keep, 800);
}

TEST_CASE("stats_adaptor: freeing more than is live is reported and not passed upstream") {
  capture_misuse capture;
  auto& reports = capture_misuse::reports();
  counting_resource upstream;
  frugal::stats_adaptor stats{frugal::ref(upstream)};
  void* p = stats.allocate(64);
  stats.deallocate(p, 128);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == frugal::misuse_kind::other);
  CHECK(reports[0].pointer == p);
  CHECK(reports[0].bytes == 128);
  CHECK_THAT(reports[0].message, Catch::Contains("stats_adaptor"));
  CHECK(upstream.deallocate_calls == 0);
  CHECK(stats.stats().bytes_in_use == 64);
  stats.deallocate(p, 64);
  CHECK(reports.size() == 1);
  CHECK(upstream.deallocate_calls == 1);
}

TEST_CASE("stats_adaptor equals only itself and can be moved") {
  counting_resource upstream;
  frugal::stats_adaptor a{frugal::ref(upstream)};
  frugal::stats_adaptor b{frugal::ref(upstream)};
  CHECK(a == a);
  CHECK(a != b);
  void* p = a.allocate(10);
  frugal::stats_adaptor moved{std::move(a)};
  CHECK(moved.stats().bytes_in_use == 10);
  moved.deallocate(p, 10);
  CHECK(upstream.in_use == 0);
}
