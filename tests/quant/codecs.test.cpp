// The element codecs against hand-derived tables, an independent brute-force reference (nearest
// representable value, ties to the even code) and, when the CUDA toolkit is installed, CUDA's
// own host conversion functions (cuda_fp8.h, cuda_fp4.h) on edge cases, 2^20 random bit patterns
// and, in the [long] cases, every float32.
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/codecs.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(FRUGAL_TEST_CUDA_CODECS)
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#endif

namespace q = frugal::quant;

namespace {

std::uint32_t bits_of(float x) { return __builtin_bit_cast(std::uint32_t, x); }
float float_of(std::uint32_t b) { return __builtin_bit_cast(float, b); }

constexpr std::uint32_t quiet_nan_bits = 0x7FC00000u;

// ---- Hand-derived description of the small float formats ----------------------------------------

struct small_float {
  const char* name;
  int mantissa_bits;
  int bias;
  unsigned code_bits;      // 8 or 4; the sign is the top bit
  unsigned max_magnitude;  // magnitude code of the largest finite value
  std::uint8_t nan_out;    // what the encoder gives for NaN
  std::uint8_t (*encode)(float);
  float (*decode)(std::uint8_t);

  unsigned sign_bit() const { return 1u << (code_bits - 1); }
  // Value of a magnitude code that is finite: m * 2^(1-bias-M) or (2^M + m) * 2^(e-bias-M).
  double value(unsigned magnitude) const {
    const unsigned e = magnitude >> mantissa_bits;
    const unsigned m = magnitude & ((1u << mantissa_bits) - 1u);
    if (e == 0) return std::ldexp(static_cast<double>(m), 1 - bias - mantissa_bits);
    return std::ldexp(static_cast<double>((1u << mantissa_bits) + m),
                      static_cast<int>(e) - bias - mantissa_bits);
  }
};

std::uint8_t enc_e4m3(float x) { return q::to_fp8_e4m3(x); }
std::uint8_t enc_e5m2(float x) { return q::to_fp8_e5m2(x); }
std::uint8_t enc_e2m1(float x) { return q::to_fp4_e2m1(x); }
float dec_e4m3(std::uint8_t c) { return q::from_fp8_e4m3(c); }
float dec_e5m2(std::uint8_t c) { return q::from_fp8_e5m2(c); }
float dec_e2m1(std::uint8_t c) { return q::from_fp4_e2m1(c); }

const small_float e4m3{"e4m3", 3, 7, 8, 0x7E, 0x7F, enc_e4m3, dec_e4m3};
const small_float e5m2{"e5m2", 2, 15, 8, 0x7B, 0x7F, enc_e5m2, dec_e5m2};
const small_float e2m1{"e2m1", 1, 1, 4, 0x7, 0x7, enc_e2m1, dec_e2m1};
const small_float* const small_floats[] = {&e4m3, &e5m2, &e2m1};

/// The reference encoder: saturate, else the nearest finite value by brute force, ties to the
/// even code. Independent of the bit manipulation in codecs.hpp.
std::uint8_t reference_encode(const small_float& f, float x) {
  if (std::isnan(x)) return f.nan_out;
  const unsigned sign = std::signbit(x) ? f.sign_bit() : 0u;
  const double a = std::fabs(static_cast<double>(x));
  unsigned best = f.max_magnitude;
  if (a < f.value(f.max_magnitude)) {
    unsigned hi = 0;
    while (f.value(hi) < a) ++hi;
    best = hi;
    if (f.value(hi) != a) {
      const unsigned lo = hi - 1;
      const double below = a - f.value(lo);
      const double above = f.value(hi) - a;
      best = below < above ? lo : above < below ? hi : (lo % 2 == 0 ? lo : hi);
    }
  }
  return static_cast<std::uint8_t>(sign | best);
}

/// The reference E8M0 encoder: 2^floor(log2|x|) or 2^ceil(log2|x|), clamped to [2^-127, 2^127].
std::uint8_t reference_e8m0(float x, bool round_up) {
  if (std::isnan(x)) return 0xFF;
  const double a = std::fabs(static_cast<double>(x));
  if (std::isinf(a)) return 0xFE;
  if (a == 0) return 0x00;
  int e = std::ilogb(a);  // exact: float denormals are normal doubles
  if (round_up && a != std::ldexp(1.0, e)) ++e;
  e = std::clamp(e, -127, 127);
  return static_cast<std::uint8_t>(e + 127);
}

/// Hand-derived decoding of an E8M0 code.
std::uint32_t reference_e8m0_decode_bits(unsigned code) {
  if (code == 0xFF) return quiet_nan_bits;
  return bits_of(static_cast<float>(std::ldexp(1.0, static_cast<int>(code) - 127)));
}

/// Inputs where codecs go wrong: specials, float denormal extremes, every representable value of
/// every format and the midpoints between neighbours, each with its float neighbours, powers of
/// two across the whole float range; all with both signs.
std::vector<float> edge_inputs() {
  std::vector<float> out;
  const auto add_around = [&](float v) {
    out.push_back(v);
    out.push_back(std::nextafter(v, 0.0f));
    out.push_back(std::nextafter(v, std::numeric_limits<float>::infinity()));
  };
  for (std::uint32_t b :
       {0x00000000u, 0x00000001u, 0x00000002u, 0x003FFFFFu, 0x00400000u, 0x00400001u, 0x007FFFFFu,
        0x00800000u, 0x00800001u, 0x7F000000u, 0x7F7FFFFFu, 0x7F800000u, 0x7F800001u, 0x7FA00000u,
        0x7FBFFFFFu, 0x7FC00000u, 0x7FC00001u, 0x7FFFFFFFu}) {
    out.push_back(float_of(b));
  }
  for (const small_float* f : small_floats) {
    for (unsigned m = 0; m <= f->max_magnitude; ++m) {
      add_around(static_cast<float>(f->value(m)));
      const double next = m < f->max_magnitude
                              ? f->value(m + 1)
                              : 2 * f->value(m) - f->value(m - 1);  // the first unrepresentable
      add_around(static_cast<float>((f->value(m) + next) / 2));
      add_around(static_cast<float>(next));
    }
  }
  for (int e = -149; e <= 127; ++e) {
    add_around(std::ldexp(1.0f, e));
    add_around(std::ldexp(1.5f, e));
  }
  const std::size_t positive = out.size();
  for (std::size_t i = 0; i < positive; ++i) out.push_back(-out[i]);
  return out;
}

std::vector<std::uint32_t> random_patterns(std::size_t count) {
  std::mt19937 gen(20240611u);
  std::vector<std::uint32_t> out(count);
  for (auto& b : out) b = static_cast<std::uint32_t>(gen());
  return out;
}

std::string hex(std::uint32_t b) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", b);
  return buf;
}

}  // namespace

