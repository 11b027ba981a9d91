// frugal/quant/codecs.hpp: element codecs for the 8- and 4-bit float formats (OCP FP8 E4M3 and
// E5M2, FP4 E2M1, and the E8M0 scales of OCP Microscaling), constexpr and host+device, shared
// by the CPU reference and the CUDA kernels. Each encoder gives the same byte as CUDA's
// conversion functions for every float input.
//   std::uint8_t q = frugal::quant::to_fp8_e4m3(3.3f);   // 0x45, which decodes to 3.25f
//   float s = frugal::quant::from_e8m0(frugal::quant::to_e8m0(0.3f));  // 0.25f
#pragma once

#include <frugal/config.hpp>

#include <cstdint>

namespace frugal::quant {

// ---- Format constants ---------------------------------------------------------------------------

inline constexpr float e4m3_max = 448.0f;    ///< largest finite E4M3 (code 0x7E)
inline constexpr float e5m2_max = 57344.0f;  ///< largest finite E5M2 (code 0x7B)
inline constexpr float e2m1_max = 6.0f;      ///< largest E2M1 (code 0x7)

/// Exponent of the largest power of two not above the format's max: floor(log2(max)). An MX
/// block scale is 2^(floor(log2(amax)) - emax) (OCP Microscaling v1.0, section 6.3).
inline constexpr int e4m3_emax = 8;
inline constexpr int e5m2_emax = 15;
inline constexpr int e2m1_emax = 2;

inline constexpr std::uint8_t e4m3_nan_code = 0x7F;  ///< what to_fp8_e4m3 gives for NaN
inline constexpr std::uint8_t e5m2_nan_code = 0x7F;  ///< what to_fp8_e5m2 gives for NaN
inline constexpr std::uint8_t e8m0_nan_code = 0xFF;  ///< the only NaN of E8M0
inline constexpr int e8m0_bias = 127;                ///< code c means 2^(c - 127)

namespace detail {

FRUGAL_HOST_DEVICE constexpr std::uint32_t float_bits(float x) noexcept {
  return __builtin_bit_cast(std::uint32_t, x);
}

FRUGAL_HOST_DEVICE constexpr float bits_float(std::uint32_t b) noexcept {
  return __builtin_bit_cast(float, b);
}

/// |x| (as binary32 bits, finite, below the format's largest finite value) -> the magnitude
/// code of a float with `mantissa_bits` fraction bits and exponent bias `bias`, with gradual
/// underflow, rounded to nearest even. A carry out of the fraction steps into the exponent
/// field, which is exactly the next representable value.
FRUGAL_HOST_DEVICE constexpr std::uint32_t round_magnitude(std::uint32_t magnitude,
                                                           int mantissa_bits, int bias) noexcept {
  const int exponent = static_cast<int>(magnitude >> 23) - 127;  // float denormals: -127
  const int min_normal_exponent = 1 - bias;
  std::uint32_t significand = magnitude & 0x7FFFFFu;
  if ((magnitude >> 23) != 0) significand |= 0x800000u;
  std::uint32_t base = 0;  // biased exponent field, already shifted into place
  int shift = 23 - mantissa_bits;
  if (exponent >= min_normal_exponent) {
    base = static_cast<std::uint32_t>(exponent + bias) << mantissa_bits;
    significand &= 0x7FFFFFu;
  } else {
    shift += min_normal_exponent - exponent;  // subnormal in the target: exponent field 0
    if (shift > 24) return 0;                 // below half the smallest subnormal
  }
  const std::uint32_t kept = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1);
  std::uint32_t code = base + kept;
  if (rest > halfway || (rest == halfway && (kept & 1u) != 0)) ++code;
  return code;
}

/// A code's magnitude bits -> float, for formats without special codes in that range.
FRUGAL_HOST_DEVICE constexpr float decode_magnitude(std::uint32_t magnitude, int mantissa_bits,
                                                    int bias) noexcept {
  const std::uint32_t exponent = magnitude >> mantissa_bits;
  const std::uint32_t fraction = magnitude & ((1u << mantissa_bits) - 1u);
  if (exponent == 0) {
    // Subnormal: fraction * 2^(1 - bias - mantissa_bits), exact in binary32.
    float value = static_cast<float>(fraction);
    for (int i = 0; i < bias - 1 + mantissa_bits; ++i) value *= 0.5f;
    return value;
  }
  return bits_float(((exponent + 127u - static_cast<std::uint32_t>(bias)) << 23) |
                    (fraction << (23 - mantissa_bits)));
}

FRUGAL_HOST_DEVICE constexpr float with_sign(float magnitude, bool negative) noexcept {
  return bits_float(float_bits(magnitude) | (negative ? 0x80000000u : 0u));
}

inline constexpr std::uint32_t float_inf_bits = 0x7F800000u;
inline constexpr std::uint32_t float_quiet_nan_bits = 0x7FC00000u;

}  // namespace detail

