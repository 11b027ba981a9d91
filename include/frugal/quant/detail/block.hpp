// frugal/quant/detail/block.hpp: the block-level arithmetic of every quantization format, shared
// by the CPU reference (src/quant/quantize.cpp) and the CUDA kernels (cuda/quant.cu), so both
// produce the same bytes.
//   namespace detail = frugal::quant::detail;
//   float amax = detail::block_amax(x, 64);
//   auto p = detail::int_symmetric_params(amax, detail::int4_symmetric_max);
//   detail::encode_int4<false>(x, 64, p, packed);   // 32 bytes, even element in the low nibble
//
// ---------------------------------------------------------------------------------------------
// How to use these functions (CPU loop or kernel)
//
// Every function is FRUGAL_HOST_DEVICE, noexcept, allocation-free and throws nothing. Inputs
// are float; a caller holding fp16/bf16 converts each element to float first (exact). The
// layout (offsets, group order) comes from layout_of() in frugal/quant/format.hpp; "group" below
// is one scale's worth of elements: the whole tensor, one row, or one block along a row.
//
// Reductions are max/min only (block_amax, block_min_max, merge_min_max): associative and
// commutative, so a warp/tree reduction in any order gives the same value as the sequential
// loop. Non-finite inputs are skipped by every reduction (see "NaN and infinity" below).
//
// Per-format call sequences (x = the group's elements, n = their count):
//   int8 / int8_channel / int8_gN / int4_gN (symmetric):
//     amax = block_amax(x, n)                      (tensor: reduce over all, channel: the row)
//     p = int_symmetric_params(amax, int8_symmetric_max or int4_symmetric_max)
//     scales[g] = p.scale
//     encode_int8<false>(x, n, p, values) or encode_int4<false>(x, n, p, values)
//   ..._asym:
//     r = block_min_max(x, n)                      (merge_min_max to combine partial results)
//     p = int_asymmetric_params(r, int8_asymmetric_max or int4_asymmetric_max)
//     scales[g] = p.scale; zero_points[g] = uint8(p.zero_point)
//     encode_int8<true>(...) or encode_int4<true>(...)
//   fp8_e4m3 / fp8_e5m2 (tensor or channel):
//     amax = block_amax(x, n); s = fp8_scale(amax, e4m3_max or e5m2_max); scales[g] = s
//     encode_fp8_e4m3(x, n, s, values) or encode_fp8_e5m2(x, n, s, values)
//   mxfp8 / mxfp4 (blocks of 32):
//     amax = block_amax(x, 32); b = mx_scale_code(amax, emax, max, round_up); scales[g] = b
//     encode_fp8_e4m3_scaled(x, 32, e8m0_inverse(b), values)          (mxfp8)
//     encode_fp4(x, 32, e8m0_inverse(b), values)                       (mxfp4, 16 bytes)
//   nvfp4 (blocks of 16; two passes):
//     pass 1: tensor_amax = block_amax over the whole tensor
//             t = nvfp4_tensor_scales(tensor_amax); tensor_scale[0] = t.decode
//     pass 2: per block: b = nvfp4_block_scale(block_amax(x, 16), t.encode); scales[g] = b
//             encode_fp4(x, 16, nvfp4_element_scale(b, t.decode), values)   (8 bytes)
//   nf4 (blocks of 64):
//     amax = block_amax(x, 64); scales[g] = amax; encode_nf4(x, 64, amax, values)  (32 bytes)
//   q8_0 (records of 34 bytes):  encode_q8_0(x, record)   (32 elements)
//   q4_0 (records of 18 bytes):  encode_q4_0(x, record)   (32 elements)
//     q4_0's scale is the signed value of largest magnitude, the FIRST such element in the
//     block when +a and -a tie (as ggml). q4_0_signed_max() finds it sequentially; a parallel
//     kernel can reduce amax, then take the lowest index i with finite_abs(x[i]) == amax.
//     q4_0_params / q8_0_params + q4_0_code / q8_0_code give the per-element form.
// Decoding mirrors each family: decode_int8/decode_int4, decode_fp8_e4m3/e5m2 (times the
// scale), decode_fp4, decode_nf4, decode_q8_0, decode_q4_0. Padding bytes between regions are
// zero (the caller writes them).
//
// 4-bit packing: element i of a group goes to byte i / 2 of the group's bytes, the even element
// in the low nibble (except q4_0, whose record holds element j in the low nibble and element
// j + 16 in the high nibble of byte j, as GGUF).
//
// Floating-point determinism: every product and sum below is meant to be rounded on its own.
// Do not compile with -ffast-math; host builds that enable FMA instructions (e.g. -march=native)
// must add -ffp-contract=off, and device code must be built with -fmad=false, -ftz=false and
// IEEE division (-prec-div=true, nvcc's default without --use_fast_math). With those flags the
// host and device give identical bytes.
//
// NaN and infinity (documented in docs/formats.md):
//   - reductions skip NaN and ±inf, so one bad value does not spoil its group's scale;
//   - integer formats (int8/int4, q8_0, q4_0): NaN encodes as the code of 0.0 (the zero point);
//     ±inf saturates to the extreme code of its sign (in a group whose finite values are all
//     zero the scale is 0 and every element, ±inf included, encodes as 0);
//   - nf4: NaN encodes as code 7 (0.0); ±inf as codes 15 / 0 (±absmax);
//   - fp8, mxfp8, mxfp4, nvfp4: the element codec decides (E4M3/E5M2: NaN -> 0x7F, ±inf ->
//     ±max; E2M1: NaN -> +6, ±inf -> ±6).
//   - decoding: every decoder passes its results through canonical_nan(), so any NaN it
//     produces (a NaN code, a NaN scale read from a file, 0 * inf) is the positive quiet NaN
//     0x7FC00000 on the host and on the device alike. A float operation with a NaN operand
//     keeps that operand's bits on x86 but gives 0x7FFFFFFF on a CUDA device, and x86's 0 * inf
//     is 0xFFC00000, so the raw products would differ.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <frugal/config.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/codecs.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace frugal::quant::detail {

