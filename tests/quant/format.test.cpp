// Format names and the byte layout contract (frugal/quant/format.hpp): every name round-trips,
// unknown names list the known ones, every format's regions have the documented sizes and
// 16-byte-aligned offsets, and shapes the format cannot take are refused.
#include <frugal/error.hpp>
#include <frugal/quant/format.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <string>

using namespace frugal::quant;

TEST_CASE("format names round-trip for every format", "[quant][format]") {
  REQUIRE(all_formats().size() == format_count);
  for (std::size_t i = 0; i < format_count; ++i) {
    const format f = static_cast<format>(i);
    CHECK(info(f).id == f);
    CHECK(parse_format(to_string(f)) == f);
  }
  CHECK(to_string(format::int4_g64_asym) == "int4_g64_asym");
  CHECK(to_string(format::q4_0) == "q4_0");
}

TEST_CASE("parse_format refuses unknown names and lists the known ones", "[quant][format]") {
  try {
    (void)parse_format("int3");
    FAIL("no exception");
  } catch (const frugal::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("'int3'") != std::string::npos);
    for (const format_info& f : all_formats())
      CHECK(what.find(std::string(f.name)) != std::string::npos);
  }
  CHECK_THROWS_AS(parse_format(""), frugal::invalid_argument);
  CHECK_THROWS_AS(parse_format("INT8"), frugal::invalid_argument);
}

namespace {

struct expected_layout {
  format f;
  std::size_t values, scales, zero_points, tensor_scale;
};

std::size_t up16(std::size_t n) { return (n + 15) / 16 * 16; }

}  // namespace

TEST_CASE("layout_of gives every format's region sizes for a 3 x 256 tensor", "[quant][format]") {
  constexpr std::size_t rows = 3, cols = 256, n = rows * cols;
  const expected_layout table[] = {
      {format::int8, n, 4, 0, 0},
      {format::int8_asym, n, 4, 1, 0},
      {format::int8_channel, n, 4 * rows, 0, 0},
      {format::int8_channel_asym, n, 4 * rows, rows, 0},
      {format::int8_g32, n, 4 * n / 32, 0, 0},
      {format::int8_g32_asym, n, 4 * n / 32, n / 32, 0},
      {format::int8_g64, n, 4 * n / 64, 0, 0},
      {format::int8_g64_asym, n, 4 * n / 64, n / 64, 0},
      {format::int8_g128, n, 4 * n / 128, 0, 0},
      {format::int8_g128_asym, n, 4 * n / 128, n / 128, 0},
      {format::int4_g32, n / 2, 4 * n / 32, 0, 0},
      {format::int4_g32_asym, n / 2, 4 * n / 32, n / 32, 0},
      {format::int4_g64, n / 2, 4 * n / 64, 0, 0},
      {format::int4_g64_asym, n / 2, 4 * n / 64, n / 64, 0},
      {format::int4_g128, n / 2, 4 * n / 128, 0, 0},
      {format::int4_g128_asym, n / 2, 4 * n / 128, n / 128, 0},
      {format::fp8_e4m3, n, 4, 0, 0},
      {format::fp8_e5m2, n, 4, 0, 0},
      {format::fp8_e4m3_channel, n, 4 * rows, 0, 0},
      {format::fp8_e5m2_channel, n, 4 * rows, 0, 0},
      {format::mxfp8, n, n / 32, 0, 0},
      {format::mxfp4, n / 2, n / 32, 0, 0},
      {format::nvfp4, n / 2, n / 16, 0, 4},
      {format::nf4, n / 2, 4 * n / 64, 0, 0},
      {format::q8_0, 34 * n / 32, 0, 0, 0},
      {format::q4_0, 18 * n / 32, 0, 0, 0},
  };
  REQUIRE(std::size(table) == format_count);
  for (const expected_layout& e : table) {
    INFO(to_string(e.f));
    const layout l = layout_of(e.f, rows, cols);
    CHECK(l.rows == rows);
    CHECK(l.cols == cols);
    CHECK(l.values_offset == 0);
    CHECK(l.values_bytes == e.values);
    CHECK(l.scales_bytes == e.scales);
    CHECK(l.zero_points_bytes == e.zero_points);
    CHECK(l.tensor_scale_bytes == e.tensor_scale);
    // Regions follow each other, each on a 16-byte boundary.
    std::size_t end = up16(l.values_bytes);
    if (l.scales_bytes != 0) {
      CHECK(l.scales_offset == end);
      end = up16(l.scales_offset + l.scales_bytes);
    }
    if (l.zero_points_bytes != 0) {
      CHECK(l.zero_points_offset == end);
      end = up16(l.zero_points_offset + l.zero_points_bytes);
    }
    if (l.tensor_scale_bytes != 0) {
      CHECK(l.tensor_scale_offset == end);
      end = l.tensor_scale_offset + l.tensor_scale_bytes;
    }
    CHECK(l.scales_offset % 16 == 0);
    CHECK(l.zero_points_offset % 16 == 0);
    CHECK(l.tensor_scale_offset % 16 == 0);
    if (info(e.f).scale == scale_kind::f16_inline)
      CHECK(l.total_bytes == l.values_bytes);
    else
      CHECK(l.total_bytes == end);
    // Groups: one per tensor, per row, or per block.
    const format_info& fi = info(e.f);
    if (fi.shared_by == granularity::tensor) {
      CHECK(l.groups == 1);
      CHECK(l.group_size == n);
    } else if (fi.shared_by == granularity::channel) {
      CHECK(l.groups == rows);
      CHECK(l.group_size == cols);
    } else {
      CHECK(l.groups == n / fi.block);
      CHECK(l.groups_per_row == cols / fi.block);
      CHECK(l.group_size == fi.block);
    }
  }
}

