// frugal/quant/detail/fast_codecs.hpp: branchless forms of the element codecs and block loops
// of frugal/quant/codecs.hpp and detail/block.hpp, written so that compilers vectorize them
// (selects instead of branches, no data-dependent loops). Every function gives the same bits as
// its reference for every input; tests/quant/fast_paths.test.cpp checks all 2^32 floats.
//   namespace detail = frugal::quant::detail;
//   std::uint8_t q = detail::fast_to_fp8_e4m3(3.3f);         // == to_fp8_e4m3(3.3f), 0x45
//   detail::fast_encode_fp8_e4m3(x, n, scale, packed);       // == encode_fp8_e4m3(...)
#pragma once

#include <frugal/config.hpp>
#include <frugal/quant/codecs.hpp>
#include <frugal/quant/detail/block.hpp>

#include <cstddef>
#include <cstdint>

namespace frugal::quant::detail {

// ---- element encoders
// ----------------------------------------------------------------------------

/// @brief condition ? a : b as mask arithmetic. Written out so that compilers keep both operands
/// computed and the loop free of branches (a conditional expression around a float operation
/// may be turned into a branch, since the float operation is not speculated under trapping
/// math).
FRUGAL_HOST_DEVICE constexpr std::uint32_t select_bits(bool condition, std::uint32_t a,
                                                       std::uint32_t b) noexcept {
  const std::uint32_t mask = 0u - static_cast<std::uint32_t>(condition);
  return b ^ ((a ^ b) & mask);
}

/// @brief round_magnitude() without branches, for a format with `MantissaBits` fraction bits and
/// exponent bias `Bias`, saturating at the float whose bits are `MaxBits` (the format's largest
/// finite value).
/// @param magnitude |x| as binary32 bits, not NaN (infinity saturates like any large value).
/// Normal results: the exponent is rebiased in the integer domain and rounded to nearest even by
/// adding (half - 1 + lsb) before the shift; a carry steps into the exponent field, which is the
/// next representable value. Subnormal results: |x| + 2^(1 - Bias - MantissaBits + 23) is a float
/// whose unit in the last place is the target's subnormal step, so the FPU's own round to
/// nearest even leaves round(|x| / step) in its low bits (float denormals give 0).
template <int MantissaBits, int Bias, std::uint32_t MaxBits>
FRUGAL_HOST_DEVICE constexpr std::uint32_t fast_round_magnitude(std::uint32_t magnitude) noexcept {
  constexpr int shift = 23 - MantissaBits;
  constexpr std::int32_t min_normal_bits = (128 - Bias) << 23;
  constexpr std::uint32_t rebias = static_cast<std::uint32_t>(127 - Bias) << 23;
  constexpr std::uint32_t half_minus_one = (1u << (shift - 1)) - 1u;
  constexpr auto max_bits = static_cast<std::int32_t>(MaxBits);
  constexpr float subnormal_magic =
      bits_float(static_cast<std::uint32_t>(128 - Bias - MantissaBits + 23) << 23);
  // Magnitudes are below 2^31: signed comparisons, which every SIMD instruction set has.
  const auto signed_magnitude = static_cast<std::int32_t>(magnitude);
  const std::int32_t saturated = signed_magnitude < max_bits ? signed_magnitude : max_bits;
  const auto m = static_cast<std::uint32_t>(saturated);
  const std::uint32_t lsb = (m >> shift) & 1u;
  const std::uint32_t normal = (m + (half_minus_one - rebias) + lsb) >> shift;
  const std::uint32_t subnormal =
      float_bits(bits_float(m) + subnormal_magic) - float_bits(subnormal_magic);
  return select_bits(saturated < min_normal_bits, subnormal, normal);
}

/// @brief True when the bits |x| are a NaN's (a signed comparison: magnitudes are below 2^31).
FRUGAL_HOST_DEVICE constexpr bool is_nan_magnitude(std::uint32_t magnitude) noexcept {
  return static_cast<std::int32_t>(magnitude) > static_cast<std::int32_t>(float_inf_bits);
}

/// @brief to_fp8_e4m3(x) as a 32-bit value (0..255), without branches.
FRUGAL_HOST_DEVICE constexpr std::uint32_t fast_fp8_e4m3_bits(float x) noexcept {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  const std::uint32_t code =
      ((bits >> 24) & 0x80u) | fast_round_magnitude<3, 7, 0x43E00000u>(magnitude);
  return select_bits(is_nan_magnitude(magnitude), e4m3_nan_code, code);
}

/// @brief to_fp8_e5m2(x) as a 32-bit value (0..255), without branches.
FRUGAL_HOST_DEVICE constexpr std::uint32_t fast_fp8_e5m2_bits(float x) noexcept {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  const std::uint32_t code =
      ((bits >> 24) & 0x80u) | fast_round_magnitude<2, 15, 0x47600000u>(magnitude);
  return select_bits(is_nan_magnitude(magnitude), e5m2_nan_code, code);
}

/// @brief to_fp4_e2m1(x) as a 32-bit value (0..15), without branches.
FRUGAL_HOST_DEVICE constexpr std::uint32_t fast_fp4_e2m1_bits(float x) noexcept {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  const std::uint32_t code =
      ((bits >> 28) & 0x8u) | fast_round_magnitude<1, 1, 0x40C00000u>(magnitude);
  return select_bits(is_nan_magnitude(magnitude), 0x7u, code);
}

/// @brief Same byte as to_fp8_e4m3(x) for every float.
FRUGAL_HOST_DEVICE constexpr std::uint8_t fast_to_fp8_e4m3(float x) noexcept {
  return static_cast<std::uint8_t>(fast_fp8_e4m3_bits(x));
}
/// @brief Same byte as to_fp8_e5m2(x) for every float.
FRUGAL_HOST_DEVICE constexpr std::uint8_t fast_to_fp8_e5m2(float x) noexcept {
  return static_cast<std::uint8_t>(fast_fp8_e5m2_bits(x));
}
/// @brief Same nibble as to_fp4_e2m1(x) for every float.
FRUGAL_HOST_DEVICE constexpr std::uint8_t fast_to_fp4_e2m1(float x) noexcept {
  return static_cast<std::uint8_t>(fast_fp4_e2m1_bits(x));
}

// ---- element decoders
// ----------------------------------------------------------------------------

/// @brief from_fp8_e4m3(code) without branches or loops: normal codes move their exponent and
/// fraction into binary32 fields; subnormal codes are fraction * 2^-9 (exact).
FRUGAL_HOST_DEVICE constexpr float fast_from_fp8_e4m3(std::uint32_t code) noexcept {
  const std::uint32_t magnitude = code & 0x7Fu;
  const std::uint32_t normal = (magnitude << 20) + (120u << 23);
  const std::uint32_t subnormal =
      float_bits(static_cast<float>(static_cast<std::int32_t>(magnitude & 7u)) * 0x1p-9f);
  const std::uint32_t value = select_bits((magnitude >> 3) == 0, subnormal, normal);
  const std::uint32_t signed_value = value | ((code & 0x80u) << 24);
  return bits_float(select_bits(magnitude == 0x7Fu, float_quiet_nan_bits, signed_value));
}

/// @brief from_fp8_e5m2(code) without branches or loops (0x7C: infinity, above: NaN).
FRUGAL_HOST_DEVICE constexpr float fast_from_fp8_e5m2(std::uint32_t code) noexcept {
  const std::uint32_t magnitude = code & 0x7Fu;
  const std::uint32_t normal = (magnitude << 21) + (112u << 23);
  const std::uint32_t subnormal =
      float_bits(static_cast<float>(static_cast<std::int32_t>(magnitude & 3u)) * 0x1p-16f);
  std::uint32_t value = select_bits((magnitude >> 2) == 0, subnormal, normal);
  value = select_bits(magnitude == 0x7Cu, float_inf_bits, value);
  const std::uint32_t signed_value = value | ((code & 0x80u) << 24);
  return bits_float(select_bits(magnitude > 0x7Cu, float_quiet_nan_bits, signed_value));
}

/// @brief from_fp4_e2m1(nibble) without branches (only the low 4 bits are read).
FRUGAL_HOST_DEVICE constexpr float fast_from_fp4_e2m1(std::uint32_t code) noexcept {
  const std::uint32_t magnitude = code & 0x7u;
  const std::uint32_t normal = (magnitude << 22) + (126u << 23);
  const std::uint32_t value = magnitude < 2u ? (magnitude == 1u ? 0x3F000000u : 0u) : normal;
  return bits_float(value | ((code & 0x8u) << 28));
}

// ---- integer codes
// -------------------------------------------------------------------------------

/// @brief int_code<Qmin, Qmax>(x, inv_scale, zero_point) with one clamp: x * inv_scale (NaN -> 0)
/// clamped to [Qmin - zero_point, Qmax - zero_point], whose ends are integers, so clamping
/// before rounding equals clamping after; the rounded value is read from the low bits of
/// v + 1.5 * 2^23 (the same sum round_half_even forms).
/// @param lo, hi the float bounds Qmin - zero_point and Qmax - zero_point (from int_code_bounds).
FRUGAL_HOST_DEVICE constexpr std::int32_t fast_int_code(float x, float inv_scale, float lo,
                                                        float hi,
                                                        std::int32_t zero_point) noexcept {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  float v = x * inv_scale;
  v = v == v ? v : 0.0f;
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  const std::int32_t rounded = static_cast<std::int32_t>(float_bits(v + magic)) -
                               static_cast<std::int32_t>(float_bits(magic));
  return rounded + zero_point;
}

/// @brief The clamp bounds of fast_int_code for a group: Qmin - zero_point, Qmax - zero_point.
struct int_code_bounds {
  float lo;
  float hi;
};

template <int Qmin, int Qmax>
FRUGAL_HOST_DEVICE constexpr int_code_bounds int_bounds(int zero_point) noexcept {
  return {static_cast<float>(Qmin - zero_point), static_cast<float>(Qmax - zero_point)};
}

// ---- reductions
// ----------------------------------------------------------------------------------

/// Independent accumulators of the reductions: enough to fill a vector register several times
/// over and hide the latency of max.
inline constexpr std::size_t fast_lanes = 16;

/// @brief finite_abs(x) on the bits: |x| for finite x, else +0.
FRUGAL_HOST_DEVICE constexpr float fast_finite_abs(float x) noexcept {
  const std::uint32_t magnitude = float_bits(x) & 0x7FFFFFFFu;
  return bits_float(magnitude < float_inf_bits ? magnitude : 0u);
}

/// @brief block_amax(x, n). Every term is +0 or a positive finite float, whose bits order like
/// the values, so the maximum is taken over the bits as integers (a signed compare, which every
/// SIMD set has) in independent lanes; it does not depend on the order of folding.
FRUGAL_HOST_DEVICE inline float fast_block_amax(const float* x, std::size_t n) noexcept {
  std::int32_t acc[fast_lanes] = {};
  const std::size_t whole = n - n % fast_lanes;
  std::size_t i = 0;
  for (; i < whole; i += fast_lanes) {
    for (std::size_t j = 0; j < fast_lanes; ++j) {
      const auto magnitude = static_cast<std::int32_t>(float_bits(x[i + j]) & 0x7FFFFFFFu);
      const std::int32_t term = magnitude < 0x7F800000 ? magnitude : 0;
      acc[j] = acc[j] > term ? acc[j] : term;
    }
  }
  std::int32_t amax = 0;
  for (; i < n; ++i) {
    const auto magnitude = static_cast<std::int32_t>(float_bits(x[i]) & 0x7FFFFFFFu);
    const std::int32_t term = magnitude < 0x7F800000 ? magnitude : 0;
    amax = amax > term ? amax : term;
  }
  for (std::size_t j = 0; j < fast_lanes; ++j) amax = amax > acc[j] ? amax : acc[j];
  return bits_float(static_cast<std::uint32_t>(amax));
}

/// @brief block_min_max(x, n) with zero results normalised to +0. The sequential loop may return
/// -0 for a bound that is zero; the only use in which a zero's sign shows, hi - lo of an all-zero
/// group, is +0 either way, so the parameters (and bytes) are unchanged.
FRUGAL_HOST_DEVICE inline min_max fast_block_min_max(const float* x, std::size_t n) noexcept {
  float lo_acc[fast_lanes] = {};
  float hi_acc[fast_lanes] = {};
  const std::size_t whole = n - n % fast_lanes;
  std::size_t i = 0;
  for (; i < whole; i += fast_lanes) {
    for (std::size_t j = 0; j < fast_lanes; ++j) {
      const float v = is_finite(x[i + j]) ? x[i + j] : 0.0f;
      lo_acc[j] = min_of(lo_acc[j], v);
      hi_acc[j] = max_of(hi_acc[j], v);
    }
  }
  float lo = 0.0f;
  float hi = 0.0f;
  for (; i < n; ++i) {
    const float v = is_finite(x[i]) ? x[i] : 0.0f;
    lo = min_of(lo, v);
    hi = max_of(hi, v);
  }
  for (std::size_t j = 0; j < fast_lanes; ++j) {
    lo = min_of(lo, lo_acc[j]);
    hi = max_of(hi, hi_acc[j]);
  }
  return {lo + 0.0f, hi + 0.0f};
}

// ---- block encoders
// ------------------------------------------------------------------------------

/// Elements per step of the encoders: codes are formed as 32-bit values into a
/// small buffer, then narrowed to bytes in a second loop. Narrowing inside the first loop makes
/// compilers demote every select to 8- or 16-bit lanes, which costs more than it saves.
inline constexpr std::size_t fast_chunk = 64;

/// @brief encode_int8<Asymmetric>(x, n, p, out), byte for byte.
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void fast_encode_int8(const float* x, std::size_t n, const int_params& p,
                                                std::uint8_t* out) noexcept {
  constexpr int qmin = Asymmetric ? 0 : -int8_symmetric_max;
  constexpr int qmax = Asymmetric ? int8_asymmetric_max : int8_symmetric_max;
  const int_code_bounds b = int_bounds<qmin, qmax>(p.zero_point);
  const float inv = p.inv_scale;
  const std::int32_t zp = p.zero_point;
  std::int32_t codes[fast_chunk];
  for (std::size_t i = 0; i < n; i += fast_chunk) {
    const std::size_t m = n - i < fast_chunk ? n - i : fast_chunk;
    for (std::size_t j = 0; j < m; ++j) codes[j] = fast_int_code(x[i + j], inv, b.lo, b.hi, zp);
    for (std::size_t j = 0; j < m; ++j) out[i + j] = static_cast<std::uint8_t>(codes[j]);
  }
}

/// @brief encode_int4<Asymmetric>(x, n, p, out), byte for byte (n even).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void fast_encode_int4(const float* x, std::size_t n, const int_params& p,
                                                std::uint8_t* out) noexcept {
  constexpr int qmin = Asymmetric ? 0 : -int4_symmetric_max;
  constexpr int qmax = Asymmetric ? int4_asymmetric_max : int4_symmetric_max;
  const int_code_bounds b = int_bounds<qmin, qmax>(p.zero_point);
  const float inv = p.inv_scale;
  const std::int32_t zp = p.zero_point;
  for (std::size_t k = 0; k < n / 2; ++k) {
    const std::int32_t lo = fast_int_code(x[2 * k], inv, b.lo, b.hi, zp);
    const std::int32_t hi = fast_int_code(x[2 * k + 1], inv, b.lo, b.hi, zp);
    out[k] = static_cast<std::uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
  }
}

