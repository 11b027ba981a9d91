#include <frugal/error.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace q = frugal::quant;
using q::bound;
using q::format;

namespace {

std::vector<float> gaussian(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

/// The SQNR floors on N(0,1) data, 256 x 4096, derived in docs/formats.md ("Accuracy floors"):
/// each is the model's prediction minus a 1 dB margin.
const std::map<format, double>& gaussian_floors() {
  static const std::map<format, double> floors{
      {format::int8, 37.8},
      {format::int8_asym, 38.1},
      {format::int8_channel, 40.2},
      {format::int8_channel_asym, 40.7},
      {format::int8_g32, 44.3},
      {format::int8_g32_asym, 45.4},
      {format::int8_g64, 43.4},
      {format::int8_g64_asym, 44.4},
      {format::int8_g128, 42.7},
      {format::int8_g128_asym, 43.5},
      {format::int4_g32, 19.1},
      {format::int4_g32_asym, 20.8},
      {format::int4_g64, 18.3},
      {format::int4_g64_asym, 19.8},
      {format::int4_g128, 17.5},
      {format::int4_g128_asym, 18.9},
      {format::fp8_e4m3, 30.5},
      {format::fp8_e5m2, 24.4},
      {format::fp8_e4m3_channel, 30.5},
      {format::fp8_e5m2_channel, 24.4},
      {format::mxfp8, 29.4},
      {format::mxfp4, 18.0},
      {format::nvfp4, 19.0},
      {format::nf4, 19.6},
      {format::q8_0, 44.3},
      {format::q4_0, 20.2},
  };
  return floors;
}

}  // namespace

TEST_CASE("accuracy: compare() on hand-made data") {
  const std::vector<float> x{3.0f, 4.0f};
  SECTION("identical data: infinite SQNR, no error, cosine 1") {
    const auto m = q::compare(x, x);
    CHECK(std::isinf(m.sqnr_db));
    CHECK(m.sqnr_db > 0);
    CHECK(m.relative_l2 == 0);
    CHECK(m.max_abs == 0);
    CHECK(m.cosine == Approx(1.0));
  }
  SECTION("a known error gives a known SQNR") {
    const std::vector<float> y{3.0f, 4.5f};  // signal 25, noise 0.25: 100x, 20 dB
    const auto m = q::compare(x, y);
    CHECK(m.sqnr_db == Approx(20.0));
    CHECK(m.relative_l2 == Approx(0.1));
    CHECK(m.max_abs == Approx(0.5));
    CHECK(m.cosine == Approx(27.0 / (5.0 * std::sqrt(29.25))));
  }
  SECTION("zero data") {
    const std::vector<float> zero{0.0f, 0.0f};
    CHECK(q::compare(zero, zero).cosine == 1.0);
    CHECK(std::isinf(q::compare(zero, zero).sqnr_db));
    const auto m = q::compare(zero, x);
    CHECK(m.sqnr_db == -std::numeric_limits<double>::infinity());
    CHECK(std::isinf(m.relative_l2));
    CHECK(m.cosine == 0.0);
  }
  SECTION("sizes must match") {
    const std::vector<float> three{1.0f, 2.0f, 3.0f};
    CHECK_THROWS_AS(q::compare(x, three), frugal::invalid_argument);
  }
}

TEST_CASE("accuracy: evaluate() is exact on exactly representable data") {
  SECTION("int8: multiples of 1/64 up to 127/64") {
    std::vector<float> v;
    for (int k = -127; k <= 127; ++k) v.push_back(static_cast<float>(k) / 64.0f);
    v.push_back(0.0f);  // 256 elements: 2 x 128
    for (format f : {format::int8, format::int8_channel, format::int8_g128}) {
      const auto m = q::evaluate(v, 128, f);
      INFO(q::to_string(f));
      if (f == format::int8) {  // one scale for both rows: every value lies on the grid
        CHECK(std::isinf(m.sqnr_db));
        CHECK(m.relative_l2 == 0);
        CHECK(m.max_abs == 0);
      }
      CHECK(m.bits_per_element == q::bits_per_element(f, 2, 128));
    }
  }
  SECTION("mxfp8: E4M3 values under a power-of-two block maximum") {
    std::vector<float> v(64, 0.0f);
    const float grid[] = {256.0f, -1.0f, 2.0f, 3.5f, -0.25f, 96.0f, 448.0f / 2, 0.0f};
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = grid[i % 8];
    const auto m = q::evaluate(v, 64, format::mxfp8);
    CHECK(std::isinf(m.sqnr_db));
    CHECK(m.max_abs == 0);
    CHECK(m.cosine == Approx(1.0));
    CHECK(m.bits_per_element == Approx(8.25));  // 8 bits + one E8M0 byte per 32
  }
}

TEST_CASE("accuracy: evaluate() refuses bad input") {
  const std::vector<float> v(64, 1.0f);
  CHECK_THROWS_AS(q::evaluate({}, 4, format::int8), frugal::invalid_argument);
  CHECK_THROWS_WITH(q::evaluate({}, 4, format::int8), Catch::Contains("empty"));
  CHECK_THROWS_AS(q::evaluate(v, 0, format::int8), frugal::invalid_argument);
  CHECK_THROWS_WITH(q::evaluate(v, 48, format::int8), Catch::Contains("not a multiple of cols"));
  CHECK_THROWS_AS(q::evaluate(v, 32, format::int4_g64), frugal::invalid_argument);
  CHECK(v == std::vector<float>(64, 1.0f));  // the input is untouched
}

TEST_CASE("accuracy: bounds of both kinds") {
  q::error_metrics m;
  m.sqnr_db = 30.0;
  m.relative_l2 = std::pow(10.0, -30.0 / 20.0);
  CHECK(bound::min_sqnr(30.0).met_by(m));
  CHECK_FALSE(bound::min_sqnr(30.1).met_by(m));
  CHECK(bound::max_relative_error(0.032).met_by(m));
  CHECK_FALSE(bound::max_relative_error(0.031).met_by(m));
  m.sqnr_db = m.relative_l2 = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(bound::min_sqnr(-100).met_by(m));
  CHECK_FALSE(bound::max_relative_error(100).met_by(m));
}

TEST_CASE("accuracy: choose() picks the fewest bits that meet the bound") {
  const std::size_t cols = 256;
  const std::vector<float> w = gaussian(64 * cols, 1);

  SECTION("the result is the cheapest passing entry of the report") {
    for (bound b : {bound::min_sqnr(15.0), bound::min_sqnr(25.0), bound::min_sqnr(40.0),
                    bound::max_relative_error(0.1), bound::max_relative_error(0.02)}) {
      const auto report = q::choose_report(w, cols, b);
      const auto chosen = q::choose(w, cols, b);
      REQUIRE(chosen.has_value());
      REQUIRE(report.size() == q::format_count);  // 256 columns fit every format
      const q::candidate* pick = nullptr;
      for (const auto& c : report)
        if (c.f == *chosen) pick = &c;
      REQUIRE(pick != nullptr);
      CHECK(b.met_by(pick->metrics));
      for (const auto& c : report) {
        if (c.metrics.bits_per_element < pick->metrics.bits_per_element) CHECK_FALSE(c.meets_bound);
        if (c.metrics.bits_per_element == pick->metrics.bits_per_element && c.meets_bound)
          CHECK(c.metrics.relative_l2 >= pick->metrics.relative_l2);
      }
      for (std::size_t i = 1; i < report.size(); ++i)
        CHECK(report[i - 1].metrics.bits_per_element <= report[i].metrics.bits_per_element);
    }
  }
  SECTION("ties on bits go to the lower error") {
    // int8 and fp8_e4m3 per tensor have the same layout size; int8 is ~7 dB more accurate.
    CHECK(q::evaluate(w, cols, format::int8).bits_per_element ==
          q::evaluate(w, cols, format::fp8_e4m3).bits_per_element);
    const format both[] = {format::fp8_e4m3, format::int8};
    CHECK(q::choose(w, cols, bound::min_sqnr(20.0), both) == format::int8);
    const format reversed[] = {format::int8, format::fp8_e4m3};
    CHECK(q::choose(w, cols, bound::min_sqnr(20.0), reversed) == format::int8);
  }
  SECTION("fewer bits win over lower error") {
    const format candidates[] = {format::int8_g32, format::int4_g32, format::int8};
    CHECK(q::choose(w, cols, bound::min_sqnr(15.0), candidates) == format::int4_g32);
    CHECK(q::choose(w, cols, bound::min_sqnr(35.0), candidates) == format::int8);
    CHECK(q::choose(w, cols, bound::min_sqnr(43.0), candidates) == format::int8_g32);
  }
  SECTION("nothing meets the bound") {
    CHECK_FALSE(q::choose(w, cols, bound::min_sqnr(80.0)).has_value());
    const format fp8[] = {format::fp8_e4m3, format::fp8_e5m2};
    CHECK_FALSE(q::choose(w, cols, bound::max_relative_error(0.01), fp8).has_value());
  }
  SECTION("formats that do not fit the row length are left out") {
    const std::vector<float> narrow = gaussian(8 * 48, 2);
    const auto report = q::choose_report(narrow, 48, bound::min_sqnr(0));
    bool has_nvfp4 = false, has_int8 = false, has_g32 = false;
    for (const auto& c : report) {
      has_nvfp4 |= c.f == format::nvfp4;  // blocks of 16 divide 48
      has_int8 |= c.f == format::int8;
      has_g32 |= c.f == format::int8_g32;
    }
    CHECK(has_nvfp4);
    CHECK(has_int8);
    CHECK_FALSE(has_g32);
    const format only_blocks[] = {format::int4_g64, format::int4_g128};
    CHECK(q::choose_report(narrow, 48, bound::min_sqnr(0), only_blocks).empty());
    CHECK_FALSE(q::choose(narrow, 48, bound::min_sqnr(0), only_blocks).has_value());
  }
  SECTION("bad input throws") {
    CHECK_THROWS_AS(q::choose({}, cols, bound::min_sqnr(10)), frugal::invalid_argument);
    CHECK_THROWS_AS(q::choose(w, 0, bound::min_sqnr(10)), frugal::invalid_argument);
    CHECK_THROWS_AS(q::choose_report(w, 300, bound::min_sqnr(10)), frugal::invalid_argument);
  }
}

TEST_CASE("accuracy: plan() totals add up") {
  const std::vector<float> a = gaussian(32 * 128, 3), b = gaussian(16 * 64, 4);
  const std::vector<q::tensor_input> tensors{{"a.weight", a, 128}, {"b.weight", b, 64}};

  SECTION("every tensor quantized") {
    const auto p = q::plan(tensors, bound::min_sqnr(18.0));
    REQUIRE(p.tensors.size() == 2);
    std::size_t before = 0, after = 0;
    for (const auto& t : p.tensors) {
      REQUIRE(t.chosen.has_value());
      CHECK(t.bytes_before == t.rows * t.cols * 2);
      CHECK(t.bytes_after == q::layout_of(*t.chosen, t.rows, t.cols).total_bytes);
      CHECK(t.bytes_after < t.bytes_before);
      CHECK(t.metrics.sqnr_db >= 18.0);
      before += t.bytes_before;
      after += t.bytes_after;
    }
    CHECK(p.tensors[0].name == "a.weight");
    CHECK(p.tensors[0].rows == 32);
    CHECK(p.total_bytes_before == before);
    CHECK(p.total_bytes_after == after);
    CHECK(p.total_bytes_before == (32 * 128 + 16 * 64) * 2);
  }
  SECTION("an unreachable bound keeps every tensor at the source size") {
    const auto p = q::plan(tensors, bound::min_sqnr(200.0), {}, 32);
    for (const auto& t : p.tensors) {
      CHECK_FALSE(t.chosen.has_value());
      CHECK(t.bytes_after == t.bytes_before);
      CHECK(std::isinf(t.metrics.sqnr_db));
      CHECK(t.metrics.bits_per_element == 32);
    }
    CHECK(p.total_bytes_after == p.total_bytes_before);
    CHECK(p.total_bytes_before == (32 * 128 + 16 * 64) * 4);
  }
  SECTION("bad input names the tensor") {
    const std::vector<q::tensor_input> bad{{"a.weight", a, 128}, {"broken", b, 0}};
    CHECK_THROWS_AS(q::plan(bad, bound::min_sqnr(10.0)), frugal::invalid_argument);
    CHECK_THROWS_WITH(q::plan(bad, bound::min_sqnr(10.0)), Catch::Contains("'broken'"));
    CHECK_THROWS_AS(q::plan(tensors, bound::min_sqnr(10.0), {}, 0), frugal::invalid_argument);
  }
}

TEST_CASE("accuracy: plan() over a safetensors checkpoint") {
  const std::vector<float> w = gaussian(64 * 128, 5);
  std::vector<std::uint16_t> half;
  for (float x : w) half.push_back(frugal::detail::float_to_bfloat16_bits(x));
  const std::vector<std::int64_t> ids(10, 7);
  const std::vector<q::tensor_to_write> tensors{
      {"layer.weight", q::dtype::bf16, {64, 128}, std::as_bytes(std::span(half))},
      {"position_ids", q::dtype::i64, {10}, std::as_bytes(std::span(ids))}};
  const auto image = q::serialize_safetensors(tensors);
  const auto file = q::safetensors_file::from_bytes(image);
  const auto p = q::plan(file, bound::min_sqnr(18.0));
  REQUIRE(p.tensors.size() == 2);
  CHECK(p.tensors[0].name == "layer.weight");
  REQUIRE(p.tensors[0].chosen.has_value());
  CHECK(p.tensors[0].bytes_before == 64 * 128 * 2);
  CHECK(p.tensors[1].name == "position_ids");
  CHECK_FALSE(p.tensors[1].chosen.has_value());
  CHECK(p.tensors[1].bytes_before == 80);
  CHECK(p.tensors[1].bytes_after == 80);
  CHECK(p.total_bytes_before == 64 * 128 * 2 + 80);
  CHECK(p.total_bytes_after == p.tensors[0].bytes_after + 80);
}

TEST_CASE("accuracy: every format on N(0,1) data meets its derived SQNR floor") {
  const std::size_t rows = 256, cols = 4096;
  const std::vector<float> w = gaussian(rows * cols, 42);
  std::printf("\nSQNR on N(0,1) data, %zu x %zu, mt19937_64 seed 42 (floor = model - 1 dB)\n", rows,
              cols);
  std::printf(
      "| format | bits / element | SQNR dB | floor dB | relative L2 | max abs | cosine |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& fi : q::all_formats()) {
    const auto m = q::evaluate(w, cols, fi.id);
    const double floor = gaussian_floors().at(fi.id);
    std::printf("| %s | %.3f | %.2f | %.1f | %.5f | %.4f | %.6f |\n", fi.name.data(),
                m.bits_per_element, m.sqnr_db, floor, m.relative_l2, m.max_abs, m.cosine);
    INFO(fi.name << ": SQNR " << m.sqnr_db << " dB, floor " << floor << " dB");
    CHECK(m.sqnr_db >= floor);
    CHECK(m.relative_l2 == Approx(std::pow(10.0, -m.sqnr_db / 20.0)).epsilon(1e-9));
    CHECK(m.cosine > 0.99);
  }
}
