// The CPU reference quantizer (frugal/quant/quantize.hpp) and the shared block arithmetic
// (frugal/quant/detail/block.hpp): hand-worked bytes for every format family, GGUF blocks
// against a literal transcription of ggml's reference algorithm, exact round trips of
// representable values, fp16/bf16 inputs, NaN and infinity, bad input (typed error, nothing
// allocated, output untouched) and thread-count independence.
#include "mr/test_resources.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/quant/codecs.hpp>
#include <frugal/quant/detail/block.hpp>
#include <frugal/quant/detail/fast_codecs.hpp>
#include <frugal/quant/quantize.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace frugal::quant;
using frugal::testing::budget_resource;

namespace {

std::vector<std::uint8_t> bytes_of(const std::uint8_t* p, std::size_t n) { return {p, p + n}; }

float scale_at(const quantized_tensor& q, std::size_t g) {
  float s;
  std::memcpy(&s, q.scales() + 4 * g, 4);
  return s;
}

std::vector<float> dequantized(const quantized_tensor& q) {
  std::vector<float> out(q.elements());
  dequantize(q, out);
  return out;
}

std::vector<float> random_values(std::size_t n, unsigned seed, float spread = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

}  // namespace

// ---- block helpers
// -------------------------------------------------------------------------------

TEST_CASE("rounding helpers match nearbyint and roundf", "[quant][block]") {
  for (int i = -2000; i <= 2000; ++i) {
    for (const float frac : {0.0f, 0.25f, 0.5f, 0.49999997f, 0.50000006f, 0.75f}) {
      const float x = static_cast<float>(i) / 4.0f + frac;
      CHECK(detail::round_half_even(x) == std::nearbyint(x));
      CHECK(detail::round_half_away(x) == std::round(x));
    }
  }
}

TEST_CASE("mx_scale_code: OCP floor and NVIDIA round-up", "[quant][block]") {
  // OCP: 2^(floor(log2 amax) - emax). amax 3 -> 2^(1 - 8) for E4M3 -> code 120.
  CHECK(detail::mx_scale_code(3.0f, e4m3_emax, e4m3_max, false) == 120);
  CHECK(detail::mx_scale_code(6.0f, e2m1_emax, e2m1_max, false) == 127);
  CHECK(detail::mx_scale_code(0.0f, e4m3_emax, e4m3_max, false) == 0);
  CHECK(detail::mx_scale_code(1e-38f, e4m3_emax, e4m3_max, false) == 0);  // clamped at 2^-127
  // Round-up: 2^ceil(log2(amax / max)). 500 / 448 -> 2^1; the OCP choice is 2^0 and saturates.
  CHECK(detail::mx_scale_code(500.0f, e4m3_emax, e4m3_max, false) == 127);
  CHECK(detail::mx_scale_code(500.0f, e4m3_emax, e4m3_max, true) == 128);
  CHECK(detail::mx_scale_code(7.0f, e2m1_emax, e2m1_max, true) == 128);
  CHECK(detail::mx_scale_code(6.0f, e2m1_emax, e2m1_max, true) == 127);
  CHECK(detail::e8m0_inverse(120) == 128.0f);
  CHECK(detail::e8m0_inverse(127) == 1.0f);
  CHECK(detail::e8m0_inverse(0) == std::ldexp(1.0f, 127));
}

TEST_CASE("nf4 codes: nearest codebook value, ties to the lower code", "[quant][block]") {
  for (int c = 0; c < 16; ++c) CHECK(detail::nf4_code(detail::nf4_value(c)) == c);
  for (int t = 0; t < 15; ++t) {
    CHECK(detail::nf4_code(detail::nf4_threshold(t)) == t);  // exactly on a midpoint: lower
    CHECK(detail::nf4_code(std::nextafter(detail::nf4_threshold(t), 2.0f)) == t + 1);
  }
  CHECK(detail::nf4_code(qnan) == 7);
  CHECK(detail::nf4_code(-inf) == 0);
  CHECK(detail::nf4_code(inf) == 15);
}

// ---- hand-worked bytes per family
// ----------------------------------------------------------------

TEST_CASE("int8 per tensor, symmetric: scale amax/127, codes round half to even", "[quant][int8]") {
  frugal::host_resource host;
  const std::vector<float> x = {0.0f, 1.5f, -127.0f, 2.5f, 126.4f};
  const quantized_tensor q = quantize(format::int8, x, 5, host);
  CHECK(scale_at(q, 0) == 1.0f);
  CHECK(bytes_of(q.values(), 5) == std::vector<std::uint8_t>{0x00, 0x02, 0x81, 0x02, 0x7E});
  CHECK(dequantized(q) == std::vector<float>{0.0f, 2.0f, -127.0f, 2.0f, 126.0f});
}

TEST_CASE("int8 per tensor, asymmetric: range extended to 0, uint8 zero point", "[quant][int8]") {
  frugal::host_resource host;
  const std::vector<float> x = {-10.0f, 0.0f, 245.0f, 3.5f};
  const quantized_tensor q = quantize(format::int8_asym, x, 2, host);
  CHECK(scale_at(q, 0) == 1.0f);
  CHECK(q.zero_points()[0] == 10);
  CHECK(bytes_of(q.values(), 4) == std::vector<std::uint8_t>{0, 10, 255, 14});
  CHECK(dequantized(q) == std::vector<float>{-10.0f, 0.0f, 245.0f, 4.0f});
  // All positive: the range still includes 0, so the zero point is 0.
  const std::vector<float> pos = {51.0f, 102.0f};
  const quantized_tensor p = quantize(format::int8_asym, pos, 2, host);
  CHECK(scale_at(p, 0) == 102.0f / 255.0f);
  CHECK(p.zero_points()[0] == 0);
}

TEST_CASE("int8 per channel: one scale per row", "[quant][int8]") {
  frugal::host_resource host;
  const std::vector<float> x = {127.0f, -63.5f, 0.5f, -0.25f};
  const quantized_tensor q = quantize(format::int8_channel, x, 2, host);
  CHECK(scale_at(q, 0) == 1.0f);
  CHECK(scale_at(q, 1) == 0.5f / 127.0f);
  CHECK(bytes_of(q.values(), 4) == std::vector<std::uint8_t>{127, 0xC0, 127, 0xC0});
}

TEST_CASE("int4 groups, symmetric: codes -7..7 as two's complement nibbles, even element low",
          "[quant][int4]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = 7.0f;
  x[1] = -7.0f;
  x[2] = 2.5f;   // -> 2
  x[3] = -3.5f;  // -> -4
  const quantized_tensor q = quantize(format::int4_g32, x, 32, host);
  CHECK(scale_at(q, 0) == 1.0f);
  std::vector<std::uint8_t> expected(16, 0x00);
  expected[0] = 0x97;
  expected[1] = 0xC2;
  CHECK(bytes_of(q.values(), 16) == expected);
  const std::vector<float> back = dequantized(q);
  CHECK(back[0] == 7.0f);
  CHECK(back[1] == -7.0f);
  CHECK(back[2] == 2.0f);
  CHECK(back[3] == -4.0f);
}

TEST_CASE("int4 groups, asymmetric: codes 0..15 with a uint8 zero point", "[quant][int4]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = -5.0f;
  x[1] = 10.0f;
  x[3] = 1.5f;  // round(1.5) = 2, + 5
  const quantized_tensor q = quantize(format::int4_g32_asym, x, 32, host);
  CHECK(scale_at(q, 0) == 1.0f);
  CHECK(q.zero_points()[0] == 5);
  std::vector<std::uint8_t> expected(16, 0x55);
  expected[0] = 0xF0;
  expected[1] = 0x75;
  CHECK(bytes_of(q.values(), 16) == expected);
}

TEST_CASE("fp8 per tensor: scale amax / max, codes by the saturating codec", "[quant][fp8]") {
  frugal::host_resource host;
  const std::vector<float> x = {448.0f, -1.5f, 3.3f, 0.0f};
  const quantized_tensor q = quantize(format::fp8_e4m3, x, 4, host);
  CHECK(scale_at(q, 0) == 1.0f);
  CHECK(bytes_of(q.values(), 4) == std::vector<std::uint8_t>{0x7E, 0xBC, 0x45, 0x00});
  const std::vector<float> y = {57344.0f, -1.5f, 0.0f, 2.0f};
  const quantized_tensor r = quantize(format::fp8_e5m2, y, 2, host);
  CHECK(scale_at(r, 0) == 1.0f);
  CHECK(bytes_of(r.values(), 4) == std::vector<std::uint8_t>{0x7B, 0xBE, 0x00, 0x40});
  // Per channel: row 1 has amax 896, scale 2.
  const std::vector<float> z = {448.0f, 1.0f, 896.0f, -2.0f};
  const quantized_tensor c = quantize(format::fp8_e4m3_channel, z, 2, host);
  CHECK(scale_at(c, 0) == 1.0f);
  CHECK(scale_at(c, 1) == 2.0f);
  CHECK(bytes_of(c.values(), 4) == std::vector<std::uint8_t>{0x7E, 0x38, 0x7E, 0xB8});
}

TEST_CASE("mxfp8 and mxfp4: E8M0 block scales, OCP and round-up", "[quant][mx]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = 3.0f;  // amax 3: scale 2^-7 (code 120), 3 * 128 = 384 -> 0x7C
  x[1] = -0.5f;
  quantized_tensor q = quantize(format::mxfp8, x, 32, host);
  CHECK(q.scales()[0] == 120);
  CHECK(q.values()[0] == 0x7C);
  CHECK(q.values()[1] == to_fp8_e4m3(-64.0f));
  x[0] = 500.0f;  // OCP: scale 1, 500 saturates to 448; round-up: scale 2, 250 -> 256
  q = quantize(format::mxfp8, x, 32, host);
  CHECK(q.scales()[0] == 127);
  CHECK(q.values()[0] == 0x7E);
  options up;
  up.mx_round_up_scale = true;
  q = quantize(format::mxfp8, x, 32, host, up);
  CHECK(q.scales()[0] == 128);
  CHECK(q.values()[0] == 0x78);

  std::vector<float> f(32, 0.0f);
  f[0] = 6.0f;
  f[1] = -0.5f;
  f[2] = 1.25f;  // tie between 1 and 1.5 -> 1 (even)
  f[3] = 5.0f;   // tie between 4 and 6 -> 4 (even)
  q = quantize(format::mxfp4, f, 32, host);
  CHECK(q.scales()[0] == 127);
  CHECK(q.values()[0] == 0x97);
  CHECK(q.values()[1] == 0x62);
  CHECK(q.values()[2] == 0x00);
}

TEST_CASE("nvfp4: tensor scale 2688/amax, E4M3 block scales, TE's order", "[quant][nvfp4]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = 2688.0f;  // block 0: amax 2688 -> block scale 448 (0x7E), element 6 (0x7)
  x[16] = 6.0f;    // block 1: amax 6 -> block scale 1 (0x38)
  x[17] = -0.5f;
  const quantized_tensor q = quantize(format::nvfp4, x, 32, host);
  float tensor_scale;
  std::memcpy(&tensor_scale, q.tensor_scale(), 4);
  CHECK(tensor_scale == 1.0f);  // encode 2688 / 2688 = 1
  CHECK(q.scales()[0] == 0x7E);
  CHECK(q.scales()[1] == 0x38);
  CHECK(q.values()[0] == 0x07);
  CHECK(q.values()[8] == 0x97);
  const std::vector<float> back = dequantized(q);
  CHECK(back[0] == 2688.0f);
  CHECK(back[16] == 6.0f);
  CHECK(back[17] == -0.5f);
  // An all-zero tensor: encode scale 1, block scales 0, codes 0.
  const std::vector<float> zeros(16, 0.0f);
  const quantized_tensor z = quantize(format::nvfp4, zeros, 16, host);
  std::memcpy(&tensor_scale, z.tensor_scale(), 4);
  CHECK(tensor_scale == 1.0f);
  CHECK(z.scales()[0] == 0);
  CHECK(bytes_of(z.values(), 8) == std::vector<std::uint8_t>(8, 0));
  CHECK(dequantized(z) == zeros);
}

TEST_CASE("nf4: absmax per 64, nearest codebook value, even element in the low nibble",
          "[quant][nf4]") {
  frugal::host_resource host;
  std::vector<float> x(64, 0.0f);
  x[0] = 2.0f;   // 1.0 -> 15
  x[1] = -2.0f;  // -1.0 -> 0
  x[3] = 1.0f;   // 0.5 -> 12 (threshold 0.5017)
  const quantized_tensor q = quantize(format::nf4, x, 64, host);
  CHECK(scale_at(q, 0) == 2.0f);
  std::vector<std::uint8_t> expected(32, 0x77);
  expected[0] = 0x0F;
  expected[1] = 0xC7;
  CHECK(bytes_of(q.values(), 32) == expected);
  CHECK(dequantized(q)[3] == 2.0f * detail::nf4_value(12));
}

// ---- GGUF
// ----------------------------------------------------------------------------------------

namespace {

// ggml's reference quantizers, written out literally from the published algorithm (scalar
// loops, roundf, C casts), to check the branch-free block functions against.
void ggml_style_q8_0(const float* x, std::uint8_t* rec) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const std::uint16_t h = frugal::detail::float_to_half_bits(d);
  std::memcpy(rec, &h, 2);
  for (int j = 0; j < 32; ++j) {
    const float x0 = x[j] * id;
    rec[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::roundf(x0)));
  }
}