// ---- Constants and constexpr use --------------------------------------------------------------

TEST_CASE("codecs: constants and constexpr encodings", "[quant][codecs]") {
  STATIC_REQUIRE(q::e4m3_max == 448.0f);
  STATIC_REQUIRE(q::e5m2_max == 57344.0f);
  STATIC_REQUIRE(q::e2m1_max == 6.0f);
  STATIC_REQUIRE(q::e4m3_emax == 8);
  STATIC_REQUIRE(q::e5m2_emax == 15);
  STATIC_REQUIRE(q::e2m1_emax == 2);
  STATIC_REQUIRE(q::from_fp8_e4m3(0x7E) == q::e4m3_max);
  STATIC_REQUIRE(q::from_fp8_e5m2(0x7B) == q::e5m2_max);
  STATIC_REQUIRE(q::from_fp4_e2m1(0x7) == q::e2m1_max);
  STATIC_REQUIRE(q::to_fp8_e4m3(1.0f) == 0x38);
  STATIC_REQUIRE(q::to_fp8_e4m3(3.3f) == 0x45);
  STATIC_REQUIRE(q::from_fp8_e4m3(0x45) == 3.25f);
  STATIC_REQUIRE(q::to_fp8_e4m3(-0.001953125f) == 0x81);  // -2^-9, the smallest subnormal
  STATIC_REQUIRE(q::to_fp8_e5m2(1.0f) == 0x3C);
  STATIC_REQUIRE(q::to_fp8_e5m2(-1.5f) == 0xBE);
  STATIC_REQUIRE(q::from_fp8_e5m2(0x01) == 0.0000152587890625f);  // 2^-16
  STATIC_REQUIRE(q::to_fp4_e2m1(2.9f) == 0x5);
  STATIC_REQUIRE(q::from_fp4_e2m1(0xD) == -3.0f);
  STATIC_REQUIRE(q::to_e8m0(0.3f) == 125);
  STATIC_REQUIRE(q::to_e8m0(0.3f, true) == 126);
  STATIC_REQUIRE(q::from_e8m0(127) == 1.0f);
  STATIC_REQUIRE(q::from_e8m0(q::to_e8m0(0.3f)) == 0.25f);
  // The MX scale rule: 2^(floor(log2(amax)) - emax) keeps the block's largest element in range.
  constexpr float amax = 100.0f;
  constexpr auto scale = static_cast<std::uint8_t>(q::to_e8m0(amax) - q::e4m3_emax);
  STATIC_REQUIRE(amax / q::from_e8m0(scale) <= q::e4m3_max);
}

