// frugal/numeric/float16.hpp: 16-bit floating-point element types. With CUDA, frugal::fp16_t and
// frugal::bf16_t are CUDA's __half and __nv_bfloat16; without it, frugal::float16 and
// frugal::bfloat16 below, which store the same bits and convert with round-to-nearest-even.
//   frugal::float16 h{1.5f};  float f = static_cast<float>(h);
#pragma once

#include <frugal/config.hpp>

#include <bit>
#include <cstdint>

#if FRUGAL_HAS_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace frugal {

namespace detail {

// The conversions are host+device so that kernels use the same arithmetic as the host; they use
// __builtin_bit_cast because std::bit_cast is not callable from device code.

/// IEEE 754 binary32 -> binary16, round to nearest even; overflow gives infinity; NaN stays NaN.
FRUGAL_HOST_DEVICE constexpr std::uint16_t float_to_half_bits(float value) noexcept {
  const std::uint32_t x = __builtin_bit_cast(std::uint32_t, value);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u);   // NaN
  if (magnitude >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520
  if (magnitude < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (magnitude < 0x33000001u) return static_cast<std::uint16_t>(sign);  // rounds to 0
    const std::uint32_t exponent = magnitude >> 23;
    const std::uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14..24
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = ((magnitude - 0x38000000u) >> 13);  // rebias 127 -> 15
  const std::uint32_t rest = magnitude & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

FRUGAL_HOST_DEVICE constexpr float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) return __builtin_bit_cast(float, sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    if (mantissa == 0) return __builtin_bit_cast(float, sign);
    // Subnormal: normalise.
    std::uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    return __builtin_bit_cast(float, sign | (e << 23) | ((mantissa & 0x3FFu) << 13));
  }
  return __builtin_bit_cast(float, sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/// binary32 -> bfloat16, round to nearest even; NaN stays NaN.
FRUGAL_HOST_DEVICE constexpr std::uint16_t float_to_bfloat16_bits(float value) noexcept {
  const std::uint32_t x = __builtin_bit_cast(std::uint32_t, value);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

FRUGAL_HOST_DEVICE constexpr float bfloat16_bits_to_float(std::uint16_t b) noexcept {
  return __builtin_bit_cast(float, static_cast<std::uint32_t>(b) << 16);
}

}  // namespace detail

/// @brief IEEE binary16 storage with float conversions (round to nearest even).
struct float16 {
  std::uint16_t bits = 0;
  constexpr float16() = default;
  constexpr explicit float16(float f) noexcept : bits(detail::float_to_half_bits(f)) {}
  static constexpr float16 from_bits(std::uint16_t b) noexcept {
    float16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
  friend constexpr bool operator==(float16 a, float16 b) noexcept { return a.bits == b.bits; }
};

/// @brief bfloat16 storage (the top half of a binary32) with float conversions.
struct bfloat16 {
  std::uint16_t bits = 0;
  constexpr bfloat16() = default;
  constexpr explicit bfloat16(float f) noexcept : bits(detail::float_to_bfloat16_bits(f)) {}
  static constexpr bfloat16 from_bits(std::uint16_t b) noexcept {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const noexcept {
    return detail::bfloat16_bits_to_float(bits);
  }
  friend constexpr bool operator==(bfloat16 a, bfloat16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2);

#if FRUGAL_HAS_CUDA
using fp16_t = __half;  ///< the 16-bit float element type: CUDA's when CUDA is found
using bf16_t = __nv_bfloat16;
#else
using fp16_t = float16;
using bf16_t = bfloat16;
#endif

}  // namespace frugal
