// Host entry points of the quantization kernels (frugal/quant/kernels.hpp): argument checks,
// the tuning policy per compute capability, and the dispatch from a format to its family. The
// families are compiled apart (quant_scaled.cu, quant_int8.cu, quant_int4.cu, quant_blocks.cu;
// launchers in quant_launch.cuh, kernels in quant_kernels.cuh). Built with -fmad=false.
#include "quant_launch.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

namespace frugal::quant {
namespace {

namespace dd = device_detail;

int sm_count() {
  int device = 0;
  FRUGAL_CUDA_TRY(cudaGetDevice(&device));
  int sms = 0;
  FRUGAL_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms > 0 ? sms : 1;
}

bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

void check_tuning(const kernel_tuning& t, const std::string& who) {
  FRUGAL_EXPECTS(
      t.threads_per_block >= 32 && t.threads_per_block <= 1024 && t.threads_per_block % 32 == 0,
      who + ": threads_per_block must be a multiple of 32 in [32, 1024]", invalid_argument);
  FRUGAL_EXPECTS(is_pow2(t.items_per_thread) && t.items_per_thread <= 64,
                 who + ": items_per_thread must be a power of two in [1, 64]", invalid_argument);
  FRUGAL_EXPECTS(t.vec_bytes == 16 || t.vec_bytes == 8 || t.vec_bytes == 4,
                 who + ": vec_bytes must be 16, 8 or 4", invalid_argument);
  FRUGAL_EXPECTS(is_pow2(t.block_tile_elements) && t.block_tile_elements >= 128 &&
                     t.block_tile_elements <= 8192,
                 who + ": block_tile_elements must be a power of two in [128, 8192]",
                 invalid_argument);
  FRUGAL_EXPECTS(t.blocks_per_sm >= 1 && t.blocks_per_sm <= 64,
                 who + ": blocks_per_sm must be in [1, 64]", invalid_argument);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

/// "quant::<function>(<format>)", after checking that `f` is a value of the enumeration (its
/// name and layout are looked up in a table).
std::string caller(const char* function, format f) {
  FRUGAL_EXPECTS(static_cast<std::size_t>(f) < format_count,
                 std::string("quant::") + function + ": format value " +
                     std::to_string(static_cast<unsigned>(f)) + " is not a format",
                 invalid_argument);
  return std::string("quant::") + function + "(" + std::string(to_string(f)) + ")";
}

/// The checks every launcher makes before it queues anything: the tuning, non-null pointers and
/// 16-byte alignment of both buffers.
void check_launch(const std::string& who, const kernel_tuning& tuning, const void* input,
                  const void* output) {
  check_tuning(tuning, who);
  FRUGAL_EXPECTS(input != nullptr && output != nullptr, who + ": null pointer", invalid_argument);
  FRUGAL_EXPECTS(aligned16(input) && aligned16(output),
                 who +
                     ": input and output must be 16-byte aligned (cudaMalloc and "
                     "quantized_tensor give 256)",
                 invalid_argument);
}

/// Which translation unit holds a format's kernels (quant_launch.cuh).
enum class kernel_family { scaled, int8_groups, int4_groups, other_blocks };

kernel_family family_of(format f, const std::string& who) {
  switch (f) {
    case format::int8:
    case format::int8_asym:
    case format::int8_channel:
    case format::int8_channel_asym:
    case format::fp8_e4m3:
    case format::fp8_e5m2:
    case format::fp8_e4m3_channel:
    case format::fp8_e5m2_channel:
      return kernel_family::scaled;
    case format::int8_g32:
    case format::int8_g32_asym:
    case format::int8_g64:
    case format::int8_g64_asym:
    case format::int8_g128:
    case format::int8_g128_asym:
      return kernel_family::int8_groups;
    case format::int4_g32:
    case format::int4_g32_asym:
    case format::int4_g64:
    case format::int4_g64_asym:
    case format::int4_g128:
    case format::int4_g128_asym:
      return kernel_family::int4_groups;
    case format::mxfp8:
    case format::mxfp4:
    case format::nvfp4:
    case format::nf4:
    case format::q8_0:
    case format::q4_0:
      return kernel_family::other_blocks;
  }
  FRUGAL_FAIL(who + ": no kernel for this format value", invalid_argument);
}

/// Zeroes the padding between regions, as the CPU reference does, so every byte is defined.
void zero_padding(const layout& l, std::uint8_t* base, cudaStream_t stream) {
  struct region {
    std::size_t offset, bytes;
  };
  const region parts[] = {{l.values_offset, l.values_bytes},
                          {l.scales_offset, l.scales_bytes},
                          {l.zero_points_offset, l.zero_points_bytes},
                          {l.tensor_scale_offset, l.tensor_scale_bytes}};
  std::size_t end = 0;
  for (const region& r : parts) {
    if (r.bytes == 0) continue;
    if (r.offset > end) FRUGAL_CUDA_TRY(cudaMemsetAsync(base + end, 0, r.offset - end, stream));
    end = r.offset + r.bytes;
  }
  if (l.total_bytes > end)
    FRUGAL_CUDA_TRY(cudaMemsetAsync(base + end, 0, l.total_bytes - end, stream));
}

template <class T>
constexpr dd::input_type input_type_of = dd::input_type::float32;
template <>
constexpr dd::input_type input_type_of<float16> = dd::input_type::float16;
template <>
constexpr dd::input_type input_type_of<bfloat16> = dd::input_type::bfloat16;

template <class T>
void quantize_any(format f, const T* input, std::size_t rows, std::size_t cols, std::byte* output,
                  cudaStream_t stream, const options& opts, const kernel_tuning& tuning) {
  const std::string who = caller("quantize_device", f);
  check_launch(who, tuning, input, output);
  dd::quantize_job job;
  job.f = f;
  job.type = input_type_of<T>;
  job.input = input;
  job.rows = rows;
  job.cols = cols;
  job.output = reinterpret_cast<std::uint8_t*>(output);
  job.l = layout_of(f, rows, cols);  // throws invalid_argument for a bad shape
  job.tuning = tuning;
  job.sms = sm_count();
  job.stream = stream;
  job.mx_round_up = opts.mx_round_up_scale;
  zero_padding(job.l, job.output, stream);
  switch (family_of(f, who)) {
    case kernel_family::scaled:
      return dd::quantize_scaled_family(job);
    case kernel_family::int8_groups:
      return dd::quantize_int8_groups(job);
    case kernel_family::int4_groups:
      return dd::quantize_int4_groups(job);
    case kernel_family::other_blocks:
      return dd::quantize_other_blocks(job);
  }
}

void dequantize_any(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                    float* output, cudaStream_t stream, const kernel_tuning& tuning) {
  const std::string who = caller("dequantize_device", f);
  check_launch(who, tuning, input, output);
  dd::dequantize_job job;
  job.f = f;
  job.input = reinterpret_cast<const std::uint8_t*>(input);
  job.rows = rows;
  job.cols = cols;
  job.output = output;
  job.l = layout_of(f, rows, cols);
  job.tuning = tuning;
  job.sms = sm_count();
  job.stream = stream;
  switch (family_of(f, who)) {
    case kernel_family::scaled:
      return dd::dequantize_scaled_family(job);
    case kernel_family::int8_groups:
      return dd::dequantize_int8_groups(job);
    case kernel_family::int4_groups:
      return dd::dequantize_int4_groups(job);
    case kernel_family::other_blocks:
      return dd::dequantize_other_blocks(job);
  }
}

}  // namespace

kernel_tuning tuning_for(int major, int /*minor*/) noexcept {
  kernel_tuning t;
  if (major >= 9) {  // Hopper and later: 228 KiB of shared memory per SM, deep memory queues
    t.threads_per_block = 256;
    t.items_per_thread = 16;
    t.block_tile_elements = 8192;
    t.blocks_per_sm = 8;
  } else if (major == 8) {  // Ampere and Ada
    t.threads_per_block = 256;
    t.items_per_thread = 8;
    t.block_tile_elements = 4096;
    t.blocks_per_sm = 8;
  } else {
    t.threads_per_block = 256;
    t.items_per_thread = 4;
    t.block_tile_elements = 2048;
    t.blocks_per_sm = 4;
  }
  t.vec_bytes = 16;
  return t;
}

kernel_tuning tuning_for_current_device() {
  int device = 0;
  FRUGAL_CUDA_TRY(cudaGetDevice(&device));
  int major = 0, minor = 0;
  FRUGAL_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FRUGAL_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return tuning_for(major, minor);
}

unsigned quantize_input_reads(format f) noexcept {
  return info(f).shared_by == granularity::tensor || f == format::nvfp4 ? 2u : 1u;
}

void quantize_device(format f, const float* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning);
}
void quantize_device(format f, const float16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning);
}
void quantize_device(format f, const bfloat16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts,
                     const kernel_tuning& tuning) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning);
}
void quantize_device(format f, const float* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning_for_current_device());
}
void quantize_device(format f, const float16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning_for_current_device());
}
void quantize_device(format f, const bfloat16* input, std::size_t rows, std::size_t cols,
                     std::byte* output, cudaStream_t stream, const options& opts) {
  quantize_any(f, input, rows, cols, output, stream, opts, tuning_for_current_device());
}

void dequantize_device(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                       float* output, cudaStream_t stream, const kernel_tuning& tuning) {
  dequantize_any(f, input, rows, cols, output, stream, tuning);
}
void dequantize_device(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                       float* output, cudaStream_t stream) {
  dequantize_any(f, input, rows, cols, output, stream, tuning_for_current_device());
}

}  // namespace frugal::quant