void ggml_style_q4_0(const float* x, std::uint8_t* rec) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const std::uint16_t h = frugal::detail::float_to_half_bits(d);
  std::memcpy(rec, &h, 2);
  for (int j = 0; j < 16; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[16 + j] * id;
    const auto q0 = static_cast<std::uint8_t>(
        std::min(15, static_cast<int>(static_cast<std::int8_t>(x0 + 8.5f))));
    const auto q1 = static_cast<std::uint8_t>(
        std::min(15, static_cast<int>(static_cast<std::int8_t>(x1 + 8.5f))));
    rec[2 + j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

}  // namespace

TEST_CASE("q8_0: hand-worked record, roundf ties away from zero", "[quant][gguf]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = -127.0f;
  x[2] = 2.5f;
  x[3] = -2.5f;
  x[4] = 0.49f;
  const quantized_tensor q = quantize(format::q8_0, x, 32, host);
  REQUIRE(q.bytes() == 34);
  std::vector<std::uint8_t> expected(34, 0);
  expected[0] = 0x00;  // fp16 1.0 = 0x3C00, little-endian
  expected[1] = 0x3C;
  expected[2] = 127;
  expected[3] = 0x81;
  expected[4] = 3;
  expected[5] = 0xFD;
  CHECK(bytes_of(q.data(), 34) == expected);
}

TEST_CASE("q4_0: hand-worked record, signed max, first of a tie wins", "[quant][gguf]") {
  frugal::host_resource host;
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;   // max = -8: d = 1
  x[16] = 7.0f;   // 15
  x[1] = 2.5f;    // int(11.0) = 11
  x[17] = -0.5f;  // 8
  x[2] = 7.9f;    // int(16.4) = 16 -> 15
  const quantized_tensor q = quantize(format::q4_0, x, 32, host);
  REQUIRE(q.bytes() == 18);
  std::vector<std::uint8_t> expected(18, 0x88);
  expected[0] = 0x00;
  expected[1] = 0x3C;
  expected[2] = 0xF0;
  expected[3] = 0x8B;
  expected[4] = 0x8F;
  CHECK(bytes_of(q.data(), 18) == expected);

  std::vector<float> tie(32, 0.0f);
  tie[0] = 5.0f;
  tie[1] = -5.0f;  // same magnitude, later: the scale keeps the sign of 5 -> d = -0.625
  CHECK(quantize(format::q4_0, tie, 32, host).data()[1] == 0xB9);
  std::swap(tie[0], tie[1]);
  CHECK(quantize(format::q4_0, tie, 32, host).data()[1] == 0x39);
}

TEST_CASE("q8_0 and q4_0 are bit-identical to ggml's reference algorithm", "[quant][gguf]") {
  frugal::host_resource host;
  std::vector<float> x = random_values(32 * 512, 7);
  // Exact ties and repeated magnitudes.
  for (std::size_t i = 0; i < 32 * 64; ++i) x[i] = std::round(x[i] * 2.0f) / 2.0f;
  for (std::size_t i = 32 * 64; i < 32 * 65; ++i) x[i] = (i % 2 ? 1.0f : -1.0f);
  const quantized_tensor q8 = quantize(format::q8_0, x, 32 * 16, host);
  const quantized_tensor q4 = quantize(format::q4_0, x, 32 * 16, host);
  std::vector<std::uint8_t> rec(34);
  for (std::size_t b = 0; b < x.size() / 32; ++b) {
    ggml_style_q8_0(x.data() + 32 * b, rec.data());
    REQUIRE(bytes_of(q8.data() + 34 * b, 34) == rec);
    ggml_style_q4_0(x.data() + 32 * b, rec.data());
    REQUIRE(bytes_of(q4.data() + 18 * b, 18) ==
            std::vector<std::uint8_t>(rec.begin(), rec.begin() + 18));
  }
}

// ---- round trips of representable values
// ---------------------------------------------------------

namespace {

/// An input every element of which `f` represents exactly (and whose scales are exact).
std::vector<float> representable(format f, std::size_t rows, std::size_t cols) {
  const format_info& fi = info(f);
  std::vector<float> x(rows * cols);
  std::mt19937 rng(11);
  const std::size_t g = fi.shared_by == granularity::block ? fi.block : cols;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const bool first = i % g == 0;   // carries the group's largest magnitude
    const bool second = i % g == 1;  // asymmetric: carries the other end of the range
    const int k = static_cast<int>(rng() % 1000);
    switch (fi.code) {
      case element::int8:
      case element::int4: {
        const int qmax = fi.code == element::int8 ? 127 : 7;
        if (f == format::q4_0) {
          x[i] = first ? -8.0f : static_cast<float>(k % 16 - 8);
        } else if (fi.asymmetric) {
          const int top = fi.code == element::int8 ? 255 : 15;  // codes 0..top, zero point 3
          const int code = first ? top : second ? 0 : k % (top + 1);
          x[i] = static_cast<float>(code - 3) * 0.25f;
        } else {
          x[i] = first ? qmax * 0.5f : static_cast<float>(k % (2 * qmax + 1) - qmax) * 0.5f;
        }
        break;
      }
      case element::fp8_e4m3:
      case element::fp8_e5m2: {
        const bool e5 = fi.code == element::fp8_e5m2;
        const float max = f == format::mxfp8 ? 448.0f : (e5 ? e5m2_max : e4m3_max);
        const auto code = static_cast<std::uint8_t>(k % 0x7E);
        const float v =
            e5 ? from_fp8_e5m2(static_cast<std::uint8_t>(k % 0x7B)) : from_fp8_e4m3(code);
        x[i] = first ? max : (k % 2 ? -v : v);
        break;
      }
      case element::fp4_e2m1: {
        const float v = from_fp4_e2m1(static_cast<std::uint8_t>(k % 16));
        if (f == format::nvfp4 && i == 0)
          x[i] = 2688.0f;  // tensor encode scale 1
        else if (f == format::nvfp4 && i < 16)
          x[i] = 448.0f * v;  // block scale 448
        else
          x[i] = first ? 6.0f : v;
        break;
      }
      case element::nf4:
        x[i] = first ? 1.0f : detail::nf4_value(k % 16);
        break;
    }
  }
  return x;
}

}  // namespace

