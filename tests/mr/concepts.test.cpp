#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>

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

TEST_CASE("alignment helpers") {
  using namespace frugal::detail;
  CHECK(is_pow2(1));
  CHECK(is_pow2(4096));
  CHECK_FALSE(is_pow2(0));
  CHECK_FALSE(is_pow2(48));
  CHECK(align_up(257, 256) == 512);
  CHECK(align_up(256, 256) == 256);
  CHECK_THROWS_AS(check_alignment(3, "x"), frugal::invalid_argument);
  CHECK_FALSE(fits_with_alignment(static_cast<std::size_t>(-1) - 100, 256));
}

TEST_CASE("describe renders resource_stats for error messages") {
  frugal::resource_stats s;
  s.bytes_in_use = 1 << 20;
  s.bytes_reserved = 2 << 20;
  s.largest_free_block = 512;
  s.allocations = 3;
  CHECK(frugal::describe(s) ==
        "in use 1.00 MiB, reserved 2.00 MiB, largest free block 512 B, live allocations 3");
}