/// @brief out[i] = code(x[i] / divisor) for one of the fast_*_bits codecs.
template <std::uint32_t (*Code)(float) noexcept>
FRUGAL_HOST_DEVICE inline void fast_encode_divided(const float* x, std::size_t n, float divisor,
                                                   std::uint8_t* out) noexcept {
  std::uint32_t codes[fast_chunk];
  for (std::size_t i = 0; i < n; i += fast_chunk) {
    const std::size_t m = n - i < fast_chunk ? n - i : fast_chunk;
    for (std::size_t j = 0; j < m; ++j) codes[j] = Code(x[i + j] / divisor);
    for (std::size_t j = 0; j < m; ++j) out[i + j] = static_cast<std::uint8_t>(codes[j]);
  }
}

/// @brief encode_fp8_e4m3(x, n, scale, out), byte for byte.
FRUGAL_HOST_DEVICE inline void fast_encode_fp8_e4m3(const float* x, std::size_t n, float scale,
                                                    std::uint8_t* out) noexcept {
  fast_encode_divided<fast_fp8_e4m3_bits>(x, n, scale > 0.0f ? scale : 1.0f, out);
}

/// @brief encode_fp8_e5m2(x, n, scale, out), byte for byte.
FRUGAL_HOST_DEVICE inline void fast_encode_fp8_e5m2(const float* x, std::size_t n, float scale,
                                                    std::uint8_t* out) noexcept {
  fast_encode_divided<fast_fp8_e5m2_bits>(x, n, scale > 0.0f ? scale : 1.0f, out);
}

