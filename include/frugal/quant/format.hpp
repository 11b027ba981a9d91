// frugal/quant/format.hpp: the quantization formats, their stable names and the byte layout of a
// quantized tensor, shared by the CPU reference (src/quant/) and the CUDA kernels (cuda/quant.cu).
//   auto f = frugal::quant::parse_format("int4_g64_asym");   // to_string(f) == "int4_g64_asym"
//   auto l = frugal::quant::layout_of(f, rows, cols);        // where values and scales live
// The layouts are documented in docs/formats.md.
#pragma once

#include <frugal/config.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace frugal::quant {

/// @brief Every format frugal quantizes to. A tensor is viewed as rows x cols, row-major; a
/// "channel" is a row, and groups and blocks run along a row.
enum class format : std::uint8_t {
  int8,               // symmetric, one FP32 scale per tensor
  int8_asym,          // asymmetric (zero point), per tensor
  int8_channel,       // symmetric, one scale per row
  int8_channel_asym,  // asymmetric, per row
  int8_g32,
  int8_g32_asym,
  int8_g64,
  int8_g64_asym,
  int8_g128,
  int8_g128_asym,
  int4_g32,
  int4_g32_asym,
  int4_g64,
  int4_g64_asym,
  int4_g128,
  int4_g128_asym,
  fp8_e4m3,          // OCP E4M3 ("fn"), one FP32 scale per tensor
  fp8_e5m2,          // OCP E5M2, one FP32 scale per tensor
  fp8_e4m3_channel,  // E4M3, one FP32 scale per row
  fp8_e5m2_channel,  // E5M2, one FP32 scale per row
  mxfp8,             // OCP MX: blocks of 32 E4M3 with one E8M0 scale
  mxfp4,             // OCP MX: blocks of 32 E2M1 with one E8M0 scale
  nvfp4,             // blocks of 16 E2M1, E4M3 block scale, FP32 tensor scale
  nf4,               // bitsandbytes NF4 codebook, blocks of 64, FP32 absmax
  q8_0,              // GGUF block: FP16 scale + 32 int8
  q4_0,              // GGUF block: FP16 scale + 16 bytes of 4-bit values
};

inline constexpr std::size_t format_count = static_cast<std::size_t>(format::q4_0) + 1;

/// @brief How one scale (and zero point) is shared.
enum class granularity : std::uint8_t { tensor, channel, block };

/// @brief The element code a format stores.
enum class element : std::uint8_t { int8, int4, fp8_e4m3, fp8_e5m2, fp4_e2m1, nf4 };

/// @brief How a group's scale is stored.
enum class scale_kind : std::uint8_t {
  f32,        // one float per group (scales region)
  e8m0,       // one byte per block, 2^(e - 127) (MX)
  e4m3_f32,   // one E4M3 byte per block plus one FP32 tensor scale (NVFP4)
  f16_inline  // GGUF: the FP16 scale sits inside each block record; no scales region
};

/// @brief Static facts about a format.
struct format_info {
  format id;
  std::string_view name;
  element code;
  unsigned element_bits;  // 8 or 4
  granularity shared_by;
  std::size_t block;  // elements per block when shared_by == block, else 0
  bool asymmetric;    // stores a zero point per group
  scale_kind scale;
};

