// frugal/quant/quantize.hpp: the CPU reference quantizer. quantize() packs a float32, fp16 or
// bf16 tensor into one allocation (values and scales) from any frugal resource; dequantize()
// unpacks it. The CUDA kernels (frugal/quant/kernels.hpp) produce the same bytes.
//   frugal::host_resource host;
//   auto q = frugal::quant::quantize(frugal::quant::format::int4_g64, weights, cols, host);
//   frugal::quant::dequantize(q, restored);   // q.bytes() counts scales and zero points
#pragma once

#include <frugal/mr/resource_ref.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/quantized_tensor.hpp>

#include <cstddef>
#include <span>

namespace frugal::quant {

/// @brief Choices that do not change a format's layout.
struct options {
  /// MX formats: false = the OCP MX v1.0 scale, 2^(floor(log2(amax)) - emax_elem); true =
  /// NVIDIA's choice, the scale rounded up so that amax / scale never exceeds the element's
  /// largest value (no saturation inside a block).
  bool mx_round_up_scale = false;
  /// Worker threads for large inputs; 0 = std::thread::hardware_concurrency().
  unsigned threads = 0;
};

/// @brief Quantizes `input` (row-major, rows = input.size() / cols) to `f`, allocating from `r`
/// (which must be host-accessible).
/// @throws frugal::invalid_argument for an empty input, cols == 0, input.size() not a multiple
///   of cols, or a row length the format cannot take (see layout_of); nothing is allocated.
quantized_tensor quantize(format f, std::span<const float> input, std::size_t cols,
                          any_resource_ref r, const options& opts = {});
quantized_tensor quantize(format f, std::span<const float16> input, std::size_t cols,
                          any_resource_ref r, const options& opts = {});
quantized_tensor quantize(format f, std::span<const bfloat16> input, std::size_t cols,
                          any_resource_ref r, const options& opts = {});

/// @brief Writes the dequantized tensor to `output` (rows * cols floats).
/// @throws frugal::invalid_argument when output.size() != rows * cols; nothing is written.
void dequantize(const quantized_tensor& q, std::span<float> output, const options& opts = {});

}  // namespace frugal::quant
