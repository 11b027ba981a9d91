#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <cstring>

TEST_CASE("host_resource hands out writable, aligned host memory") {
  frugal::host_resource host;
  void* p = host.allocate(1000, 4096);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 4096 == 0);
  std::memset(p, 0xAB, 1000);
  CHECK(static_cast<unsigned char*>(p)[999] == 0xAB);
  host.deallocate(p, 1000, 4096);
}

TEST_CASE("host_resource::try_allocate returns nullptr instead of throwing") {
  frugal::host_resource host;
  CHECK(host.try_allocate(0) == nullptr);
  CHECK(host.try_allocate(64, 3) == nullptr);
  CHECK(host.try_allocate(static_cast<std::size_t>(-1) - 8) == nullptr);
  void* p = host.try_allocate(64);
  CHECK(p != nullptr);
  host.deallocate(p, 64);
}

TEST_CASE("host_resource out_of_memory names the request") {
  frugal::host_resource host;
  try {
    (void)host.allocate(static_cast<std::size_t>(-1) / 2);
    FAIL("allocation of half the address space succeeded");
  } catch (const frugal::out_of_memory& e) {
    CHECK(e.requested_bytes() == static_cast<std::size_t>(-1) / 2);
    CHECK(std::string(e.what()).find("host_resource") != std::string::npos);
  }
}
