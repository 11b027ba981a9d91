#include <frugal/numeric/float16.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

using frugal::bfloat16;
using frugal::float16;

TEST_CASE("float16: known encodings") {
  STATIC_REQUIRE(float16(1.0f).bits == 0x3C00);
  STATIC_REQUIRE(float16(-2.0f).bits == 0xC000);
  STATIC_REQUIRE(float16(65504.0f).bits == 0x7BFF);
  STATIC_REQUIRE(float16(65519.0f).bits == 0x7BFF);            // rounds down to the largest finite
  STATIC_REQUIRE(float16(65520.0f).bits == 0x7C00);            // the tie rounds to even: infinity
  STATIC_REQUIRE(float16(0.000000059604645f).bits == 0x0001);  // smallest subnormal, 2^-24
  STATIC_REQUIRE(float16(0.000000029802322f).bits == 0x0000);  // 2^-25: tie to even, zero
  STATIC_REQUIRE(float16(0.00006103515625f).bits == 0x0400);   // smallest normal, 2^-14
  STATIC_REQUIRE(float16(1.0f + 1.0f / 2048).bits == 0x3C00);  // tie to even (down)
  STATIC_REQUIRE(float16(1.0f + 3.0f / 2048).bits == 0x3C02);  // tie to even (up)
  CHECK(float16(std::numeric_limits<float>::infinity()).bits == 0x7C00);
  CHECK((float16(std::numeric_limits<float>::quiet_NaN()).bits & 0x7FFF) > 0x7C00);
}

TEST_CASE("float16: every finite half survives a round trip through float") {
  for (std::uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto h = float16::from_bits(static_cast<std::uint16_t>(bits));
    const float f = static_cast<float>(h);
    if (std::isnan(f)) continue;
    REQUIRE(float16(f).bits == bits);
  }
}

TEST_CASE("float16: conversion rounds to the nearest representable value") {
  // Midpoints between consecutive halves round to the even one; points just off them do not.
  for (std::uint32_t bits = 0x0001; bits < 0x7BFF; bits += 37) {
    const float lo = static_cast<float>(float16::from_bits(static_cast<std::uint16_t>(bits)));
    const float hi = static_cast<float>(float16::from_bits(static_cast<std::uint16_t>(bits + 1)));
    const float mid = lo + (hi - lo) / 2;
    const std::uint32_t even = (bits % 2 == 0) ? bits : bits + 1;
    REQUIRE(float16(mid).bits == even);
    REQUIRE(float16(std::nextafter(mid, 0.0f)).bits == bits);
    REQUIRE(float16(std::nextafter(mid, 1e9f)).bits == bits + 1);
  }
}

TEST_CASE("bfloat16: rounding and round trips") {
  STATIC_REQUIRE(bfloat16(1.0f).bits == 0x3F80);
  STATIC_REQUIRE(bfloat16(1.00390625f).bits == 0x3F80);  // tie to even (down)
  STATIC_REQUIRE(bfloat16(1.01171875f).bits == 0x3F82);  // tie to even (up)
  CHECK(static_cast<float>(bfloat16(3.140625f)) == 3.140625f);
  CHECK((bfloat16(std::numeric_limits<float>::quiet_NaN()).bits & 0x7FFF) > 0x7F80);
  CHECK(bfloat16(std::numeric_limits<float>::max()).bits == 0x7F80);  // overflow: infinity
  for (std::uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const float f = static_cast<float>(bfloat16::from_bits(static_cast<std::uint16_t>(bits)));
    if (std::isnan(f)) continue;
    REQUIRE(bfloat16(f).bits == bits);
  }
}
