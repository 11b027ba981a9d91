#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

TEST_CASE("any_resource_ref: one type for every resource, calls reach the target") {
  frugal::testing::budget_resource budget;
  frugal::pool_resource pool{frugal::host_resource{}};
  frugal::any_resource_ref a{budget};
  frugal::any_resource_ref b{pool};
  STATIC_REQUIRE(std::is_same_v<decltype(a), decltype(b)>);
  void* p = a.allocate(100);
  CHECK(budget.allocations == 1);
  a.deallocate(p, 100);
  CHECK(budget.deallocations == 1);
  void* q = b.allocate(100, 4096);
  CHECK(reinterpret_cast<std::uintptr_t>(q) % 4096 == 0);
  CHECK(pool.stats().allocations == 1);
  b.deallocate(q, 100, 4096);
  CHECK(a == frugal::any_resource_ref{budget});
  CHECK_FALSE(a == b);
  CHECK(a.target() == &budget);
}

TEST_CASE("any_resource_ref: properties at run time, tags passed to resources that take them") {
  frugal::testing::fake_device_resource device;
  frugal::any_resource_ref d{device};
  CHECK(d.device_accessible());
  CHECK_FALSE(d.host_accessible());

  frugal::tracking_adaptor tracker{frugal::host_resource{}};
  frugal::any_resource_ref t{tracker};
  CHECK(t.host_accessible());
  void* p = t.allocate(64, 256, "kv.layer0");
  REQUIRE(tracker.outstanding().size() == 1);
  CHECK(tracker.outstanding()[0].tag == "kv.layer0");
  t.deallocate(p, 64, 256);
  CHECK(tracker.outstanding_count() == 0);

  frugal::host_resource host;
  frugal::any_resource_ref h{host};
  void* r = h.allocate(64, 256, "ignored");  // host_resource takes no tag
  h.deallocate(r, 64, 256);
}