// ---- constants ---------------------------------------------------------------------------------

inline constexpr int int8_symmetric_max = 127;   ///< int8 symmetric codes are -127..127
inline constexpr int int8_asymmetric_max = 255;  ///< int8 asymmetric codes are 0..255
inline constexpr int int4_symmetric_max = 7;     ///< int4 symmetric codes are -7..7
inline constexpr int int4_asymmetric_max = 15;   ///< int4 asymmetric codes are 0..15
inline constexpr float float_max = 3.40282347e+38f;

/// @brief bitsandbytes' NF4 codebook (QLoRA, Dettmers et al. 2023): the value of code 0..15.
/// (A function-local table, so device code can use it without a __constant__ symbol.)
FRUGAL_HOST_DEVICE constexpr float nf4_value(int code) noexcept {
  constexpr float codebook[16] = {-1.0f,
                                  -0.6961928009986877f,
                                  -0.5250730514526367f,
                                  -0.39491748809814453f,
                                  -0.28444138169288635f,
                                  -0.18477343022823334f,
                                  -0.09105003625154495f,
                                  0.0f,
                                  0.07958029955625534f,
                                  0.16093020141124725f,
                                  0.24611230194568634f,
                                  0.33791524171829224f,
                                  0.44070982933044434f,
                                  0.5626170039176941f,
                                  0.7229568362236023f,
                                  1.0f};
  return codebook[code & 0xF];
}

/// @brief The decision threshold t (0..14) between NF4 codes t and t + 1, as bitsandbytes'
/// quantizer uses them (midpoints rounded to float). code = number of thresholds strictly below
/// x / absmax, so a value exactly on a midpoint takes the lower code, as bitsandbytes'
/// `x > threshold` tree does.
FRUGAL_HOST_DEVICE constexpr float nf4_threshold(int t) noexcept {
  constexpr float thresholds[15] = {
      -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
      -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
      0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
      0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f};
  return thresholds[t];
}

// ---- scalar helpers ----------------------------------------------------------------------------

/// @brief True when x is neither NaN nor ±infinity (bit test: no library call, same on device).
FRUGAL_HOST_DEVICE constexpr bool is_finite(float x) noexcept {
  return (float_bits(x) & 0x7F800000u) != 0x7F800000u;
}

