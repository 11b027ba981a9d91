// The branch-free codecs and block loops of frugal/quant/detail/fast_codecs.hpp against the
// reference codecs and block functions they replace on the CPU: bit for bit, on edge cases and
// 2^22 random patterns by default, and on every float32 in the [long] case.
#include <frugal/quant/codecs.hpp>
#include <frugal/quant/detail/block.hpp>
#include <frugal/quant/detail/fast_codecs.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

namespace q = frugal::quant;
namespace d = frugal::quant::detail;

namespace {

std::uint32_t bits_of(float x) { return __builtin_bit_cast(std::uint32_t, x); }
float float_of(std::uint32_t b) { return __builtin_bit_cast(float, b); }

/// Counts the patterns in [begin, end) on which a fast encoder differs from its reference.
struct encoder_mismatches {
  std::uint64_t e4m3 = 0;
  std::uint64_t e5m2 = 0;
  std::uint64_t e2m1 = 0;
  std::uint64_t int8 = 0;
  std::uint32_t first = 0;  // the first differing pattern, for the failure message
  void add(const encoder_mismatches& o) {
    if (first == 0 && o.first != 0) first = o.first;
    e4m3 += o.e4m3;
    e5m2 += o.e5m2;
    e2m1 += o.e2m1;
    int8 += o.int8;
  }
  bool none() const { return e4m3 + e5m2 + e2m1 + int8 == 0; }
};

void check_pattern(std::uint32_t b, encoder_mismatches& m) {
  const float x = float_of(b);
  bool bad = false;
  if (d::fast_to_fp8_e4m3(x) != q::to_fp8_e4m3(x)) ++m.e4m3, bad = true;
  if (d::fast_to_fp8_e5m2(x) != q::to_fp8_e5m2(x)) ++m.e5m2, bad = true;
  if (d::fast_to_fp4_e2m1(x) != q::to_fp4_e2m1(x)) ++m.e2m1, bad = true;
  // The integer code with a symmetric and an asymmetric parameter set.
  const d::int_code_bounds s = d::int_bounds<-127, 127>(0);
  const d::int_code_bounds a = d::int_bounds<0, 255>(37);
  if (d::fast_int_code(x, 0.75f, s.lo, s.hi, 0) != d::int_code<-127, 127>(x, 0.75f, 0) ||
      d::fast_int_code(x, 3.0e-3f, a.lo, a.hi, 37) != d::int_code<0, 255>(x, 3.0e-3f, 37))
    ++m.int8, bad = true;
  if (bad && m.first == 0) m.first = b;
}

/// Floats around every value and every midpoint of the small formats, plus the specials.
std::vector<std::uint32_t> edge_patterns() {
  std::vector<std::uint32_t> out;
  auto around = [&](float v) {
    for (int s = 0; s < 2; ++s) {
      const std::uint32_t b = bits_of(v) | (s != 0 ? 0x80000000u : 0u);
      for (std::uint32_t k = 0; k < 3; ++k) {
        out.push_back(b + k);
        out.push_back(b - k);
      }
    }
  };
  for (unsigned c = 0; c < 128; ++c) {
    const float v = q::from_fp8_e4m3(static_cast<std::uint8_t>(c));
    const float w = q::from_fp8_e5m2(static_cast<std::uint8_t>(c));
    around(v);
    around(w);
    if (c + 1 < 127) around((v + q::from_fp8_e4m3(static_cast<std::uint8_t>(c + 1))) / 2);
    if (c + 1 < 124) around((w + q::from_fp8_e5m2(static_cast<std::uint8_t>(c + 1))) / 2);
  }
  for (unsigned c = 0; c < 8; ++c) {
    const float v = q::from_fp4_e2m1(static_cast<std::uint8_t>(c));
    around(v);
    if (c + 1 < 8) around((v + q::from_fp4_e2m1(static_cast<std::uint8_t>(c + 1))) / 2);
  }
  for (float v : {0.0f, 464.0f, 480.0f, 61440.0f, 7.0f, 127.5f, 126.5f, 1e-45f, 1.17549435e-38f,
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity()})
    around(v);
  for (std::uint32_t b : {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0xFF800001u, 0xFFC00000u,
                          0xFFFFFFFFu, 0x00000001u, 0x007FFFFFu, 0x80000001u})
    out.push_back(b);
  return out;
}

/// Random finite and non-finite floats of every magnitude, with runs of zeros of both signs.
std::vector<float> random_block(std::mt19937& rng, std::size_t n) {
  std::vector<float> x(n);
  std::uniform_int_distribution<int> kind(0, 9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) {
    switch (kind(rng)) {
      case 0:
        v = float_of(static_cast<std::uint32_t>(rng()));
        break;
      case 1:
        v = kind(rng) < 5 ? 0.0f : -0.0f;
        break;
      default:
        v = normal(rng) * std::ldexp(1.0f, kind(rng) * 3 - 12);
        break;
    }
  }
  return x;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  return a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("fast encoders match the reference codecs on edge cases and random patterns",
          "[quant][fast]") {
  encoder_mismatches m;
  for (std::uint32_t b : edge_patterns()) check_pattern(b, m);
  INFO("first differing pattern 0x" << std::hex << m.first);
  CHECK(m.none());
  std::mt19937 rng(20240611);
  for (int i = 0; i < (1 << 22); ++i) check_pattern(static_cast<std::uint32_t>(rng()), m);
  INFO("e4m3 " << m.e4m3 << " e5m2 " << m.e5m2 << " e2m1 " << m.e2m1 << " int " << m.int8);
  CHECK(m.none());
}

TEST_CASE("fast decoders match the reference codecs on every code", "[quant][fast]") {
  for (unsigned c = 0; c < 256; ++c) {
    const auto code = static_cast<std::uint8_t>(c);
    INFO("code 0x" << std::hex << c);
    CHECK(bits_of(d::fast_from_fp8_e4m3(code)) == bits_of(q::from_fp8_e4m3(code)));
    CHECK(bits_of(d::fast_from_fp8_e5m2(code)) == bits_of(q::from_fp8_e5m2(code)));
    CHECK(bits_of(d::fast_from_fp4_e2m1(code)) == bits_of(q::from_fp4_e2m1(code)));
  }
}

TEST_CASE("fast block loops give the reference block functions' bytes", "[quant][fast]") {
  std::mt19937 rng(7);
  for (std::size_t n : {0u, 1u, 2u, 15u, 16u, 17u, 32u, 63u, 64u, 65u, 130u, 1000u, 4096u}) {
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> x = random_block(rng, n);
      INFO("n " << n << " trial " << trial);
      const float amax = d::block_amax(x.data(), n);
      REQUIRE(bits_of(d::fast_block_amax(x.data(), n)) == bits_of(amax));
      const d::min_max r = d::block_min_max(x.data(), n);
      const d::min_max fr = d::fast_block_min_max(x.data(), n);
      REQUIRE(fr.lo == r.lo);
      REQUIRE(fr.hi == r.hi);

      // Every parameter derived from the fast range is the reference's, zeros included.
      const d::int_params pa = d::int_asymmetric_params(r, d::int8_asymmetric_max);
      const d::int_params fpa = d::int_asymmetric_params(fr, d::int8_asymmetric_max);
      REQUIRE(bits_of(fpa.scale) == bits_of(pa.scale));
      REQUIRE(fpa.zero_point == pa.zero_point);
      const d::int_params ps = d::int_symmetric_params(amax, d::int8_symmetric_max);

      const std::size_t even = n - n % 2;
      std::vector<std::uint8_t> want(n + 1, 0xAA), got(n + 1, 0xAA);
      d::encode_int8<false>(x.data(), n, ps, want.data());
      d::fast_encode_int8<false>(x.data(), n, ps, got.data());
      CHECK(want == got);
      d::encode_int8<true>(x.data(), n, pa, want.data());
      d::fast_encode_int8<true>(x.data(), n, pa, got.data());
      CHECK(want == got);
      d::encode_int4<false>(x.data(), even, d::int_symmetric_params(amax, 7), want.data());
      d::fast_encode_int4<false>(x.data(), even, d::int_symmetric_params(amax, 7), got.data());
      CHECK(want == got);
      d::encode_int4<true>(x.data(), even, d::int_asymmetric_params(r, 15), want.data());
      d::fast_encode_int4<true>(x.data(), even, d::int_asymmetric_params(r, 15), got.data());
      CHECK(want == got);
      for (float scale : {0.0f, d::fp8_scale(amax, q::e4m3_max), 1.0e-30f, 3.0f}) {
        d::encode_fp8_e4m3(x.data(), n, scale, want.data());
        d::fast_encode_fp8_e4m3(x.data(), n, scale, got.data());
        CHECK(want == got);
        d::encode_fp8_e5m2(x.data(), n, scale, want.data());
        d::fast_encode_fp8_e5m2(x.data(), n, scale, got.data());
        CHECK(want == got);
      }
      for (std::uint8_t code : {std::uint8_t{0}, std::uint8_t{120}, std::uint8_t{127},
                                d::mx_scale_code(amax, q::e2m1_emax, q::e2m1_max, false)}) {
        const float multiplier = d::e8m0_inverse(code);
        d::encode_fp8_e4m3_scaled(x.data(), n, multiplier, want.data());
        d::fast_encode_fp8_e4m3_scaled(x.data(), n, multiplier, got.data());
        CHECK(want == got);
        d::encode_fp4(x.data(), even, multiplier, want.data());
        d::fast_encode_fp4(x.data(), even, multiplier, got.data());
        CHECK(want == got);
      }

      // Decoding every code of the block with a finite and a non-finite scale.
      std::vector<std::uint8_t> codes(n);
      for (std::uint8_t& c : codes) c = static_cast<std::uint8_t>(rng());
      for (float scale : {0.37f, 0.0f, -2.0f, std::numeric_limits<float>::infinity()}) {
        std::vector<float> ref(n), fast(n);
        d::decode_fp8_e4m3(codes.data(), n, scale, ref.data());
        d::fast_decode_fp8_e4m3(codes.data(), n, scale, fast.data());
        CHECK(same_floats(ref, fast));
        d::decode_fp8_e5m2(codes.data(), n, scale, ref.data());
        d::fast_decode_fp8_e5m2(codes.data(), n, scale, fast.data());
        CHECK(same_floats(ref, fast));
        d::decode_fp4(codes.data(), even, scale, ref.data());
        d::fast_decode_fp4(codes.data(), even, scale, fast.data());
        CHECK(same_floats(ref, fast));
      }
    }
  }
}

TEST_CASE("fast min/max returns +0 for a zero bound", "[quant][fast]") {
  const float zeros[] = {-0.0f, 0.0f, -0.0f};
  const d::min_max r = d::fast_block_min_max(zeros, 3);
  CHECK(bits_of(r.lo) == 0u);
  CHECK(bits_of(r.hi) == 0u);
  const d::int_params p = d::int_asymmetric_params(r, d::int8_asymmetric_max);
  const d::int_params ref =
      d::int_asymmetric_params(d::block_min_max(zeros, 3), d::int8_asymmetric_max);
  CHECK(bits_of(p.scale) == bits_of(ref.scale));
  CHECK(p.zero_point == ref.zero_point);
}

TEST_CASE("fast encoders match the reference codecs on every float32", "[quant][fast][long]") {
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<encoder_mismatches> partial(workers);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      const std::uint64_t begin = (std::uint64_t{1} << 32) * w / workers;
      const std::uint64_t end = (std::uint64_t{1} << 32) * (w + 1) / workers;
      for (std::uint64_t b = begin; b < end; ++b)
        check_pattern(static_cast<std::uint32_t>(b), partial[w]);
    });
  }
  for (std::thread& t : threads) t.join();
  encoder_mismatches m;
  for (const encoder_mismatches& p : partial) m.add(p);
  INFO("e4m3 " << m.e4m3 << " e5m2 " << m.e5m2 << " e2m1 " << m.e2m1 << " int " << m.int8
               << " first 0x" << std::hex << m.first);
  CHECK(m.none());
}