namespace detail {
inline constexpr std::array<format_info, format_count> format_table{{
    {format::int8, "int8", element::int8, 8, granularity::tensor, 0, false, scale_kind::f32},
    {format::int8_asym, "int8_asym", element::int8, 8, granularity::tensor, 0, true,
     scale_kind::f32},
    {format::int8_channel, "int8_channel", element::int8, 8, granularity::channel, 0, false,
     scale_kind::f32},
    {format::int8_channel_asym, "int8_channel_asym", element::int8, 8, granularity::channel, 0,
     true, scale_kind::f32},
    {format::int8_g32, "int8_g32", element::int8, 8, granularity::block, 32, false,
     scale_kind::f32},
    {format::int8_g32_asym, "int8_g32_asym", element::int8, 8, granularity::block, 32, true,
     scale_kind::f32},
    {format::int8_g64, "int8_g64", element::int8, 8, granularity::block, 64, false,
     scale_kind::f32},
    {format::int8_g64_asym, "int8_g64_asym", element::int8, 8, granularity::block, 64, true,
     scale_kind::f32},
    {format::int8_g128, "int8_g128", element::int8, 8, granularity::block, 128, false,
     scale_kind::f32},
    {format::int8_g128_asym, "int8_g128_asym", element::int8, 8, granularity::block, 128, true,
     scale_kind::f32},
    {format::int4_g32, "int4_g32", element::int4, 4, granularity::block, 32, false,
     scale_kind::f32},
    {format::int4_g32_asym, "int4_g32_asym", element::int4, 4, granularity::block, 32, true,
     scale_kind::f32},
    {format::int4_g64, "int4_g64", element::int4, 4, granularity::block, 64, false,
     scale_kind::f32},
    {format::int4_g64_asym, "int4_g64_asym", element::int4, 4, granularity::block, 64, true,
     scale_kind::f32},
    {format::int4_g128, "int4_g128", element::int4, 4, granularity::block, 128, false,
     scale_kind::f32},
    {format::int4_g128_asym, "int4_g128_asym", element::int4, 4, granularity::block, 128, true,
     scale_kind::f32},
    {format::fp8_e4m3, "fp8_e4m3", element::fp8_e4m3, 8, granularity::tensor, 0, false,
     scale_kind::f32},
    {format::fp8_e5m2, "fp8_e5m2", element::fp8_e5m2, 8, granularity::tensor, 0, false,
     scale_kind::f32},
    {format::fp8_e4m3_channel, "fp8_e4m3_channel", element::fp8_e4m3, 8, granularity::channel, 0,
     false, scale_kind::f32},
    {format::fp8_e5m2_channel, "fp8_e5m2_channel", element::fp8_e5m2, 8, granularity::channel, 0,
     false, scale_kind::f32},
    {format::mxfp8, "mxfp8", element::fp8_e4m3, 8, granularity::block, 32, false, scale_kind::e8m0},
    {format::mxfp4, "mxfp4", element::fp4_e2m1, 4, granularity::block, 32, false, scale_kind::e8m0},
    {format::nvfp4, "nvfp4", element::fp4_e2m1, 4, granularity::block, 16, false,
     scale_kind::e4m3_f32},
    {format::nf4, "nf4", element::nf4, 4, granularity::block, 64, false, scale_kind::f32},
    {format::q8_0, "q8_0", element::int8, 8, granularity::block, 32, false, scale_kind::f16_inline},
    {format::q4_0, "q4_0", element::int4, 4, granularity::block, 32, false, scale_kind::f16_inline},
}};
}  // namespace detail

/// @brief Static facts about `f`.
constexpr const format_info& info(format f) noexcept {
  return detail::format_table[static_cast<std::size_t>(f)];
}

/// @brief The stable name of `f` ("int4_g64_asym"), used by the API, the CLI and the docs.
constexpr std::string_view to_string(format f) noexcept { return info(f).name; }

/// @brief Every format, in declaration order.
constexpr const std::array<format_info, format_count>& all_formats() noexcept {
  return detail::format_table;
}

/// @brief The format named `name`.
/// @throws frugal::invalid_argument for an unknown name; the message lists the known names.
format parse_format(std::string_view name);

/// @brief Where the parts of a quantized rows x cols tensor live in its one allocation. Offsets
/// are in bytes from the start; every region starts on a 16-byte boundary so kernels can use
/// 16-byte accesses. Empty regions have size 0.
///   values:       the element codes, row-major. 8-bit codes take one byte each; 4-bit codes
///                 take cols / 2 bytes per row, the even-indexed element in the low nibble.
///                 For q8_0 / q4_0 this region holds GGUF's block records (34 / 18 bytes each,
///                 the FP16 scale first) and there are no other regions.
///   scales:       one entry per group, in group order (row r, group j is r * groups_per_row + j):
///                 a float for scale_kind::f32, one byte (E8M0 or E4M3) for e8m0 / e4m3_f32.
///   zero_points:  asymmetric formats: one uint8 code per group, same order as the scales.
///   tensor_scale: nvfp4 only: one float, the per-tensor decode scale (amax / (448 * 6)).
struct layout {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::size_t groups = 0;          // total groups (scales) in the tensor
  std::size_t groups_per_row = 0;  // 0 for per-tensor formats
  std::size_t group_size = 0;      // elements sharing one scale (rows * cols for per-tensor)
  std::size_t values_offset = 0, values_bytes = 0;
  std::size_t scales_offset = 0, scales_bytes = 0;
  std::size_t zero_points_offset = 0, zero_points_bytes = 0;
  std::size_t tensor_scale_offset = 0, tensor_scale_bytes = 0;
  std::size_t total_bytes = 0;  // the allocation's size
};

/// @brief The layout of `f` for a rows x cols tensor.
/// @throws frugal::invalid_argument when rows or cols is 0, when cols is not a multiple of the
///   format's block (groups, MX/NVFP4/NF4/GGUF blocks), or when the size overflows.
layout layout_of(format f, std::size_t rows, std::size_t cols);

/// @brief Bits per element of `f` for a rows x cols tensor, scales and zero points included
/// (8 * total_bytes / (rows * cols), region padding excluded).
double bits_per_element(format f, std::size_t rows, std::size_t cols);

}  // namespace frugal::quant