/// @brief What every decoder writes for a NaN: the positive quiet NaN with no payload.
inline constexpr std::uint32_t decoded_nan_bits = float_quiet_nan_bits;

/// @brief v, or the float with bits decoded_nan_bits (0x7FC00000) when v is any NaN. A bit test
/// and an integer select, so neither compiler nor hardware can give the NaN other bits.
FRUGAL_HOST_DEVICE constexpr float canonical_nan(float v) noexcept {
  const std::uint32_t bits = float_bits(v);
  return bits_float((bits & 0x7FFFFFFFu) > float_inf_bits ? decoded_nan_bits : bits);
}

/// @brief max / min of two non-NaN floats as a plain comparison, which compilers vectorize
/// (fmaxf / fminf carry NaN rules that keep host loops scalar). Callers never pass NaN.
FRUGAL_HOST_DEVICE constexpr float max_of(float a, float b) noexcept { return a > b ? a : b; }
FRUGAL_HOST_DEVICE constexpr float min_of(float a, float b) noexcept { return a < b ? a : b; }

/// @brief |x| when x is finite, else 0: what every reduction folds.
FRUGAL_HOST_DEVICE inline float finite_abs(float x) noexcept {
  return is_finite(x) ? fabsf(x) : 0.0f;
}

/// @brief x rounded to the nearest integer, ties to even, for |x| <= 2^22 (callers clamp first).
/// Adding and removing 1.5 * 2^23 leaves only the integer part in round-to-nearest-even mode;
/// two separately rounded additions, identical on host and device.
FRUGAL_HOST_DEVICE inline float round_half_even(float x) noexcept {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  const float shifted = x + magic;
  return shifted - magic;
}

/// @brief roundf(x) (ties away from zero) without a library call, for |x| <= 2^22.
FRUGAL_HOST_DEVICE inline float round_half_away(float x) noexcept {
  const float even = round_half_even(x);
  const float diff = x - even;  // exact: |diff| <= 0.5
  // A tie that went to the even integer toward zero moves one step away instead. x is then a
  // half-integer, so x + copysign(0.5, x) is exact.
  const bool tie = fabsf(diff) == 0.5f;
  return tie ? x + copysignf(0.5f, x) : even;
}

/// @brief 2^(127 - code) for an E8M0 code 0..254: the exact reciprocal of from_e8m0(code).
FRUGAL_HOST_DEVICE constexpr float e8m0_inverse(std::uint8_t code) noexcept {
  return from_e8m0(static_cast<std::uint8_t>(254 - code));
}

// ---- reductions --------------------------------------------------------------------------------

/// @brief max |x[i]| over the finite elements (0 when there are none).
FRUGAL_HOST_DEVICE inline float block_amax(const float* x, std::size_t n) noexcept {
  float amax = 0.0f;
  for (std::size_t i = 0; i < n; ++i) amax = max_of(amax, finite_abs(x[i]));
  return amax;
}

/// @brief A group's range, always extended to include 0: lo <= 0 <= hi.
struct min_max {
  float lo = 0.0f;
  float hi = 0.0f;
};

/// @brief min and max over the finite elements, extended to include 0.
FRUGAL_HOST_DEVICE inline min_max block_min_max(const float* x, std::size_t n) noexcept {
  float lo = 0.0f;
  float hi = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = is_finite(x[i]) ? x[i] : 0.0f;
    lo = min_of(lo, v);
    hi = max_of(hi, v);
  }
  return {lo, hi};
}

/// @brief Combines two partial ranges (for tensor-wide or parallel reductions).
FRUGAL_HOST_DEVICE inline min_max merge_min_max(min_max a, min_max b) noexcept {
  return {fminf(a.lo, b.lo), fmaxf(a.hi, b.hi)};
}

// ---- integer formats (int8 / int4, symmetric and asymmetric) -----------------------------------

/// @brief One group's integer parameters. decode(q) = (q - zero_point) * scale.
struct int_params {
  float scale = 0.0f;      ///< what the scales region stores
  float inv_scale = 0.0f;  ///< 1 / scale (0 when scale is 0), what encoding multiplies by
  int zero_point = 0;      ///< 0 for symmetric formats; the stored uint8 for asymmetric ones
};