// ---- Decoders -----------------------------------------------------------------------------------

TEST_CASE("codecs: from_* decodes every code exactly", "[quant][codecs]") {
  for (const small_float* f : small_floats) {
    INFO(f->name);
    for (unsigned code = 0; code < (1u << f->code_bits); ++code) {
      INFO("code " << code);
      const unsigned magnitude = code & (f->sign_bit() - 1u);
      const bool negative = (code & f->sign_bit()) != 0;
      const float got = f->decode(static_cast<std::uint8_t>(code));
      const bool is_nan = (f == &e4m3 && magnitude == 0x7F) || (f == &e5m2 && magnitude > 0x7C);
      if (is_nan) {
        CHECK(bits_of(got) == quiet_nan_bits);  // positive quiet NaN, whatever the code's sign
      } else if (f == &e5m2 && magnitude == 0x7C) {
        CHECK(got == (negative ? -1.0f : 1.0f) * std::numeric_limits<float>::infinity());
      } else {
        const double v = f->value(magnitude);
        CHECK(bits_of(got) == bits_of(static_cast<float>(negative ? -v : v)));
        CHECK(std::signbit(got) == negative);
        CHECK(f->encode(got) == code);  // every finite code survives a round trip
      }
    }
  }
  // FP4 reads only the low nibble.
  for (unsigned code = 0; code < 256; ++code) {
    CHECK(bits_of(q::from_fp4_e2m1(static_cast<std::uint8_t>(code))) ==
          bits_of(q::from_fp4_e2m1(static_cast<std::uint8_t>(code & 0xF))));
  }
  for (unsigned code = 0; code < 256; ++code) {
    INFO("e8m0 code " << code);
    CHECK(bits_of(q::from_e8m0(static_cast<std::uint8_t>(code))) ==
          reference_e8m0_decode_bits(code));
    if (code != 0xFF) {
      CHECK(q::to_e8m0(q::from_e8m0(static_cast<std::uint8_t>(code))) == code);
      CHECK(q::to_e8m0(q::from_e8m0(static_cast<std::uint8_t>(code)), true) == code);
    }
  }
  CHECK(bits_of(q::from_e8m0(0x00)) == 0x00400000u);  // 2^-127, a float denormal
}

// ---- Documented special values ----------------------------------------------------------------

