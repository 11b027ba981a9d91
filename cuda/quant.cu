// Host launchers of the quantization kernels (frugal/quant/kernels.hpp): argument checks, the
// tuning policy per compute capability, and the dispatch from a format to its kernel. The
// kernels themselves are in quant_kernels.cuh. Built with -fmad=false (CMakeLists.txt).
#include "quant_kernels.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

namespace frugal::quant {
namespace {

/// Stream-ordered scratch for a reduction, freed on the same stream when it goes out of scope
/// (after the kernels that use it are queued, or when a launch throws).
struct stream_scratch {
  unsigned* p = nullptr;
  cudaStream_t stream = nullptr;
  stream_scratch(cudaStream_t s) : stream(s) {
    FRUGAL_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&p), 2 * sizeof(unsigned), stream));
    FRUGAL_CUDA_TRY(cudaMemsetAsync(p, 0, 2 * sizeof(unsigned), stream));
  }
  ~stream_scratch() {
    if (p != nullptr) (void)cudaFreeAsync(p, stream);
  }
  stream_scratch(const stream_scratch&) = delete;
  stream_scratch& operator=(const stream_scratch&) = delete;
};

/// What one launch needs to know about the device and the shape.
struct launch_plan {
  kernel_tuning tuning;
  int sms = 1;
  cudaStream_t stream = nullptr;

  /// Blocks for `work` items at threads_per_block * items_per_thread a block, capped at
  /// blocks_per_sm per SM (grid-stride loops do the rest).
  unsigned grid(std::size_t work, std::size_t per_block) const {
    const std::size_t wanted = (work + per_block - 1) / per_block;
    const std::size_t cap = static_cast<std::size_t>(sms) * tuning.blocks_per_sm;
    return static_cast<unsigned>(std::clamp<std::size_t>(wanted, 1, cap));
  }
  unsigned element_grid(std::size_t elements) const {
    return grid(elements, static_cast<std::size_t>(tuning.threads_per_block) *
                              static_cast<std::size_t>(tuning.items_per_thread));
  }
  /// Groups per tile (= threads per block) of a block-format kernel.
  unsigned tile_groups(int group) const {
    return static_cast<unsigned>(std::clamp(tuning.block_tile_elements / group, 32, 256));
  }
};

int sm_count() {
  int device = 0;
  FRUGAL_CUDA_TRY(cudaGetDevice(&device));
  int sms = 0;
  FRUGAL_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms > 0 ? sms : 1;
}

bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

