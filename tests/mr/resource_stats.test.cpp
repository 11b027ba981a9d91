#include <frugal/mr/resource_stats.hpp>

#include <catch2/catch.hpp>

TEST_CASE("describe renders resource_stats for error messages") {
  frugal::resource_stats s;
  s.bytes_in_use = 1 << 20;
  s.bytes_reserved = 2 << 20;
  s.largest_free_block = 512;
  s.allocations = 3;
  CHECK(frugal::describe(s) ==
        "in use 1.00 MiB, reserved 2.00 MiB, largest free block 512 B, live allocations 3");
}