TEST_CASE("dequantize(quantize(x)) == x for values each format represents", "[quant]") {
  frugal::host_resource host;
  for (const format_info& fi : all_formats()) {
    INFO(fi.name);
    const std::vector<float> x = representable(fi.id, 4, 256);
    const quantized_tensor q = quantize(fi.id, x, 256, host);
    CHECK(q.format() == fi.id);
    CHECK(q.rows() == 4);
    CHECK(q.cols() == 256);
    const std::vector<float> back = dequantized(q);
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < x.size(); ++i) mismatches += back[i] == x[i] ? 0 : 1;
    CHECK(mismatches == 0);
  }
}

TEST_CASE("fp16 and bf16 inputs give the bytes of the same values in float", "[quant]") {
  frugal::host_resource host;
  const std::vector<float> raw = random_values(8 * 256, 3);
  std::vector<frugal::float16> h(raw.size());
  std::vector<frugal::bfloat16> b(raw.size());
  std::vector<float> hf(raw.size()), bf(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    h[i] = frugal::float16(raw[i]);
    b[i] = frugal::bfloat16(raw[i]);
    hf[i] = static_cast<float>(h[i]);
    bf[i] = static_cast<float>(b[i]);
  }
  for (const format_info& fi : all_formats()) {
    INFO(fi.name);
    const quantized_tensor from_half =
        quantize(fi.id, std::span<const frugal::float16>(h), 256, host);
    const quantized_tensor from_float_h = quantize(fi.id, hf, 256, host);
    CHECK(bytes_of(from_half.data(), from_half.bytes()) ==
          bytes_of(from_float_h.data(), from_float_h.bytes()));
    const quantized_tensor from_bf =
        quantize(fi.id, std::span<const frugal::bfloat16>(b), 256, host);
    const quantized_tensor from_float_b = quantize(fi.id, bf, 256, host);
    CHECK(bytes_of(from_bf.data(), from_bf.bytes()) ==
          bytes_of(from_float_b.data(), from_float_b.bytes()));
  }
}