void check_tuning(const kernel_tuning& t, const std::string& who) {
  FRUGAL_EXPECTS(t.threads_per_block >= 32 && t.threads_per_block <= 1024 &&
                     t.threads_per_block % 32 == 0,
                 who + ": threads_per_block must be a multiple of 32 in [32, 1024]",
                 invalid_argument);
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

/// Zeroes the padding between regions, as the CPU reference does, so every byte is defined.
void zero_padding(const layout& l, std::uint8_t* base, cudaStream_t stream) {
  struct region { std::size_t offset, bytes; };
  const region regions[] = {{l.values_offset, l.values_bytes},
                            {l.scales_offset, l.scales_bytes},
                            {l.zero_points_offset, l.zero_points_bytes},
                            {l.tensor_scale_offset, l.tensor_scale_bytes}};
  std::size_t end = 0;
  for (const region& r : regions) {
    if (r.bytes == 0) continue;
    if (r.offset > end) FRUGAL_CUDA_TRY(cudaMemsetAsync(base + end, 0, r.offset - end, stream));
    end = r.offset + r.bytes;
  }
  if (l.total_bytes > end)
    FRUGAL_CUDA_TRY(cudaMemsetAsync(base + end, 0, l.total_bytes - end, stream));
}

/// The regions of one quantized buffer.
struct regions {
  std::uint8_t* values;
  std::uint8_t* scales;
  std::uint8_t* zero_points;
  float* tensor_scale;
  regions(const layout& l, std::uint8_t* base)
      : values(base + l.values_offset),
        scales(l.scales_bytes != 0 ? base + l.scales_offset : nullptr),
        zero_points(l.zero_points_bytes != 0 ? base + l.zero_points_offset : nullptr),
        tensor_scale(l.tensor_scale_bytes != 0
                         ? reinterpret_cast<float*>(base + l.tensor_scale_offset)
                         : nullptr) {}
};

// ---- quantize ------------------------------------------------------------------------------------

template <class T, int E, class Encoder>
void quantize_tensor(const raw_t<T>* in, std::size_t n, const regions& out, const launch_plan& plan) {
  stream_scratch scratch(plan.stream);
  const unsigned grid = plan.element_grid(n);
  const unsigned threads = static_cast<unsigned>(plan.tuning.threads_per_block);
  reduce_tensor_kernel<T, E, Encoder::asymmetric>
      <<<grid, threads, 0, plan.stream>>>(in, n / E, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
  encode_tensor_kernel<T, E, Encoder><<<grid, threads, 0, plan.stream>>>(
      in, n / E, out.values, out.scales, out.zero_points, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class T, int E, class Encoder>
void quantize_rows(const raw_t<T>* in, std::size_t rows, std::size_t cols, const regions& out,
                   const launch_plan& plan) {
  const unsigned grid = plan.grid(rows, 1);
  encode_rows_kernel<T, E, Encoder>
      <<<grid, static_cast<unsigned>(plan.tuning.threads_per_block), 0, plan.stream>>>(
          in, rows, cols, out.values, out.scales, out.zero_points);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

/// Per-tensor or per-channel format with encoder `Encoder`: chunks of 16 bytes of input when
/// every row starts 16-byte aligned, else one element at a time.
template <class T, class Encoder>
void quantize_scaled(bool per_row, const raw_t<T>* in, std::size_t rows, std::size_t cols,
                     const regions& out, const launch_plan& plan) {
  constexpr int vec = 16 / static_cast<int>(sizeof(raw_t<T>));
  const bool wide = plan.tuning.vec_bytes == 16 && (cols * sizeof(raw_t<T>)) % 16 == 0;
  if (per_row)
    wide ? quantize_rows<T, vec, Encoder>(in, rows, cols, out, plan)
         : quantize_rows<T, 1, Encoder>(in, rows, cols, out, plan);
  else
    wide ? quantize_tensor<T, vec, Encoder>(in, rows * cols, out, plan)
         : quantize_tensor<T, 1, Encoder>(in, rows * cols, out, plan);
}

template <class T, class P>
void quantize_groups(const raw_t<T>* in, std::size_t elements, const regions& out,
                     group_context ctx, const unsigned* reduced, const launch_plan& plan) {
  const std::size_t groups = elements / P::group;
  const unsigned threads = plan.tile_groups(P::group);
  const std::size_t shared =
      threads * static_cast<std::size_t>(
                    tile_stride<P::group * static_cast<int>(sizeof(raw_t<T>))>);
  const unsigned grid = plan.grid(groups, threads);
  quantize_groups_kernel<T, P><<<grid, threads, shared, plan.stream>>>(
      in, groups, out.values, out.scales, out.zero_points, ctx, reduced,
      reduced != nullptr ? out.tensor_scale : nullptr);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class T>
void quantize_nvfp4(const raw_t<T>* in, std::size_t elements, const regions& out,
                    const launch_plan& plan) {
  constexpr int vec = 16 / static_cast<int>(sizeof(raw_t<T>));
  stream_scratch scratch(plan.stream);
  reduce_tensor_kernel<T, vec, false>
      <<<plan.element_grid(elements), static_cast<unsigned>(plan.tuning.threads_per_block), 0,
         plan.stream>>>(in, elements / vec, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
  quantize_groups<T, nvfp4_group>(in, elements, out, group_context{}, scratch.p, plan);
}

template <class T>
void quantize_any(format f, const T* input, std::size_t rows, std::size_t cols,
                  std::byte* output, cudaStream_t stream, const options& opts,
                  const kernel_tuning& tuning) {
  const std::string who = "quant::quantize_device(" + std::string(to_string(f)) + ")";
  check_tuning(tuning, who);
  FRUGAL_EXPECTS(input != nullptr && output != nullptr, who + ": null pointer", invalid_argument);
  FRUGAL_EXPECTS(aligned16(input) && aligned16(output),
                 who + ": input and output must be 16-byte aligned (cudaMalloc and "
                       "quantized_tensor give 256)",
                 invalid_argument);
  const layout l = layout_of(f, rows, cols);  // throws invalid_argument for a bad shape
  const launch_plan plan{tuning, sm_count(), stream};
  auto* base = reinterpret_cast<std::uint8_t*>(output);
  const regions out(l, base);
  const auto* in = reinterpret_cast<const raw_t<T>*>(input);
  const std::size_t n = rows * cols;
  group_context ctx;
  ctx.mx_round_up = opts.mx_round_up_scale;
  zero_padding(l, base, stream);
  switch (f) {
    case format::int8: return quantize_scaled<T, int8_encoder<false>>(false, in, rows, cols, out, plan);
    case format::int8_asym: return quantize_scaled<T, int8_encoder<true>>(false, in, rows, cols, out, plan);
    case format::int8_channel: return quantize_scaled<T, int8_encoder<false>>(true, in, rows, cols, out, plan);
    case format::int8_channel_asym: return quantize_scaled<T, int8_encoder<true>>(true, in, rows, cols, out, plan);
    case format::fp8_e4m3: return quantize_scaled<T, fp8_encoder<false>>(false, in, rows, cols, out, plan);
    case format::fp8_e5m2: return quantize_scaled<T, fp8_encoder<true>>(false, in, rows, cols, out, plan);
    case format::fp8_e4m3_channel: return quantize_scaled<T, fp8_encoder<false>>(true, in, rows, cols, out, plan);
    case format::fp8_e5m2_channel: return quantize_scaled<T, fp8_encoder<true>>(true, in, rows, cols, out, plan);
    case format::int8_g32: return quantize_groups<T, int_group<8, false, 32>>(in, n, out, ctx, nullptr, plan);
    case format::int8_g32_asym: return quantize_groups<T, int_group<8, true, 32>>(in, n, out, ctx, nullptr, plan);
    case format::int8_g64: return quantize_groups<T, int_group<8, false, 64>>(in, n, out, ctx, nullptr, plan);
    case format::int8_g64_asym: return quantize_groups<T, int_group<8, true, 64>>(in, n, out, ctx, nullptr, plan);
    case format::int8_g128: return quantize_groups<T, int_group<8, false, 128>>(in, n, out, ctx, nullptr, plan);
    case format::int8_g128_asym: return quantize_groups<T, int_group<8, true, 128>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g32: return quantize_groups<T, int_group<4, false, 32>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g32_asym: return quantize_groups<T, int_group<4, true, 32>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g64: return quantize_groups<T, int_group<4, false, 64>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g64_asym: return quantize_groups<T, int_group<4, true, 64>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g128: return quantize_groups<T, int_group<4, false, 128>>(in, n, out, ctx, nullptr, plan);
    case format::int4_g128_asym: return quantize_groups<T, int_group<4, true, 128>>(in, n, out, ctx, nullptr, plan);
    case format::mxfp8: return quantize_groups<T, mx_group<false>>(in, n, out, ctx, nullptr, plan);
    case format::mxfp4: return quantize_groups<T, mx_group<true>>(in, n, out, ctx, nullptr, plan);
    case format::nvfp4: return quantize_nvfp4<T>(in, n, out, plan);
    case format::nf4: return quantize_groups<T, nf4_group>(in, n, out, ctx, nullptr, plan);
    case format::q8_0: return quantize_groups<T, gguf_group<false>>(in, n, out, ctx, nullptr, plan);
    case format::q4_0: return quantize_groups<T, gguf_group<true>>(in, n, out, ctx, nullptr, plan);
  }
}

// ---- dequantize ----------------------------------------------------------------------------------

template <int E, class Decoder>
void dequantize_scaled(bool per_row, const regions& in, std::size_t rows, std::size_t cols,
                       float* output, const launch_plan& plan) {
  const std::size_t n = rows * cols;
  decode_rows_kernel<E, Decoder>
      <<<plan.element_grid(n), static_cast<unsigned>(plan.tuning.threads_per_block), 0,
         plan.stream>>>(in.values, n / E, cols, per_row, in.scales, in.zero_points, output);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class Decoder>
void dequantize_scaled(bool per_row, const regions& in, std::size_t rows, std::size_t cols,
                       float* output, const launch_plan& plan) {
  if (plan.tuning.vec_bytes == 16 && cols % 4 == 0)
    dequantize_scaled<4, Decoder>(per_row, in, rows, cols, output, plan);
  else
    dequantize_scaled<1, Decoder>(per_row, in, rows, cols, output, plan);
}

template <class P>
void dequantize_groups(const regions& in, std::size_t elements, float* output,
                       const launch_plan& plan) {
  const std::size_t groups = elements / P::group;
  const unsigned threads = plan.tile_groups(P::group);
  const std::size_t shared = threads * static_cast<std::size_t>(tile_stride<P::group * 4>);
  dequantize_groups_kernel<P><<<plan.grid(groups, threads), threads, shared, plan.stream>>>(
      in.values, in.scales, in.zero_points, groups, in.tensor_scale, output);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

void dequantize_any(format f, const std::byte* input, std::size_t rows, std::size_t cols,
                    float* output, cudaStream_t stream, const kernel_tuning& tuning) {
  const std::string who = "quant::dequantize_device(" + std::string(to_string(f)) + ")";
  check_tuning(tuning, who);
  FRUGAL_EXPECTS(input != nullptr && output != nullptr, who + ": null pointer", invalid_argument);
  FRUGAL_EXPECTS(aligned16(input) && aligned16(output),
                 who + ": input and output must be 16-byte aligned (cudaMalloc and "
                       "quantized_tensor give 256)",
                 invalid_argument);
  const layout l = layout_of(f, rows, cols);
  const launch_plan plan{tuning, sm_count(), stream};
  const regions in(l, const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(input)));
  const std::size_t n = rows * cols;
  switch (f) {
    case format::int8: return dequantize_scaled<int8_decoder<false>>(false, in, rows, cols, output, plan);
    case format::int8_asym: return dequantize_scaled<int8_decoder<true>>(false, in, rows, cols, output, plan);
    case format::int8_channel: return dequantize_scaled<int8_decoder<false>>(true, in, rows, cols, output, plan);
    case format::int8_channel_asym: return dequantize_scaled<int8_decoder<true>>(true, in, rows, cols, output, plan);
    case format::fp8_e4m3: return dequantize_scaled<fp8_decoder<false>>(false, in, rows, cols, output, plan);
    case format::fp8_e5m2: return dequantize_scaled<fp8_decoder<true>>(false, in, rows, cols, output, plan);
    case format::fp8_e4m3_channel: return dequantize_scaled<fp8_decoder<false>>(true, in, rows, cols, output, plan);
    case format::fp8_e5m2_channel: return dequantize_scaled<fp8_decoder<true>>(true, in, rows, cols, output, plan);
    case format::int8_g32: return dequantize_groups<int_group<8, false, 32>>(in, n, output, plan);
    case format::int8_g32_asym: return dequantize_groups<int_group<8, true, 32>>(in, n, output, plan);
    case format::int8_g64: return dequantize_groups<int_group<8, false, 64>>(in, n, output, plan);
    case format::int8_g64_asym: return dequantize_groups<int_group<8, true, 64>>(in, n, output, plan);
    case format::int8_g128: return dequantize_groups<int_group<8, false, 128>>(in, n, output, plan);
    case format::int8_g128_asym: return dequantize_groups<int_group<8, true, 128>>(in, n, output, plan);
    case format::int4_g32: return dequantize_groups<int_group<4, false, 32>>(in, n, output, plan);
    case format::int4_g32_asym: return dequantize_groups<int_group<4, true, 32>>(in, n, output, plan);
    case format::int4_g64: return dequantize_groups<int_group<4, false, 64>>(in, n, output, plan);
    case format::int4_g64_asym: return dequantize_groups<int_group<4, true, 64>>(in, n, output, plan);
    case format::int4_g128: return dequantize_groups<int_group<4, false, 128>>(in, n, output, plan);
    case format::int4_g128_asym: return dequantize_groups<int_group<4, true, 128>>(in, n, output, plan);
    case format::mxfp8: return dequantize_groups<mx_group<false>>(in, n, output, plan);
    case format::mxfp4: return dequantize_groups<mx_group<true>>(in, n, output, plan);
    case format::nvfp4: return dequantize_groups<nvfp4_group>(in, n, output, plan);
    case format::nf4: return dequantize_groups<nf4_group>(in, n, output, plan);
    case format::q8_0: return dequantize_groups<gguf_group<false>>(in, n, output, plan);
    case format::q4_0: return dequantize_groups<gguf_group<true>>(in, n, output, plan);
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