// ---- FP8 E4M3 (OCP "fn": bias 7, no infinities, NaN = S.1111.111) ------------------------------

/// @brief float -> FP8 E4M3, round to nearest even, saturating: identical to CUDA's
/// `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)` for every input.
/// @param x any float. Values beyond ±448 and ±infinity give ±448 (0x7E / 0xFE); NaN of either
/// sign gives 0x7F; -0 and negatives that round to zero give 0x80; float denormals give ±0.
/// @returns the code in the low 8 bits.
FRUGAL_HOST_DEVICE constexpr std::uint8_t to_fp8_e4m3(float x) noexcept {
  const std::uint32_t bits = detail::float_bits(x);
  const std::uint32_t sign = (bits >> 24) & 0x80u;
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > detail::float_inf_bits) return e4m3_nan_code;
  if (magnitude >= 0x43E00000u) return static_cast<std::uint8_t>(sign | 0x7Eu);  // >= 448
  return static_cast<std::uint8_t>(sign | detail::round_magnitude(magnitude, 3, 7));
}

/// @brief FP8 E4M3 -> float, exact. 0x7F and 0xFF (the NaNs) give a positive quiet NaN
/// (bits 0x7FC00000); 0x80 gives -0.0f.
FRUGAL_HOST_DEVICE constexpr float from_fp8_e4m3(std::uint8_t code) noexcept {
  const std::uint32_t magnitude = code & 0x7Fu;
  if (magnitude == 0x7Fu) return detail::bits_float(detail::float_quiet_nan_bits);
  return detail::with_sign(detail::decode_magnitude(magnitude, 3, 7), (code & 0x80u) != 0);
}

// ---- FP8 E5M2 (OCP: bias 15, IEEE-like infinities and NaNs) ------------------------------------

/// @brief float -> FP8 E5M2, round to nearest even, saturating: identical to CUDA's
/// `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)` for every input.
/// @param x any float. Values beyond ±57344 and ±infinity give ±57344 (0x7B / 0xFB), so the
/// encoder never produces an infinity code; NaN of either sign gives 0x7F; -0 gives 0x80.
FRUGAL_HOST_DEVICE constexpr std::uint8_t to_fp8_e5m2(float x) noexcept {
  const std::uint32_t bits = detail::float_bits(x);
  const std::uint32_t sign = (bits >> 24) & 0x80u;
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > detail::float_inf_bits) return e5m2_nan_code;
  if (magnitude >= 0x47600000u) return static_cast<std::uint8_t>(sign | 0x7Bu);  // >= 57344
  return static_cast<std::uint8_t>(sign | detail::round_magnitude(magnitude, 2, 15));
}

/// @brief FP8 E5M2 -> float, exact. 0x7C / 0xFC give ±infinity; 0x7D-0x7F and 0xFD-0xFF (the
/// NaNs) give a positive quiet NaN (bits 0x7FC00000); 0x80 gives -0.0f.
FRUGAL_HOST_DEVICE constexpr float from_fp8_e5m2(std::uint8_t code) noexcept {
  const std::uint32_t magnitude = code & 0x7Fu;
  const bool negative = (code & 0x80u) != 0;
  if (magnitude > 0x7Cu) return detail::bits_float(detail::float_quiet_nan_bits);
  if (magnitude == 0x7Cu)
    return detail::with_sign(detail::bits_float(detail::float_inf_bits), negative);
  return detail::with_sign(detail::decode_magnitude(magnitude, 2, 15), negative);
}

