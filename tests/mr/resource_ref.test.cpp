#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

namespace {
// A resource that only declares device_accessible and counts its calls.
struct counting_device_resource {
  int allocations = 0;
  int deallocations = 0;
  alignas(256) unsigned char storage[1024];
  void* allocate(std::size_t bytes, std::size_t = frugal::default_alignment) {
    if (bytes > sizeof storage) throw frugal::out_of_memory(bytes, "", "counting");
    ++allocations;
    return storage;
  }
  void deallocate(void*, std::size_t, std::size_t = frugal::default_alignment) noexcept {
    ++deallocations;
  }
  friend bool operator==(const counting_device_resource& a, const counting_device_resource& b) {
    return &a == &b;
  }
  friend void get_property(const counting_device_resource&, frugal::device_accessible) noexcept {}
};
}  // namespace

TEST_CASE("ref forwards calls and properties to its target without owning it") {
  counting_device_resource target;
  auto handle = frugal::ref(target);
  STATIC_REQUIRE(frugal::resource_with<decltype(handle), frugal::device_accessible>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<decltype(handle), frugal::host_accessible>);
  void* p = handle.allocate(100);
  handle.deallocate(p, 100);
  CHECK(target.allocations == 1);
  CHECK(target.deallocations == 1);
  CHECK(&handle.get() == &target);
}

TEST_CASE("ref equality follows the targets") {
  counting_device_resource a;
  counting_device_resource b;
  CHECK(frugal::ref(a) == frugal::ref(a));
  CHECK_FALSE(frugal::ref(a) == frugal::ref(b));
}

TEST_CASE("try_allocate on a resource without one catches the failure") {
  counting_device_resource target;
  CHECK(frugal::detail::try_allocate(target, 4096, 256) == nullptr);
  CHECK(frugal::detail::try_allocate(target, 16, 256) == target.storage);
  auto handle = frugal::ref(target);
  CHECK(handle.try_allocate(1 << 20) == nullptr);
}

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