TEST_CASE("codecs: NaN, infinity, zero, negatives and denormals", "[quant][codecs]") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nans[] = {float_of(0x7FC00000u), float_of(0xFFC00000u), float_of(0x7F800001u),
                        float_of(0xFF800001u), float_of(0x7FFFFFFFu), float_of(0xFFFFFFFFu)};
  const float denormal_min = float_of(0x00000001u);
  const float denormal_max = float_of(0x007FFFFFu);

  SECTION("FP8 E4M3") {
    for (float n : nans) CHECK(q::to_fp8_e4m3(n) == 0x7F);
    CHECK(q::to_fp8_e4m3(inf) == 0x7E);
    CHECK(q::to_fp8_e4m3(-inf) == 0xFE);
    CHECK(q::to_fp8_e4m3(464.0f) == 0x7E);  // the tie above 448 saturates
    CHECK(q::to_fp8_e4m3(480.0f) == 0x7E);  // would be the NaN code without saturation
    CHECK(q::to_fp8_e4m3(-1e30f) == 0xFE);
    CHECK(q::to_fp8_e4m3(0.0f) == 0x00);
    CHECK(q::to_fp8_e4m3(-0.0f) == 0x80);
    CHECK(q::to_fp8_e4m3(denormal_max) == 0x00);
    CHECK(q::to_fp8_e4m3(-denormal_min) == 0x80);
    CHECK(q::to_fp8_e4m3(0.0009765625f) == 0x00);  // 2^-10: tie to even, 0
    CHECK(q::to_fp8_e4m3(std::nextafter(0.0009765625f, 1.0f)) == 0x01);
    CHECK(q::to_fp8_e4m3(0.0029296875f) == 0x02);  // 1.5 * 2^-9: tie up
    CHECK(q::to_fp8_e4m3(-17.0f) == 0xD8);         // tie between 16 and 18
  }
  SECTION("FP8 E5M2") {
    for (float n : nans) CHECK(q::to_fp8_e5m2(n) == 0x7F);
    CHECK(q::to_fp8_e5m2(inf) == 0x7B);
    CHECK(q::to_fp8_e5m2(-inf) == 0xFB);
    CHECK(q::to_fp8_e5m2(61440.0f) == 0x7B);  // would round to infinity without saturation
    CHECK(q::to_fp8_e5m2(0.0f) == 0x00);
    CHECK(q::to_fp8_e5m2(-0.0f) == 0x80);
    CHECK(q::to_fp8_e5m2(-denormal_max) == 0x80);
    CHECK(q::to_fp8_e5m2(std::ldexp(1.0f, -17)) == 0x00);  // half the smallest subnormal
    CHECK(q::to_fp8_e5m2(std::ldexp(3.0f, -18)) == 0x01);
    CHECK(q::to_fp8_e5m2(1.125f) == 0x3C);  // tie to even, down
    CHECK(q::to_fp8_e5m2(1.375f) == 0x3E);  // tie to even, up
    CHECK(std::isinf(q::from_fp8_e5m2(0xFC)));
  }
  SECTION("FP4 E2M1") {
    for (float n : nans) CHECK(q::to_fp4_e2m1(n) == 0x7);  // +6, whatever the NaN's sign
    CHECK(q::to_fp4_e2m1(inf) == 0x7);
    CHECK(q::to_fp4_e2m1(-inf) == 0xF);
    CHECK(q::to_fp4_e2m1(7.0f) == 0x7);
    CHECK(q::to_fp4_e2m1(0.0f) == 0x0);
    CHECK(q::to_fp4_e2m1(-0.0f) == 0x8);
    CHECK(q::to_fp4_e2m1(-denormal_min) == 0x8);
    CHECK(q::to_fp4_e2m1(0.25f) == 0x0);  // ties to even
    CHECK(q::to_fp4_e2m1(0.75f) == 0x2);
    CHECK(q::to_fp4_e2m1(1.25f) == 0x2);
    CHECK(q::to_fp4_e2m1(1.75f) == 0x4);
    CHECK(q::to_fp4_e2m1(2.5f) == 0x4);
    CHECK(q::to_fp4_e2m1(3.5f) == 0x6);
    CHECK(q::to_fp4_e2m1(-5.0f) == 0xE);
    CHECK(q::to_fp4_e2m1(std::nextafter(-5.0f, 0.0f)) == 0xE);
    CHECK(q::to_fp4_e2m1(std::nextafter(-5.0f, -6.0f)) == 0xF);
  }
  SECTION("E8M0") {
    for (bool up : {false, true}) {
      INFO("round_up " << up);
      for (float n : nans) CHECK(q::to_e8m0(n, up) == 0xFF);
      CHECK(q::to_e8m0(inf, up) == 0xFE);
      CHECK(q::to_e8m0(-inf, up) == 0xFE);
      CHECK(q::to_e8m0(std::numeric_limits<float>::max(), up) == 0xFE);
      CHECK(q::to_e8m0(0.0f, up) == 0x00);
      CHECK(q::to_e8m0(-0.0f, up) == 0x00);
      CHECK(q::to_e8m0(denormal_min, up) == 0x00);
      CHECK(q::to_e8m0(float_of(0x00400000u), up) == 0x00);  // 2^-127 exactly
      CHECK(q::to_e8m0(-8.0f, up) == 130);                   // the sign is ignored
      CHECK(q::to_e8m0(std::ldexp(1.0f, 127), up) == 0xFE);
    }
    CHECK(q::to_e8m0(denormal_max) == 0x00);
    CHECK(q::to_e8m0(denormal_max, true) == 0x01);
    CHECK(q::to_e8m0(float_of(0x00400001u), true) == 0x01);
    CHECK(q::to_e8m0(std::nextafter(1.0f, 2.0f)) == 127);
    CHECK(q::to_e8m0(std::nextafter(1.0f, 2.0f), true) == 128);
    CHECK(q::to_e8m0(std::nextafter(1.0f, 0.0f)) == 126);
    CHECK(q::to_e8m0(std::nextafter(1.0f, 0.0f), true) == 127);
    CHECK(q::to_e8m0(-6.0f) == 129);
    CHECK(q::to_e8m0(-6.0f, true) == 130);
    CHECK(std::isnan(q::from_e8m0(0xFF)));
  }
}