/// @brief 1 / scale, 0 for a zero scale, capped at the largest float (a tiny scale must not
/// make 0 * inf = NaN).
FRUGAL_HOST_DEVICE inline float safe_inverse(float scale) noexcept {
  return scale > 0.0f ? fminf(1.0f / scale, float_max) : 0.0f;
}

/// @brief Symmetric: scale = amax / qmax, codes -qmax..qmax.
/// @param amax the group's block_amax; @param qmax int8_symmetric_max or int4_symmetric_max
FRUGAL_HOST_DEVICE inline int_params int_symmetric_params(float amax, int qmax) noexcept {
  int_params p;
  p.scale = amax / static_cast<float>(qmax);
  p.inv_scale = safe_inverse(p.scale);
  p.zero_point = 0;
  return p;
}

/// @brief Asymmetric: over [lo, hi] (including 0), scale = (hi - lo) / qmax (capped at the
/// largest float), zero_point = clamp(round_half_even(-lo / scale), 0, qmax), codes 0..qmax.
/// @param r the group's block_min_max; @param qmax int8_asymmetric_max or int4_asymmetric_max
FRUGAL_HOST_DEVICE inline int_params int_asymmetric_params(min_max r, int qmax) noexcept {
  int_params p;
  const float range = r.hi - r.lo;
  p.scale = fminf(range / static_cast<float>(qmax), float_max);
  p.inv_scale = safe_inverse(p.scale);
  const float minus_lo = -r.lo;
  const float z = round_half_even(fminf(minus_lo * p.inv_scale, static_cast<float>(qmax)));
  p.zero_point = static_cast<int>(z);
  return p;
}

/// @brief One element's integer code: clamp(round_half_even(x * inv_scale) + zero_point, Qmin,
/// Qmax); NaN gives zero_point. Qmin/Qmax: -127/127, 0/255, -7/7, 0/15.
template <int Qmin, int Qmax>
FRUGAL_HOST_DEVICE inline int int_code(float x, float inv_scale, int zero_point) noexcept {
  float v = x * inv_scale;
  v = v == v ? v : 0.0f;                   // NaN -> 0 (the zero point)
  v = min_of(max_of(v, -512.0f), 512.0f);  // ±inf and far values: keep the conversion defined
  int q = static_cast<int>(round_half_even(v)) + zero_point;
  q = q < Qmin ? Qmin : q;
  q = q > Qmax ? Qmax : q;
  return q;
}

/// @brief Encodes n elements to one byte each: two's complement int8 (symmetric) or uint8
/// (asymmetric).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void encode_int8(const float* x, std::size_t n, const int_params& p,
                                           std::uint8_t* out) noexcept {
  constexpr int qmin = Asymmetric ? 0 : -int8_symmetric_max;
  constexpr int qmax = Asymmetric ? int8_asymmetric_max : int8_symmetric_max;
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<std::uint8_t>(int_code<qmin, qmax>(x[i], p.inv_scale, p.zero_point));
}

/// @brief Encodes n (even) elements to n / 2 bytes, element 2k in the low nibble of byte k.
/// Symmetric codes -7..7 are stored as 4-bit two's complement (0x9..0xF for -7..-1; 0x8 is
/// never written); asymmetric codes 0..15 as is.
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void encode_int4(const float* x, std::size_t n, const int_params& p,
                                           std::uint8_t* out) noexcept {
  constexpr int qmin = Asymmetric ? 0 : -int4_symmetric_max;
  constexpr int qmax = Asymmetric ? int4_asymmetric_max : int4_symmetric_max;
  for (std::size_t k = 0; k < n / 2; ++k) {
    const int lo = int_code<qmin, qmax>(x[2 * k], p.inv_scale, p.zero_point);
    const int hi = int_code<qmin, qmax>(x[2 * k + 1], p.inv_scale, p.zero_point);
    out[k] = static_cast<std::uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
  }
}

/// @brief A stored int8 byte -> its code (sign-extended for symmetric formats).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE constexpr int int8_value(std::uint8_t byte) noexcept {
  return Asymmetric ? static_cast<int>(byte) : static_cast<int>(static_cast<std::int8_t>(byte));
}

