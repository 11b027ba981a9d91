// frugal/quant/kernels.hpp: the CUDA quantization kernels (cuda/quant*.cu, in frugal::cuda). They
// write the same bytes as the CPU reference quant::quantize, into a buffer laid out by layout_of.
// snippet: cuda
//   auto l = frugal::quant::layout_of(frugal::quant::format::nvfp4, rows, cols);
//   frugal::quant::quantize_device(frugal::quant::format::nvfp4, d_weights, rows, cols, d_packed,
//                                  stream);
//   frugal::quant::dequantize_device(frugal::quant::format::nvfp4, d_packed, rows, cols,
//                                    d_restored, stream);
#pragma once

#include <frugal/config.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/quantize.hpp>

#include <cstddef>

#if FRUGAL_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace frugal::quant {

#if FRUGAL_HAS_CUDA

/// @brief Launch shape of the quantization kernels (CUB's habit: the knobs in one aggregate,
/// chosen per compute capability, not numbers inside the kernels). See docs/kernels.md.
struct kernel_tuning {
  /// Threads per block of the element-wise kernels (per-tensor and per-channel formats) and of
  /// the reductions; a multiple of 32 in [32, 1024].
  int threads_per_block = 256;
  /// Elements per thread that the element-wise grids are sized for (a power of two, 1-64),
  /// before the blocks_per_sm cap; grid-stride loops cover the rest.
  int items_per_thread = 16;
  /// Widest access in bytes (16, 8 or 4) of the per-tensor and per-channel kernels: bytes of
  /// input per load when quantizing, codes per load when dequantizing; narrower (down to one
  /// element) when a row's length is not a multiple of it. The block-format kernels always
  /// stage their tiles with 16-byte accesses.
  int vec_bytes = 16;
  /// Elements per tile of the block-format kernels (a power of two, at least 128 and at most
  /// 8192); each thread of such a block handles one group, so the block has tile / group threads.
  int block_tile_elements = 8192;
  /// Cap on blocks per launch as a multiple of the SM count (grid-stride loops beyond it).
  int blocks_per_sm = 8;
};

/// @brief The tuning policy for compute capability major.minor: sm_90 (Hopper) and sm_100+ take
/// larger tiles than sm_80 (Ampere); anything older takes the defaults.
kernel_tuning tuning_for(int major, int minor) noexcept;

/// @brief tuning_for the current device's compute capability.
/// @throws cuda_error when the device cannot be queried
kernel_tuning tuning_for_current_device();

/// @brief How many times quantize_device reads its input: 2 for formats that need a reduction
/// before they can encode (per-tensor and per-channel scales, NVFP4's global amax), else 1.
/// Benchmarks count bytes moved with it.
unsigned quantize_input_reads(format f) noexcept;

/// @brief Quantizes a rows x cols row-major tensor on `stream` into `output`, laid out by
/// layout_of(f, rows, cols): the same bytes quant::quantize writes for the same input and
/// options (opts.threads is ignored). Asynchronous: returns once the kernels are queued.
/// A reduction pass (per-tensor or per-channel formats, NVFP4) uses stream-ordered scratch memory
/// from cudaMallocAsync, freed on the stream.
/// @param input device-accessible, rows * cols elements
/// @param output device-accessible, layout_of(f, rows, cols).total_bytes bytes; padding bytes
///   between regions are written as zero
/// @throws invalid_argument for a null pointer, a pointer not 16-byte aligned, a shape layout_of
///   rejects or a format value outside the enumeration (nothing is queued)
/// @throws out_of_memory when the stream's pool has no room for the 8 bytes of scratch
/// @throws cuda_error when a launch or another call fails (the runtime's last error is cleared
///   after any of these failures, so it does not surface at a later launch's check)
void quantize_device(format f, const float* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream = nullptr, const options& opts = {});
void quantize_device(format f, const float16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream = nullptr, const options& opts = {});
void quantize_device(format f, const bfloat16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream = nullptr, const options& opts = {});

/// @brief As above, with an explicit launch shape.
/// @throws invalid_argument also for a tuning knob out of range
void quantize_device(format f, const float* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning);
void quantize_device(format f, const float16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning);
void quantize_device(format f, const bfloat16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning);

/// @brief Dequantizes `input` (laid out by layout_of(f, rows, cols)) into rows * cols floats on
/// `stream`: the same floats, bit for bit, as quant::dequantize. Asynchronous.
/// @throws invalid_argument for a null pointer, a pointer not 16-byte aligned, a shape layout_of
///   rejects or a format value outside the enumeration (nothing is queued)
/// @throws cuda_error when a launch fails
void dequantize_device(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                       float* output, cudaStream_t stream = nullptr);

/// @brief As above, with an explicit launch shape.
void dequantize_device(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                       float* output, cudaStream_t stream, const kernel_tuning& tuning);

#endif  // FRUGAL_HAS_CUDA

}  // namespace frugal::quant
