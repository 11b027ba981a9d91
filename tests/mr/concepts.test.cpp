#include <frugal/mr/concepts.hpp>

#include <catch2/catch.hpp>

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