/// @brief A stored nibble (low 4 bits) -> its code (sign-extended for symmetric formats).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE constexpr int int4_value(std::uint8_t nibble) noexcept {
  const int v = nibble & 0xF;
  return Asymmetric ? v : (v ^ 8) - 8;
}

/// @brief out[i] = (code - zero_point) * scale for n int8 codes (a NaN result, from a NaN or
/// infinite scale, is canonical_nan's).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void decode_int8(const std::uint8_t* in, std::size_t n, float scale,
                                           int zero_point, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    out[i] = canonical_nan(static_cast<float>(int8_value<Asymmetric>(in[i]) - zero_point) * scale);
}

/// @brief out[i] = (code - zero_point) * scale for n (even) int4 codes packed in n / 2 bytes
/// (NaN results as decode_int8).
template <bool Asymmetric>
FRUGAL_HOST_DEVICE inline void decode_int4(const std::uint8_t* in, std::size_t n, float scale,
                                           int zero_point, float* out) noexcept {
  for (std::size_t k = 0; k < n / 2; ++k) {
    const std::uint8_t b = in[k];
    out[2 * k] =
        canonical_nan(static_cast<float>(int4_value<Asymmetric>(b & 0xF) - zero_point) * scale);
    out[2 * k + 1] =
        canonical_nan(static_cast<float>(int4_value<Asymmetric>(b >> 4) - zero_point) * scale);
  }
}

// ---- FP8 with an FP32 scale (per tensor, per channel) -------------------------------------------

/// @brief scale = amax / format_max (e4m3_max or e5m2_max); 0 for an all-zero group.
FRUGAL_HOST_DEVICE inline float fp8_scale(float amax, float format_max) noexcept {
  return amax / format_max;
}

/// @brief out[i] = to_fp8_e4m3(x[i] / scale) (x[i] / 1 when scale is 0).
FRUGAL_HOST_DEVICE inline void encode_fp8_e4m3(const float* x, std::size_t n, float scale,
                                               std::uint8_t* out) noexcept {
  const float divisor = scale > 0.0f ? scale : 1.0f;
  for (std::size_t i = 0; i < n; ++i) out[i] = to_fp8_e4m3(x[i] / divisor);
}

/// @brief out[i] = to_fp8_e5m2(x[i] / scale) (x[i] / 1 when scale is 0).
FRUGAL_HOST_DEVICE inline void encode_fp8_e5m2(const float* x, std::size_t n, float scale,
                                               std::uint8_t* out) noexcept {
  const float divisor = scale > 0.0f ? scale : 1.0f;
  for (std::size_t i = 0; i < n; ++i) out[i] = to_fp8_e5m2(x[i] / divisor);
}

/// @brief out[i] = from_fp8_e4m3(in[i]) * scale; the NaN codes (0x7F, 0xFF) and a NaN scale
/// give canonical_nan's 0x7FC00000.
FRUGAL_HOST_DEVICE inline void decode_fp8_e4m3(const std::uint8_t* in, std::size_t n, float scale,
                                               float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = canonical_nan(from_fp8_e4m3(in[i]) * scale);
}

/// @brief out[i] = from_fp8_e5m2(in[i]) * scale; NaN codes, a NaN scale and ±inf * 0 give
/// canonical_nan's 0x7FC00000.
FRUGAL_HOST_DEVICE inline void decode_fp8_e5m2(const std::uint8_t* in, std::size_t n, float scale,
                                               float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = canonical_nan(from_fp8_e5m2(in[i]) * scale);
}

// ---- MX (OCP Microscaling v1.0): E8M0 block scales
// -----------------------------------------------

/// @brief The E8M0 scale code of an MX block.
/// @param amax the block's block_amax
/// @param element_emax e4m3_emax (mxfp8) or e2m1_emax (mxfp4)
/// @param element_max e4m3_max or e2m1_max (used by round_up only)
/// @param round_up false: OCP, 2^(floor(log2 amax) - emax), i.e. max(0, to_e8m0(amax) - emax)
///   (an all-zero block gets code 0, 2^-127). true: NVIDIA's choice,
///   to_e8m0(amax * (1 / element_max), round up), so amax / scale never exceeds element_max.
FRUGAL_HOST_DEVICE inline std::uint8_t mx_scale_code(float amax, int element_emax,
                                                     float element_max, bool round_up) noexcept {
  if (round_up) {
    const float reciprocal = 1.0f / element_max;  // 1/448 or 1/6 rounded to float, as TE
    return to_e8m0(amax * reciprocal, true);
  }
  const int code = static_cast<int>(to_e8m0(amax, false)) - element_emax;
  return static_cast<std::uint8_t>(code < 0 ? 0 : code);
}