// ---- Against the brute-force reference (no toolkit needed) ------------------------------------

TEST_CASE("codecs: edge cases match the reference encoders", "[quant][codecs]") {
  const std::vector<float> inputs = edge_inputs();
  REQUIRE(inputs.size() > 4000);
  for (float x : inputs) {
    INFO("input " << hex(bits_of(x)) << " = " << x);
    for (const small_float* f : small_floats) {
      INFO(f->name);
      REQUIRE(f->encode(x) == reference_encode(*f, x));
    }
    REQUIRE(q::to_e8m0(x) == reference_e8m0(x, false));
    REQUIRE(q::to_e8m0(x, true) == reference_e8m0(x, true));
  }
}

TEST_CASE("codecs: 2^20 random bit patterns match the reference encoders", "[quant][codecs]") {
  std::size_t mismatches = 0;
  for (std::uint32_t b : random_patterns(std::size_t{1} << 20)) {
    const float x = float_of(b);
    bool ok = true;
    for (const small_float* f : small_floats) ok = ok && f->encode(x) == reference_encode(*f, x);
    ok = ok && q::to_e8m0(x) == reference_e8m0(x, false);
    ok = ok && q::to_e8m0(x, true) == reference_e8m0(x, true);
    if (!ok && mismatches++ < 5) FAIL_CHECK("mismatch at " << hex(b));
  }
  CHECK(mismatches == 0);
}

#if defined(FRUGAL_TEST_CUDA_CODECS)

// ---- Against the CUDA toolkit's host conversion functions --------------------------------------

namespace {

enum class codec { e4m3, e5m2, e2m1, e8m0_zero, e8m0_up };
constexpr codec all_codecs[] = {codec::e4m3, codec::e5m2, codec::e2m1, codec::e8m0_zero,
                                codec::e8m0_up};

const char* name_of(codec c) {
  switch (c) {
    case codec::e4m3:
      return "to_fp8_e4m3";
    case codec::e5m2:
      return "to_fp8_e5m2";
    case codec::e2m1:
      return "to_fp4_e2m1";
    case codec::e8m0_zero:
      return "to_e8m0";
    case codec::e8m0_up:
      return "to_e8m0(round_up)";
  }
  return "?";
}

inline unsigned ours(codec c, float x) {
  switch (c) {
    case codec::e4m3:
      return q::to_fp8_e4m3(x);
    case codec::e5m2:
      return q::to_fp8_e5m2(x);
    case codec::e2m1:
      return q::to_fp4_e2m1(x);
    case codec::e8m0_zero:
      return q::to_e8m0(x, false);
    case codec::e8m0_up:
      return q::to_e8m0(x, true);
  }
  return 0x100;
}

inline unsigned cuda(codec c, float x) {
  switch (c) {
    case codec::e4m3:
      return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    case codec::e5m2:
      return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
    case codec::e2m1:
      return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest);
    case codec::e8m0_zero:
      return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero);
    case codec::e8m0_up:
      return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf);
  }
  return 0x200;
}

/// Compares one codec with CUDA on the bit patterns [first, last), split over all cores.
/// Returns the number of mismatches and the first one found.
struct sweep_result {
  std::uint64_t mismatches = 0;
  std::uint64_t first = 0;
};

template <codec C>
sweep_result sweep(std::uint64_t first, std::uint64_t last) {
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<sweep_result> results(workers);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      const std::uint64_t lo = first + (last - first) * w / workers;
      const std::uint64_t hi = first + (last - first) * (w + 1) / workers;
      sweep_result r;
      for (std::uint64_t b = lo; b < hi; ++b) {
        const float x = float_of(static_cast<std::uint32_t>(b));
        if (ours(C, x) != cuda(C, x) && r.mismatches++ == 0) r.first = b;  // C is a constant
      }
      results[w] = r;
    });
  }
  for (auto& t : threads) t.join();
  sweep_result total;
  for (const auto& r : results) {
    if (total.mismatches == 0 && r.mismatches != 0) total.first = r.first;
    total.mismatches += r.mismatches;
  }
  return total;
}