/// @brief encode_fp8_e4m3_scaled(x, n, multiplier, out), byte for byte.
FRUGAL_HOST_DEVICE inline void fast_encode_fp8_e4m3_scaled(const float* x, std::size_t n,
                                                           float multiplier,
                                                           std::uint8_t* out) noexcept {
  std::uint32_t codes[fast_chunk];
  for (std::size_t i = 0; i < n; i += fast_chunk) {
    const std::size_t m = n - i < fast_chunk ? n - i : fast_chunk;
    for (std::size_t j = 0; j < m; ++j) codes[j] = fast_fp8_e4m3_bits(x[i + j] * multiplier);
    for (std::size_t j = 0; j < m; ++j) out[i + j] = static_cast<std::uint8_t>(codes[j]);
  }
}

/// @brief encode_fp4(x, n, multiplier, out), byte for byte (n even).
FRUGAL_HOST_DEVICE inline void fast_encode_fp4(const float* x, std::size_t n, float multiplier,
                                               std::uint8_t* out) noexcept {
  std::uint32_t codes[fast_chunk];
  for (std::size_t i = 0; i < n; i += fast_chunk) {
    const std::size_t m = n - i < fast_chunk ? n - i : fast_chunk;
    for (std::size_t j = 0; j < m; ++j) codes[j] = fast_fp4_e2m1_bits(x[i + j] * multiplier);
    for (std::size_t k = 0; k < m / 2; ++k)
      out[i / 2 + k] = static_cast<std::uint8_t>(codes[2 * k] | (codes[2 * k + 1] << 4));
  }
}