TEST_CASE("layout_of refuses empty shapes and row lengths the block does not divide",
          "[quant][format]") {
  for (const format_info& fi : all_formats()) {
    INFO(fi.name);
    CHECK_THROWS_AS(layout_of(fi.id, 0, 64), frugal::invalid_argument);
    CHECK_THROWS_AS(layout_of(fi.id, 4, 0), frugal::invalid_argument);
    if (fi.shared_by == granularity::block) {
      try {
        (void)layout_of(fi.id, 2, fi.block + 8);
        FAIL("no exception");
      } catch (const frugal::invalid_argument& e) {
        const std::string what = e.what();
        CHECK(what.find("divisible by " + std::to_string(fi.block)) != std::string::npos);
        CHECK(what.find(std::string(fi.name)) != std::string::npos);
      }
    } else {
      CHECK_NOTHROW(layout_of(fi.id, 3, 7));  // per-tensor / per-row formats take any length
    }
  }
  CHECK_THROWS_AS(layout_of(format::int8, std::size_t{1} << 62, std::size_t{1} << 8),
                  frugal::invalid_argument);
}

TEST_CASE("bits_per_element of a 4096 x 4096 tensor", "[quant][format]") {
  constexpr std::size_t n = 4096;
  CHECK(bits_per_element(format::int8, n, n) == Approx(8.0).epsilon(1e-6));
  CHECK(bits_per_element(format::int8_g32, n, n) == Approx(9.0));
  CHECK(bits_per_element(format::int8_g128_asym, n, n) == Approx(8.0 + 40.0 / 128));
  CHECK(bits_per_element(format::int4_g32, n, n) == Approx(5.0));
  CHECK(bits_per_element(format::int4_g64_asym, n, n) == Approx(4.0 + 40.0 / 64));
  CHECK(bits_per_element(format::int4_g128, n, n) == Approx(4.25));
  CHECK(bits_per_element(format::fp8_e4m3_channel, n, n) == Approx(8.0 + 32.0 / n));
  CHECK(bits_per_element(format::mxfp8, n, n) == Approx(8.25));
  CHECK(bits_per_element(format::mxfp4, n, n) == Approx(4.25));
  CHECK(bits_per_element(format::nvfp4, n, n) == Approx(4.5));
  CHECK(bits_per_element(format::nf4, n, n) == Approx(4.5));
  CHECK(bits_per_element(format::q8_0, n, n) == Approx(8.5));
  CHECK(bits_per_element(format::q4_0, n, n) == Approx(4.5));
}