template <codec C>
void check_every_float() {
  INFO(name_of(C));
  const sweep_result r = sweep<C>(0, std::uint64_t{1} << 32);
  INFO("first mismatch at " << hex(static_cast<std::uint32_t>(r.first)));
  CHECK(r.mismatches == 0);
}

float half_raw_to_float(__half_raw h) { return frugal::detail::half_bits_to_float(h.x); }

}  // namespace

TEST_CASE("codecs: from_* equal CUDA's decoders on every code", "[quant][codecs][cuda]") {
  for (unsigned code = 0; code < 256; ++code) {
    INFO("code " << code);
    const auto c = static_cast<__nv_fp8_storage_t>(code);
    const float e4 = half_raw_to_float(__nv_cvt_fp8_to_halfraw(c, __NV_E4M3));
    const float e5 = half_raw_to_float(__nv_cvt_fp8_to_halfraw(c, __NV_E5M2));
    const float e8 = frugal::detail::bfloat16_bits_to_float(__nv_cvt_e8m0_to_bf16raw(c).x);
    // NaN payloads differ (CUDA gives 0x7FFF as a half); NaN-ness must agree.
    CHECK(std::isnan(q::from_fp8_e4m3(c)) == std::isnan(e4));
    CHECK(std::isnan(q::from_fp8_e5m2(c)) == std::isnan(e5));
    CHECK(std::isnan(q::from_e8m0(c)) == std::isnan(e8));
    if (!std::isnan(e4)) CHECK(bits_of(q::from_fp8_e4m3(c)) == bits_of(e4));
    if (!std::isnan(e5)) CHECK(bits_of(q::from_fp8_e5m2(c)) == bits_of(e5));
    if (!std::isnan(e8)) CHECK(bits_of(q::from_e8m0(c)) == bits_of(e8));
  }
  for (unsigned code = 0; code < 16; ++code) {
    INFO("fp4 code " << code);
    const auto c = static_cast<__nv_fp4_storage_t>(code);
    const float e2 = half_raw_to_float(__nv_cvt_fp4_to_halfraw(c, __NV_E2M1));
    CHECK(bits_of(q::from_fp4_e2m1(static_cast<std::uint8_t>(code))) == bits_of(e2));
  }
}

TEST_CASE("codecs: edge cases equal CUDA's conversions", "[quant][codecs][cuda]") {
  for (float x : edge_inputs()) {
    INFO("input " << hex(bits_of(x)) << " = " << x);
    for (codec c : all_codecs) {
      INFO(name_of(c));
      REQUIRE(ours(c, x) == cuda(c, x));
    }
  }
}

TEST_CASE("codecs: 2^20 random bit patterns equal CUDA's conversions", "[quant][codecs][cuda]") {
  const std::vector<std::uint32_t> patterns = random_patterns(std::size_t{1} << 20);
  for (codec c : all_codecs) {
    std::size_t mismatches = 0;
    for (std::uint32_t b : patterns) {
      const float x = float_of(b);
      if (ours(c, x) != cuda(c, x) && mismatches++ < 5) {
        FAIL_CHECK(name_of(c) << " differs at " << hex(b));
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("codecs: to_fp8_e4m3 equals CUDA on every float32", "[quant][codecs][cuda][long]") {
  check_every_float<codec::e4m3>();
}
TEST_CASE("codecs: to_fp8_e5m2 equals CUDA on every float32", "[quant][codecs][cuda][long]") {
  check_every_float<codec::e5m2>();
}
TEST_CASE("codecs: to_fp4_e2m1 equals CUDA on every float32", "[quant][codecs][cuda][long]") {
  check_every_float<codec::e2m1>();
}
TEST_CASE("codecs: to_e8m0 equals CUDA on every float32", "[quant][codecs][cuda][long]") {
  check_every_float<codec::e8m0_zero>();
}
TEST_CASE("codecs: to_e8m0(round_up) equals CUDA on every float32", "[quant][codecs][cuda][long]") {
  check_every_float<codec::e8m0_up>();
}

#endif  // FRUGAL_TEST_CUDA_CODECS