// ---- block decoders
// ------------------------------------------------------------------------------

/// @brief decode_fp8_e4m3(in, n, scale, out), bit for bit.
FRUGAL_HOST_DEVICE inline void fast_decode_fp8_e4m3(const std::uint8_t* in, std::size_t n,
                                                    float scale, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = canonical_nan(fast_from_fp8_e4m3(in[i]) * scale);
}

/// @brief decode_fp8_e5m2(in, n, scale, out), bit for bit.
FRUGAL_HOST_DEVICE inline void fast_decode_fp8_e5m2(const std::uint8_t* in, std::size_t n,
                                                    float scale, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = canonical_nan(fast_from_fp8_e5m2(in[i]) * scale);
}

/// @brief decode_fp4(in, n, scale, out), bit for bit (n even).
FRUGAL_HOST_DEVICE inline void fast_decode_fp4(const std::uint8_t* in, std::size_t n, float scale,
                                               float* out) noexcept {
  for (std::size_t k = 0; k < n / 2; ++k) {
    out[2 * k] = canonical_nan(fast_from_fp4_e2m1(in[k]) * scale);
    out[2 * k + 1] =
        canonical_nan(fast_from_fp4_e2m1(static_cast<std::uint32_t>(in[k]) >> 4) * scale);
  }
}

}  // namespace frugal::quant::detail