/// @brief out[i] = to_fp8_e4m3(x[i] * multiplier); for MX the multiplier is e8m0_inverse(code),
/// a power of two, so the product is exact before the codec rounds.
FRUGAL_HOST_DEVICE inline void encode_fp8_e4m3_scaled(const float* x, std::size_t n,
                                                      float multiplier,
                                                      std::uint8_t* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = to_fp8_e4m3(x[i] * multiplier);
}

/// @brief n (even) elements -> n / 2 bytes of E2M1: to_fp4_e2m1(x[i] * multiplier), element 2k
/// in the low nibble of byte k. mxfp4: multiplier = e8m0_inverse(code); nvfp4:
/// nvfp4_element_scale(...).
FRUGAL_HOST_DEVICE inline void encode_fp4(const float* x, std::size_t n, float multiplier,
                                          std::uint8_t* out) noexcept {
  for (std::size_t k = 0; k < n / 2; ++k) {
    const std::uint8_t lo = to_fp4_e2m1(x[2 * k] * multiplier);
    const std::uint8_t hi = to_fp4_e2m1(x[2 * k + 1] * multiplier);
    out[k] = static_cast<std::uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
  }
}

/// @brief out[i] = from_fp4_e2m1(nibble i) * scale, for n (even) elements in n / 2 bytes.
/// mxfp4: scale = from_e8m0(code); nvfp4: nvfp4_decode_scale(...). A NaN scale (E8M0 code
/// 0xFF, an E4M3 NaN block code, a NaN tensor scale) and 0 * inf give canonical_nan's NaN.
FRUGAL_HOST_DEVICE inline void decode_fp4(const std::uint8_t* in, std::size_t n, float scale,
                                          float* out) noexcept {
  for (std::size_t k = 0; k < n / 2; ++k) {
    out[2 * k] = canonical_nan(from_fp4_e2m1(static_cast<std::uint8_t>(in[k] & 0xF)) * scale);
    out[2 * k + 1] = canonical_nan(from_fp4_e2m1(static_cast<std::uint8_t>(in[k] >> 4)) * scale);
  }
}

// ---- NVFP4: E4M3 block scales under an FP32 tensor scale (TransformerEngine's order)
// -------------

/// @brief The per-tensor scales: encode = 448 * 6 / tensor_amax (capped at the largest float;
/// 1 when tensor_amax is 0 or the quotient underflows to 0), decode = 1 / encode (what the
/// tensor_scale region stores, about tensor_amax / 2688).
struct nvfp4_tensor_params {
  float encode = 1.0f;
  float decode = 1.0f;
};

FRUGAL_HOST_DEVICE inline nvfp4_tensor_params nvfp4_tensor_scales(float tensor_amax) noexcept {
  constexpr float numerator = e4m3_max * e2m1_max;  // 448 * 6 = 2688, exact
  float encode = fminf(numerator / tensor_amax, float_max);
  if (tensor_amax == 0.0f || encode == 0.0f) encode = 1.0f;
  nvfp4_tensor_params t;
  t.encode = encode;
  t.decode = 1.0f / encode;
  return t;
}

/// @brief The block's E4M3 decode-scale code: to_fp8_e4m3(block_amax * (encode * (1 / 6)))
/// (saturating at 448).
FRUGAL_HOST_DEVICE inline std::uint8_t nvfp4_block_scale(float block_amax,
                                                         float tensor_encode) noexcept {
  constexpr float inv_fp4_max = 1.0f / e2m1_max;
  const float factor = tensor_encode * inv_fp4_max;
  const float scale = block_amax * factor;
  return to_fp8_e4m3(scale);
}