// ---- NaN and infinity
// ----------------------------------------------------------------------------

TEST_CASE("NaN and infinity: skipped by scales, then encoded per format", "[quant][nan]") {
  frugal::host_resource host;
  std::vector<float> x(64, 0.0f);
  x[0] = qnan;
  x[1] = inf;
  x[2] = -inf;
  x[3] = 1.0f;
  SECTION("int8 groups: NaN -> 0, ±inf -> ±127") {
    const quantized_tensor q = quantize(format::int8_g32, x, 64, host);
    CHECK(scale_at(q, 0) == 1.0f / 127.0f);
    CHECK(bytes_of(q.values(), 4) == std::vector<std::uint8_t>{0x00, 0x7F, 0x81, 0x7F});
  }
  SECTION("int4 asymmetric: NaN -> zero point, ±inf -> 15 / 0") {
    const quantized_tensor q = quantize(format::int4_g32_asym, x, 64, host);
    CHECK(q.zero_points()[0] == 0);
    CHECK(q.values()[0] == 0xF0);
    CHECK(q.values()[1] == 0xF0);
  }
  SECTION("fp8: the codec decides (NaN -> 0x7F, ±inf -> ±448)") {
    const quantized_tensor q = quantize(format::fp8_e4m3, x, 64, host);
    CHECK(scale_at(q, 0) == 1.0f / 448.0f);
    CHECK(bytes_of(q.values(), 4) == std::vector<std::uint8_t>{0x7F, 0x7E, 0xFE, 0x7E});
    CHECK(std::isnan(dequantized(q)[0]));
  }
  SECTION("mxfp4 and nvfp4: E2M1 has no NaN, the codec gives +6") {
    // mxfp4: amax 1 -> scale 2^-2, so 1 encodes as 4 (0x6).
    const quantized_tensor m = quantize(format::mxfp4, x, 64, host);
    CHECK(m.scales()[0] == 125);
    CHECK(m.values()[0] == 0x77);
    CHECK(m.values()[1] == 0x6F);
    // nvfp4: amax 1 -> block scale 448 under a tensor scale 1/2688, so 1 encodes as 6 (0x7).
    const quantized_tensor n = quantize(format::nvfp4, x, 64, host);
    CHECK(n.scales()[0] == 0x7E);
    CHECK(n.values()[0] == 0x77);
    CHECK(n.values()[1] == 0x7F);
  }
  SECTION("nf4: NaN -> 7 (0.0), ±inf -> 15 / 0") {
    const quantized_tensor q = quantize(format::nf4, x, 64, host);
    CHECK(scale_at(q, 0) == 1.0f);
    CHECK(q.values()[0] == 0xF7);
    CHECK(q.values()[1] == 0xF0);
  }
  SECTION("q8_0 and q4_0: NaN -> 0.0, ±inf saturate") {
    const quantized_tensor q8 = quantize(format::q8_0, x, 64, host);
    CHECK(bytes_of(q8.data() + 2, 4) == std::vector<std::uint8_t>{0x00, 0x7F, 0x81, 0x7F});
    const quantized_tensor q4 = quantize(format::q4_0, x, 64, host);  // d = -1/8
    CHECK((q4.data()[2] & 0xF) == 8);
    CHECK((q4.data()[3] & 0xF) == 0);
    CHECK((q4.data()[4] & 0xF) == 15);
  }
  SECTION("an all-zero group: scale 0, codes 0, no NaN on the way back") {
    const std::vector<float> zeros(128, 0.0f);
    for (const format_info& fi : all_formats()) {
      INFO(fi.name);
      const std::vector<float> back = dequantized(quantize(fi.id, zeros, 128, host));
      for (const float v : back) CHECK(v == 0.0f);
    }
  }
}