// ---- FP4 E2M1 (OCP MX: bias 1, values 0, 0.5, 1, 1.5, 2, 3, 4, 6, no specials) -----------------

/// @brief float -> FP4 E2M1 (in the low nibble), round to nearest even, saturating: identical to
/// CUDA's `__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest)` for every input.
/// @param x any float. Values beyond ±6 and ±infinity give ±6 (0x7 / 0xF); NaN of either sign
/// gives +6 (0x7), as CUDA does (E2M1 has no NaN); -0 and negatives that round to zero give 0x8.
FRUGAL_HOST_DEVICE constexpr std::uint8_t to_fp4_e2m1(float x) noexcept {
  const std::uint32_t bits = detail::float_bits(x);
  const std::uint32_t sign = (bits >> 28) & 0x8u;
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > detail::float_inf_bits) return 0x7u;
  if (magnitude >= 0x40C00000u) return static_cast<std::uint8_t>(sign | 0x7u);  // >= 6
  return static_cast<std::uint8_t>(sign | detail::round_magnitude(magnitude, 1, 1));
}

/// @brief FP4 E2M1 -> float, exact. Only the low nibble of `code` is read; 0x8 gives -0.0f.
FRUGAL_HOST_DEVICE constexpr float from_fp4_e2m1(std::uint8_t code) noexcept {
  return detail::with_sign(detail::decode_magnitude(code & 0x7u, 1, 1), (code & 0x8u) != 0);
}

// ---- E8M0 scales (OCP MX: 2^(code - 127), code 0xFF is NaN, no sign, no zero) ------------------

/// @brief float -> E8M0 scale: the power of two nearest |x| in the chosen direction, clamped to
/// [2^-127, 2^127]. Identical to CUDA's `__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, r)` with
/// r = cudaRoundZero (round_up false) or cudaRoundPosInf (round_up true), for every input.
/// @param x any float; its sign is ignored. NaN gives 0xFF. ±infinity and |x| >= 2^127 give
/// 0xFE (2^127, saturated). ±0 gives 0x00 (2^-127). Float denormals give 0x00, except that with
/// round_up those above 2^-127 give 0x01 (2^-126).
/// @param round_up false: 2^floor(log2|x|) (the OCP choice); true: 2^ceil(log2|x|), the scale
/// that never lets |x| / scale exceed the element's range by rounding the scale down.
/// @returns the biased exponent code.
FRUGAL_HOST_DEVICE constexpr std::uint8_t to_e8m0(float x, bool round_up = false) noexcept {
  const std::uint32_t magnitude = detail::float_bits(x) & 0x7FFFFFFFu;
  if (magnitude > detail::float_inf_bits) return e8m0_nan_code;
  if (magnitude == detail::float_inf_bits) return 0xFEu;
  std::uint32_t exponent = magnitude >> 23;
  const std::uint32_t fraction = magnitude & 0x7FFFFFu;
  if (exponent == 0) {  // zero or denormal: below 2^-126
    return static_cast<std::uint8_t>(round_up && fraction > 0x400000u ? 1u : 0u);
  }
  if (round_up && fraction != 0) ++exponent;
  return static_cast<std::uint8_t>(exponent > 0xFEu ? 0xFEu : exponent);
}

/// @brief E8M0 -> float: 2^(code - 127), exact. 0x00 gives 2^-127, a float denormal (bits
/// 0x00400000; device code compiled with flush-to-zero treats it as 0 in arithmetic); 0xFF
/// gives a positive quiet NaN (bits 0x7FC00000).
FRUGAL_HOST_DEVICE constexpr float from_e8m0(std::uint8_t code) noexcept {
  if (code == e8m0_nan_code) return detail::bits_float(detail::float_quiet_nan_bits);
  if (code == 0) return detail::bits_float(0x00400000u);
  return detail::bits_float(static_cast<std::uint32_t>(code) << 23);
}

}  // namespace frugal::quant