/// @brief What the block's elements are multiplied by before E2M1 rounding:
/// min(1 / (from_fp8_e4m3(code) * tensor_decode), largest float).
FRUGAL_HOST_DEVICE inline float nvfp4_element_scale(std::uint8_t block_code,
                                                    float tensor_decode) noexcept {
  const float block_decode = from_fp8_e4m3(block_code) * tensor_decode;
  return fminf(1.0f / block_decode, float_max);
}

/// @brief The block's decode multiplier: from_fp8_e4m3(code) * tensor_decode.
FRUGAL_HOST_DEVICE inline float nvfp4_decode_scale(std::uint8_t block_code,
                                                   float tensor_decode) noexcept {
  return from_fp8_e4m3(block_code) * tensor_decode;
}

// ---- NF4 (bitsandbytes codebook, FP32 absmax per block of 64)
// ------------------------------------

/// @brief The NF4 code of a normalised value v = x / absmax: the number of thresholds below v.
/// NaN gives 7 (0.0).
FRUGAL_HOST_DEVICE inline int nf4_code(float v) noexcept {
  int code = 0;
  for (int t = 0; t < 15; ++t) code += v > nf4_threshold(t) ? 1 : 0;
  return v == v ? code : 7;
}

/// @brief n (even) elements -> n / 2 bytes: nf4_code(x[i] * (1 / absmax)), element 2k in the low
/// nibble. absmax 0 encodes every element as code 7 (0.0).
FRUGAL_HOST_DEVICE inline void encode_nf4(const float* x, std::size_t n, float absmax,
                                          std::uint8_t* out) noexcept {
  const float inv = safe_inverse(absmax);
  for (std::size_t k = 0; k < n / 2; ++k) {
    const int lo = nf4_code(x[2 * k] * inv);
    const int hi = nf4_code(x[2 * k + 1] * inv);
    out[k] = static_cast<std::uint8_t>(lo | (hi << 4));
  }
}

/// @brief out[i] = nf4_value(nibble i) * absmax (a NaN absmax, or 0 * inf, gives canonical_nan's
/// NaN).
FRUGAL_HOST_DEVICE inline void decode_nf4(const std::uint8_t* in, std::size_t n, float absmax,
                                          float* out) noexcept {
  for (std::size_t k = 0; k < n / 2; ++k) {
    out[2 * k] = canonical_nan(nf4_value(in[k] & 0xF) * absmax);
    out[2 * k + 1] = canonical_nan(nf4_value(in[k] >> 4) * absmax);
  }
}

// ---- GGUF q8_0 / q4_0 (ggml's reference quantizers)
// ----------------------------------------------

inline constexpr std::size_t gguf_block = 32;         ///< elements per q8_0 / q4_0 record
inline constexpr std::size_t q8_0_record_bytes = 34;  ///< FP16 d, then 32 int8
inline constexpr std::size_t q4_0_record_bytes = 18;  ///< FP16 d, then 16 bytes of nibbles

/// @brief One record's scales: d (fp32, stored as fp16) and id = d ? 1 / d : 0 (from the fp32 d).
struct gguf_params {
  float d = 0.0f;
  float id = 0.0f;
};

/// @brief q8_0: d = amax / 127, id = d ? 1 / d : 0.
FRUGAL_HOST_DEVICE inline gguf_params q8_0_params(float amax) noexcept {
  gguf_params p;
  p.d = amax / static_cast<float>(int8_symmetric_max);
  p.id = p.d != 0.0f ? 1.0f / p.d : 0.0f;
  return p;
}

/// @brief q8_0 code: roundf(x * id) (ties away from zero), clamped to -127..127; NaN -> 0.
FRUGAL_HOST_DEVICE inline int q8_0_code(float x, float id) noexcept {
  float v = x * id;
  v = v == v ? v : 0.0f;
  constexpr float qmax = static_cast<float>(int8_symmetric_max);
  v = min_of(max_of(v, -qmax), qmax);
  return static_cast<int>(round_half_away(v));
}

/// @brief q4_0's max: the finite element of largest magnitude, keeping its sign; the first one
/// when several tie (ggml's strict `amax < |v|` scan). 0 when none is finite and non-zero.
FRUGAL_HOST_DEVICE inline float q4_0_signed_max(const float* x, std::size_t n) noexcept {
  float amax = 0.0f;
  float max = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float a = finite_abs(x[i]);
    if (amax < a) {
      amax = a;
      max = x[i];
    }
  }
  return max;
}