// ---- the one decoded NaN
// --------------------------------------------------------------------------- A CUDA device returns
// 0x7FFFFFFF for a float product with a NaN operand, x86 returns the NaN operand itself and gives
// 0xFFC00000 for 0 * inf; every decoder therefore writes one pattern, 0x7FC00000, whatever NaN its
// product gave. These tests pin that pattern on the CPU, so the device's bit-for-bit comparison
// (tests/gpu/quant.test.cpp) can only pass if the device writes it too.

namespace {

constexpr std::uint32_t decoded_nan = 0x7FC00000u;

std::uint32_t bits_of(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

float float_from_bits(std::uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

/// A negative quiet NaN with a payload: what x86 would hand through a product unchanged.
const float payload_nan = float_from_bits(0xFFC01234u);

}  // namespace

TEST_CASE("canonical_nan: every NaN becomes 0x7FC00000, everything else is unchanged",
          "[quant][nan]") {
  for (const std::uint32_t b :
       {0x7FC00000u, 0xFFC00000u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7F800001u, 0xFFC01234u, 0x7FA00000u})
    CHECK(bits_of(detail::canonical_nan(float_from_bits(b))) == decoded_nan);
  for (const std::uint32_t b : {0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u, 0x3F800000u,
                                0x00000001u, 0x7F7FFFFFu, 0xFF7FFFFFu})
    CHECK(bits_of(detail::canonical_nan(float_from_bits(b))) == b);
  static_assert(detail::decoded_nan_bits == decoded_nan);
}

TEST_CASE("decoders write the NaN 0x7FC00000 for NaN codes, NaN scales and 0 * inf",
          "[quant][nan]") {
  float out[32];
  auto all_nan = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (bits_of(out[i]) != decoded_nan) return false;
    return true;
  };
  SECTION("fp8 NaN codes times a finite scale (fp8_e4m3/e5m2 tensor and channel, mxfp8)") {
    const std::uint8_t e4m3[2] = {0x7F, 0xFF};
    detail::decode_fp8_e4m3(e4m3, 2, 0.25f, out);
    CHECK(all_nan(2));
    const std::uint8_t e5m2[6] = {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF};
    detail::decode_fp8_e5m2(e5m2, 6, 3.0f, out);
    CHECK(all_nan(6));
    detail::decode_fp8_e4m3(e4m3, 2, from_e8m0(120), out);  // mxfp8's decode
    CHECK(all_nan(2));
  }
  SECTION("a NaN scale, whatever its bits") {
    const std::uint8_t codes[4] = {0x00, 0x38, 0xB8, 0x7F};
    detail::decode_fp8_e4m3(codes, 4, payload_nan, out);
    CHECK(all_nan(4));
    detail::decode_fp8_e5m2(codes, 4, payload_nan, out);
    CHECK(all_nan(4));
    detail::decode_int8<false>(codes, 4, payload_nan, 0, out);
    CHECK(all_nan(4));
    detail::decode_int8<true>(codes, 4, payload_nan, 7, out);
    CHECK(all_nan(4));
    detail::decode_int4<true>(codes, 4, payload_nan, 3, out);
    CHECK(all_nan(4));
    detail::decode_fp4(codes, 4, from_e8m0(e8m0_nan_code), out);  // mxfp4's NaN scale code
    CHECK(all_nan(4));
    detail::decode_fp4(codes, 4, detail::nvfp4_decode_scale(0x7F, 0.5f), out);  // NaN block code
    CHECK(all_nan(4));
    detail::decode_fp4(codes, 4, detail::nvfp4_decode_scale(0x38, payload_nan), out);
    CHECK(all_nan(4));
    detail::decode_nf4(codes, 4, payload_nan, out);
    CHECK(all_nan(4));
  }
  SECTION("zero codes times an infinite scale") {
    const std::uint8_t zeros[4] = {0x00, 0x00, 0x80, 0x80};
    detail::decode_fp8_e4m3(zeros, 4, inf, out);
    CHECK(all_nan(4));
    detail::decode_int8<false>(zeros, 2, -inf, 0, out);
    CHECK(all_nan(2));
    const std::uint8_t at_zero_point[2] = {0x99, 0x99};  // int4 codes 9 with zero point 9
    detail::decode_int4<true>(at_zero_point, 4, inf, 9, out);
    CHECK(all_nan(4));
    const std::uint8_t nf4_zero[2] = {0x77, 0x77};  // code 7 is 0.0
    detail::decode_nf4(nf4_zero, 4, inf, out);
    CHECK(all_nan(4));
    detail::decode_fp4(zeros, 4, inf, out);
    CHECK(all_nan(4));
    // ±inf codes (E5M2 0x7C / 0xFC) times a zero scale
    const std::uint8_t infinities[2] = {0x7C, 0xFC};
    detail::decode_fp8_e5m2(infinities, 2, 0.0f, out);
    CHECK(all_nan(2));
  }
  SECTION("GGUF records with a NaN or infinite FP16 d") {
    std::uint8_t record[detail::q8_0_record_bytes] = {};
    record[0] = 0x01;  // d = 0xFE01: a negative NaN with a payload
    record[1] = 0xFE;
    record[2] = 0x05;
    detail::decode_q8_0(record, out);
    CHECK(all_nan(32));
    detail::decode_q4_0(record, out);
    CHECK(all_nan(32));
    record[0] = 0x00;  // d = +inf: code 0 (q8_0) and nibble 8 (q4_0) are 0 * inf
    record[1] = 0x7C;
    record[2] = 0x00;
    record[3] = 0x88;
    detail::decode_q8_0(record, out);
    CHECK(bits_of(out[0]) == decoded_nan);
    detail::decode_q4_0(record, out);
    CHECK(bits_of(out[1]) == decoded_nan);
    CHECK(bits_of(out[17]) == decoded_nan);
  }
  SECTION("the vectorized CPU decoders write the same NaN") {
    const std::uint8_t codes[4] = {0x7F, 0xFF, 0x00, 0x38};
    detail::fast_decode_fp8_e4m3(codes, 2, 0.5f, out);
    CHECK(all_nan(2));
    detail::fast_decode_fp8_e5m2(codes, 2, 0.5f, out);
    CHECK(all_nan(2));
    detail::fast_decode_fp8_e4m3(codes, 4, payload_nan, out);
    CHECK(all_nan(4));
    detail::fast_decode_fp4(codes, 4, payload_nan, out);
    CHECK(all_nan(4));
    detail::fast_decode_fp4(codes + 2, 4, inf, out);  // 0x00 and 0x38: nibbles 0, 0, 8 (-0), 3
    CHECK(bits_of(out[0]) == decoded_nan);
    CHECK(bits_of(out[1]) == decoded_nan);
    CHECK(bits_of(out[2]) == decoded_nan);
    CHECK(bits_of(out[3]) == 0x7F800000u);
  }
}

TEST_CASE("dequantize writes the NaN 0x7FC00000 for every format", "[quant][nan]") {
  frugal::host_resource host;
  std::vector<float> x = random_values(4 * 128, 19);
  x[5] = qnan;
  x[130] = -qnan;
  x[300] = inf;
  x[301] = -inf;
  SECTION("NaN inputs that come back as NaN (fp8 tensor and channel, mxfp8)") {
    for (const format f : {format::fp8_e4m3, format::fp8_e5m2, format::fp8_e4m3_channel,
                           format::fp8_e5m2_channel, format::mxfp8}) {
      INFO(to_string(f));
      const std::vector<float> back = dequantized(quantize(f, x, 128, host));
      CHECK(bits_of(back[5]) == decoded_nan);
      CHECK(bits_of(back[130]) == decoded_nan);
      std::size_t nans = 0;
      for (const float v : back) nans += std::isnan(v) ? 1 : 0;
      CHECK(nans == 2);
    }
  }
  SECTION("every scale overwritten with a NaN: every element is the one NaN") {
    for (const format_info& fi : all_formats()) {
      INFO(fi.name);
      quantized_tensor q = quantize(fi.id, x, 128, host);
      const layout& l = q.layout();
      if (fi.id == format::q8_0 || fi.id == format::q4_0) {
        const std::size_t record =
            fi.id == format::q8_0 ? detail::q8_0_record_bytes : detail::q4_0_record_bytes;
        for (std::size_t r = 0; r < l.values_bytes / record; ++r) {
          q.values()[r * record] = 0x01;  // FP16 0xFE01, a NaN with a payload
          q.values()[r * record + 1] = 0xFE;
        }
      } else {
        std::memset(q.scales(), 0xFF, l.scales_bytes);  // FP32 0xFFFFFFFF; E8M0 / E4M3 NaN
      }
      const std::vector<float> back = dequantized(q);
      std::size_t other = 0;
      for (const float v : back) other += bits_of(v) != decoded_nan ? 1 : 0;
      CHECK(other == 0);
    }
  }
}

// ---- bad input
// -----------------------------------------------------------------------------------

TEST_CASE("bad input throws invalid_argument and allocates nothing", "[quant][errors]") {
  budget_resource counted;
  const std::vector<float> x(96, 1.0f);
  auto refuses = [&](format f, std::span<const float> in, std::size_t cols, const char* words) {
    INFO(words);
    try {
      (void)quantize(f, in, cols, counted);
      FAIL("no exception");
    } catch (const frugal::invalid_argument& e) {
      CHECK(std::string(e.what()).find(words) != std::string::npos);
    }
    CHECK(counted.allocations == 0);
  };
  refuses(format::int8, std::span<const float>(), 4, "empty");
  refuses(format::int8, x, 0, "cols must be positive");
  refuses(format::int8, x, 7, "not a multiple of cols");
  refuses(format::int4_g32, x, 48, "divisible by 32");
  refuses(format::nf4, x, 96, "divisible by 64");
  frugal::testing::fake_device_resource device;
  CHECK_THROWS_AS(quantize(format::int8, x, 8, device), frugal::invalid_argument);
}

TEST_CASE("dequantize refuses a wrong output size and writes nothing", "[quant][errors]") {
  frugal::host_resource host;
  const std::vector<float> x = random_values(64, 5);
  const quantized_tensor q = quantize(format::int8_g32, x, 32, host);
  for (const std::size_t size : {std::size_t{0}, std::size_t{63}, std::size_t{65}}) {
    std::vector<float> out(size, 42.0f);
    CHECK_THROWS_AS(dequantize(q, out), frugal::invalid_argument);
    CHECK(out == std::vector<float>(size, 42.0f));
  }
  std::vector<float> out(64, 42.0f);
  CHECK_THROWS_AS(dequantize(quantized_tensor{}, out), frugal::invalid_argument);
  CHECK(out == std::vector<float>(64, 42.0f));
}

// ---- the handle
// ----------------------------------------------------------------------------------

TEST_CASE("padding between regions is zero", "[quant][tensor]") {
  frugal::host_resource host;
  const std::vector<float> x = random_values(3 * 32, 9);
  const quantized_tensor q = quantize(format::int8_g32_asym, x, 32, host);
  const layout& l = q.layout();
  for (std::size_t i = l.values_bytes; i < l.scales_offset; ++i) CHECK(q.data()[i] == 0);
  for (std::size_t i = l.scales_offset + l.scales_bytes; i < l.zero_points_offset; ++i)
    CHECK(q.data()[i] == 0);
  for (std::size_t i = l.zero_points_offset + l.zero_points_bytes; i < l.total_bytes; ++i)
    CHECK(q.data()[i] == 0);
}

// ---- threads
// -------------------------------------------------------------------------------------

TEST_CASE("multi-threaded quantize and dequantize are byte-identical to one thread",
          "[quant][threads]") {
  frugal::host_resource host;
  constexpr std::size_t rows = 1024, cols = 1280;  // 1.3 M elements: above the threshold
  const std::vector<float> x = random_values(rows * cols, 21);
  options one;
  one.threads = 1;
  options four;
  four.threads = 4;
  for (const format_info& fi : all_formats()) {
    INFO(fi.name);
    const quantized_tensor a = quantize(fi.id, x, cols, host, one);
    const quantized_tensor b = quantize(fi.id, x, cols, host, four);
    REQUIRE(a.bytes() == b.bytes());
    CHECK(std::memcmp(a.data(), b.data(), a.bytes()) == 0);
    std::vector<float> da(rows * cols), db(rows * cols);
    dequantize(a, da, one);
    dequantize(a, db, four);
    CHECK(std::memcmp(da.data(), db.data(), da.size() * sizeof(float)) == 0);
  }
}