/// @brief q4_0: d = max / -8, id = d ? 1 / d : 0.
FRUGAL_HOST_DEVICE inline gguf_params q4_0_params(float signed_max) noexcept {
  gguf_params p;
  p.d = signed_max / -8.0f;
  p.id = p.d != 0.0f ? 1.0f / p.d : 0.0f;
  return p;
}

/// @brief q4_0 code: min(15, int(x * id + 8.5)) with truncation (the product and the sum each
/// rounded); NaN -> 8 (0.0); ±inf clamp to 0 / 15.
FRUGAL_HOST_DEVICE inline int q4_0_code(float x, float id) noexcept {
  const float v = x * id;
  float shifted = v + 8.5f;
  shifted = shifted == shifted ? shifted : 8.5f;
  shifted = min_of(max_of(shifted, 0.0f), 16.5f);
  const int q = static_cast<int>(shifted);  // truncation toward zero, as ggml's (int8_t) cast
  return q > 15 ? 15 : q;
}

/// @brief Writes the FP16 d (little-endian) at record[0..1].
FRUGAL_HOST_DEVICE inline void store_half(float d, std::uint8_t* record) noexcept {
  const std::uint16_t h = frugal::detail::float_to_half_bits(d);
  record[0] = static_cast<std::uint8_t>(h & 0xFF);
  record[1] = static_cast<std::uint8_t>(h >> 8);
}

/// @brief Reads the FP16 d at record[0..1] as float.
FRUGAL_HOST_DEVICE inline float load_half(const std::uint8_t* record) noexcept {
  const auto h = static_cast<std::uint16_t>(record[0] | (record[1] << 8));
  return frugal::detail::half_bits_to_float(h);
}

/// @brief One q8_0 record (34 bytes) from 32 elements: d as fp16, then 32 int8 codes.
FRUGAL_HOST_DEVICE inline void encode_q8_0(const float* x, std::uint8_t* record) noexcept {
  const gguf_params p = q8_0_params(block_amax(x, gguf_block));
  store_half(p.d, record);
  for (std::size_t j = 0; j < gguf_block; ++j)
    record[2 + j] = static_cast<std::uint8_t>(q8_0_code(x[j], p.id));
}

/// @brief One q4_0 record (18 bytes) from 32 elements: d as fp16, then byte j = code(x[j]) |
/// code(x[j + 16]) << 4.
FRUGAL_HOST_DEVICE inline void encode_q4_0(const float* x, std::uint8_t* record) noexcept {
  const gguf_params p = q4_0_params(q4_0_signed_max(x, gguf_block));
  store_half(p.d, record);
  for (std::size_t j = 0; j < gguf_block / 2; ++j) {
    const int lo = q4_0_code(x[j], p.id);
    const int hi = q4_0_code(x[j + gguf_block / 2], p.id);
    record[2 + j] = static_cast<std::uint8_t>(lo | (hi << 4));
  }
}

/// @brief 32 elements from one q8_0 record: code * d (a NaN d, or 0 * an infinite d, gives
/// canonical_nan's NaN).
FRUGAL_HOST_DEVICE inline void decode_q8_0(const std::uint8_t* record, float* out) noexcept {
  const float d = load_half(record);
  for (std::size_t j = 0; j < gguf_block; ++j)
    out[j] = canonical_nan(static_cast<float>(static_cast<std::int8_t>(record[2 + j])) * d);
}

/// @brief 32 elements from one q4_0 record: (nibble - 8) * d (NaN results as decode_q8_0).
FRUGAL_HOST_DEVICE inline void decode_q4_0(const std::uint8_t* record, float* out) noexcept {
  const float d = load_half(record);
  for (std::size_t j = 0; j < gguf_block / 2; ++j) {
    out[j] = canonical_nan(static_cast<float>((record[2 + j] & 0xF) - 8) * d);
    out[j + gguf_block / 2] = canonical_nan(static_cast<float>((record[2 + j] >> 4) - 8) * d);
  }
}

}  // namespace frugal::quant::detail
