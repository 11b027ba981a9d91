// The launchers of the quantization kernels, shared by the translation units that instantiate
// them (one per format family, so that a parallel build compiles them side by side):
//   quant.cu: the public functions of frugal/quant/kernels.hpp, argument checks, the tuning
//     policy, and the dispatch from a format to its family;
//   quant_scaled.cu (per-tensor and per-channel int8 and fp8), quant_int8.cu (int8_gN),
//   quant_int4.cu (int4_gN), quant_blocks.cu (MX, NVFP4, NF4, GGUF).
//     device_detail::quantize_family(job) / dequantize_family(job), declared below.
// All of them are compiled with -fmad=false (CMakeLists.txt).
#pragma once

#include "quant_kernels.cuh"
#include "stream_memory.cuh"

#include <frugal/quant/format.hpp>

#include <algorithm>
#include <cstdint>
#include <string>

namespace frugal::quant::device_detail {

/// The element type behind a quantize job's `input` pointer.
enum class input_type { float32, float16, bfloat16 };

/// One checked quantize call: the arguments of quantize_device, its layout and launch shape.
struct quantize_job {
  format f{};
  input_type type = input_type::float32;
  const void* input = nullptr;  // 16-byte aligned, rows * cols elements
  std::size_t rows = 0, cols = 0;
  std::uint8_t* output = nullptr;  // 16-byte aligned, l.total_bytes
  layout l{};
  kernel_tuning tuning{};
  int sms = 1;
  cudaStream_t stream = nullptr;
  bool mx_round_up = false;
};

/// One checked dequantize call.
struct dequantize_job {
  format f{};
  const std::uint8_t* input = nullptr;
  std::size_t rows = 0, cols = 0;
  float* output = nullptr;
  layout l{};
  kernel_tuning tuning{};
  int sms = 1;
  cudaStream_t stream = nullptr;
};

/// The families. Each queues the kernels of its formats and throws invalid_argument for a
/// format outside the family (quant.cu never passes one).
void quantize_scaled_family(const quantize_job& job);  // quant_scaled.cu
void dequantize_scaled_family(const dequantize_job& job);
void quantize_int8_groups(const quantize_job& job);  // quant_int8.cu
void dequantize_int8_groups(const dequantize_job& job);
void quantize_int4_groups(const quantize_job& job);  // quant_int4.cu
void dequantize_int4_groups(const dequantize_job& job);
void quantize_other_blocks(const quantize_job& job);  // quant_blocks.cu
void dequantize_other_blocks(const dequantize_job& job);

/// Throws invalid_argument: `f` does not belong to the family `family` (a dispatch bug, or a
/// format value outside the enumeration).
[[noreturn]] inline void not_in_family(format f, const char* family) {
  FRUGAL_FAIL(std::string("quant: format value ") + std::to_string(static_cast<unsigned>(f)) +
                  " is not one of the " + family + " formats",
              invalid_argument);
}

}  // namespace frugal::quant::device_detail

namespace frugal::quant {
namespace {

/// Stream-ordered scratch for a reduction (two zeroed words), freed on the same stream when it
/// goes out of scope: after the kernels that use it are queued, or when anything after the
/// allocation throws (the zeroing included, since the allocation is a finished member by then).
/// @throws out_of_memory when the stream's pool has no room for it, cuda_error otherwise
struct stream_scratch {
  cuda_detail::stream_allocation memory;
  unsigned* p;
  explicit stream_scratch(cudaStream_t stream)
      : memory(2 * sizeof(unsigned), stream, "quant::quantize_device (reduction scratch)"),
        p(static_cast<unsigned*>(memory.get())) {
    FRUGAL_CUDA_TRY(cudaMemsetAsync(p, 0, 2 * sizeof(unsigned), stream));
  }
};

/// What one launch needs to know about the device and the shape.
struct launch_plan {
  kernel_tuning tuning;
  int sms = 1;
  cudaStream_t stream = nullptr;

  /// Blocks for `work` items at `per_block` items a block, capped at blocks_per_sm per SM
  /// (grid-stride loops do the rest).
  unsigned grid(std::size_t work, std::size_t per_block) const {
    const std::size_t wanted = (work + per_block - 1) / per_block;
    const std::size_t cap = static_cast<std::size_t>(sms) * tuning.blocks_per_sm;
    return static_cast<unsigned>(std::clamp<std::size_t>(wanted, 1, cap));
  }
  /// Blocks for `chunks` chunks of E elements: threads_per_block * items_per_thread elements a
  /// block.
  unsigned element_grid(std::size_t chunks, int elements_per_chunk) const {
    const std::size_t per_block =
        static_cast<std::size_t>(tuning.threads_per_block) *
        std::max<std::size_t>(1, static_cast<std::size_t>(tuning.items_per_thread) /
                                     static_cast<std::size_t>(elements_per_chunk));
    return grid(chunks, per_block);
  }
  unsigned threads() const { return static_cast<unsigned>(tuning.threads_per_block); }
  /// Groups per tile (= threads per block) of a block-format kernel.
  unsigned tile_groups(int group) const {
    return static_cast<unsigned>(std::clamp(tuning.block_tile_elements / group, 32, 256));
  }
};

template <class Job>
launch_plan plan_of(const Job& job) {
  return launch_plan{job.tuning, job.sms, job.stream};
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

/// The widest access of at most `vec_bytes` bytes (16, 8 or 4) that every row start is aligned
/// to when a row is `row_bytes` long, counted in elements of `element_bytes`; 1 (one element
/// per access) when not even a 4-byte access fits.
inline int chunk_elements(int vec_bytes, std::size_t row_bytes, int element_bytes) {
  for (int width = vec_bytes; width >= 4 && width >= element_bytes; width /= 2)
    if (row_bytes % static_cast<std::size_t>(width) == 0) return width / element_bytes;
  return 1;
}

// ---- quantize
// ------------------------------------------------------------------------------------

template <class T, int E, class Encoder>
void quantize_tensor(const raw_t<T>* in, std::size_t n, const regions& out,
                     const launch_plan& plan) {
  stream_scratch scratch(plan.stream);
  const std::size_t chunks = n / E;
  const unsigned grid = plan.element_grid(chunks, E);
  reduce_tensor_kernel<T, E, Encoder::asymmetric>
      <<<grid, plan.threads(), 0, plan.stream>>>(in, chunks, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
  encode_tensor_kernel<T, E, Encoder><<<grid, plan.threads(), 0, plan.stream>>>(
      in, chunks, out.values, out.scales, out.zero_points, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class T, int E, class Encoder>
void quantize_rows(const raw_t<T>* in, std::size_t rows, std::size_t cols, const regions& out,
                   const launch_plan& plan) {
  encode_rows_kernel<T, E, Encoder><<<plan.grid(rows, 1), plan.threads(), 0, plan.stream>>>(
      in, rows, cols, out.values, out.scales, out.zero_points);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class T, int E, class Encoder>
void quantize_scaled_chunks(bool per_row, const raw_t<T>* in, std::size_t rows, std::size_t cols,
                            const regions& out, const launch_plan& plan) {
  if (per_row)
    quantize_rows<T, E, Encoder>(in, rows, cols, out, plan);
  else
    quantize_tensor<T, E, Encoder>(in, rows * cols, out, plan);
}

/// Per-tensor or per-channel format with encoder `Encoder`. Each thread reads chunks of
/// vec_bytes of input in one access (4 floats or 8 halves at 16), or narrower ones (8, then 4
/// bytes) when a row's byte length is not a multiple of vec_bytes, or one element at a time
/// when it is not even a multiple of 4.
template <class T, class Encoder>
void quantize_scaled(bool per_row, const raw_t<T>* in, std::size_t rows, std::size_t cols,
                     const regions& out, const launch_plan& plan) {
  constexpr int size = static_cast<int>(sizeof(raw_t<T>));
  const int e = chunk_elements(plan.tuning.vec_bytes, cols * size, size);
  if (e == 16 / size)
    return quantize_scaled_chunks<T, 16 / size, Encoder>(per_row, in, rows, cols, out, plan);
  if (e == 8 / size)
    return quantize_scaled_chunks<T, 8 / size, Encoder>(per_row, in, rows, cols, out, plan);
  if constexpr (size == 2)  // a 4-byte access of two halves
    if (e == 2) return quantize_scaled_chunks<T, 2, Encoder>(per_row, in, rows, cols, out, plan);
  quantize_scaled_chunks<T, 1, Encoder>(per_row, in, rows, cols, out, plan);
}

template <class T, class P>
void quantize_groups(const raw_t<T>* in, std::size_t elements, const regions& out,
                     group_context ctx, const unsigned* reduced, const launch_plan& plan) {
  const std::size_t groups = elements / P::group;
  const unsigned threads = plan.tile_groups(P::group);
  const std::size_t shared =
      threads * static_cast<std::size_t>(tile_stride<P::group* static_cast<int>(sizeof(raw_t<T>))>);
  const unsigned grid = plan.grid(groups, threads);
  quantize_groups_kernel<T, P><<<grid, threads, shared, plan.stream>>>(
      in, groups, out.values, out.scales, out.zero_points, ctx, reduced,
      reduced != nullptr ? out.tensor_scale : nullptr);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

template <class T>
void quantize_nvfp4(const raw_t<T>* in, std::size_t elements, const regions& out,
                    const launch_plan& plan) {
  constexpr int vec = 16 / static_cast<int>(sizeof(raw_t<T>));  // elements % 16 == 0
  stream_scratch scratch(plan.stream);
  reduce_tensor_kernel<T, vec, false>
      <<<plan.element_grid(elements / vec, vec), plan.threads(), 0, plan.stream>>>(
          in, elements / vec, scratch.p);
  FRUGAL_CUDA_TRY(cudaGetLastError());
  quantize_groups<T, nvfp4_group>(in, elements, out, group_context{}, scratch.p, plan);
}

// ---- dequantize
// ----------------------------------------------------------------------------------

template <int E, class Decoder>
void dequantize_scaled_chunks(bool per_row, const regions& in, std::size_t rows, std::size_t cols,
                              float* output, const launch_plan& plan) {
  const std::size_t chunks = rows * cols / E;
  decode_rows_kernel<E, Decoder><<<plan.element_grid(chunks, E), plan.threads(), 0, plan.stream>>>(
      in.values, chunks, cols, per_row, in.scales, in.zero_points, output);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

/// Per-tensor or per-channel decode: each thread reads vec_bytes codes in one access (16 codes
/// at 16, written as four float4) when cols is a multiple of it, else 8 or 4 codes, else one.
template <class Decoder>
void dequantize_scaled(bool per_row, const regions& in, std::size_t rows, std::size_t cols,
                       float* output, const launch_plan& plan) {
  switch (chunk_elements(plan.tuning.vec_bytes, cols, 1)) {
    case 16:
      return dequantize_scaled_chunks<16, Decoder>(per_row, in, rows, cols, output, plan);
    case 8:
      return dequantize_scaled_chunks<8, Decoder>(per_row, in, rows, cols, output, plan);
    case 4:
      return dequantize_scaled_chunks<4, Decoder>(per_row, in, rows, cols, output, plan);
    default:
      return dequantize_scaled_chunks<1, Decoder>(per_row, in, rows, cols, output, plan);
  }
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

/// Calls `f.template operator()<T>()` with T the job's input type.
template <class F>
void with_input_type(device_detail::input_type type, F&& f) {
  switch (type) {
    case device_detail::input_type::float32:
      return f.template operator()<float>();
    case device_detail::input_type::float16:
      return f.template operator()<float16>();
    case device_detail::input_type::bfloat16:
      return f.template operator()<bfloat16>();
  }
  FRUGAL_FAIL("quant: input type out of range", invalid_argument);
}

}  // namespace
}  // namespace frugal::quant

namespace frugal::quant::device_detail {

/// Calls `f.template operator()<int_group<Bits, asymmetric, G>>()` for the Bits-bit integer
/// group format `fmt`; false when `fmt` is not one. The group size and the asymmetry come from
/// the format table (format.hpp), so the dispatch does not depend on the order of the enumeration.
template <int Bits, class F>
bool with_int_group(format fmt, F&& f) {
  if (static_cast<std::size_t>(fmt) >= format_count) return false;
  const format_info& facts = info(fmt);
  constexpr quant::element code = Bits == 8 ? quant::element::int8 : quant::element::int4;
  // q8_0 and q4_0 store int8 / int4 blocks too, with their FP16 scale inline: not this family.
  if (facts.code != code || facts.shared_by != granularity::block || facts.scale != scale_kind::f32)
    return false;
  const auto with_asymmetry = [&]<int G>() {
    if (facts.asymmetric)
      f.template operator()<int_group<Bits, true, G>>();
    else
      f.template operator()<int_group<Bits, false, G>>();
  };
  switch (facts.block) {
    case 32:
      with_asymmetry.template operator()<32>();
      return true;
    case 64:
      with_asymmetry.template operator()<64>();
      return true;
    case 128:
      with_asymmetry.template operator()<128>();
      return true;
    default:
      return false;
  }
}

/// The int8 (quant_int8.cu) and int4 (quant_int4.cu) block families: one thread per group
/// through a shared-memory tile.
template <int Bits>
void quantize_int_groups(const quantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions out(job.l, job.output);
  const std::size_t n = job.rows * job.cols;
  const group_context ctx;
  bool known = true;
  with_input_type(job.type, [&]<class T>() {
    const auto* in = static_cast<const raw_t<T>*>(job.input);
    known = with_int_group<Bits>(
        job.f, [&]<class P>() { quantize_groups<T, P>(in, n, out, ctx, nullptr, plan); });
  });
  if (!known) not_in_family(job.f, Bits == 8 ? "int8 block" : "int4 block");
}

template <int Bits>
void dequantize_int_groups(const dequantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions in(job.l, const_cast<std::uint8_t*>(job.input));
  const std::size_t n = job.rows * job.cols;
  const bool known = with_int_group<Bits>(
      job.f, [&]<class P>() { dequantize_groups<P>(in, n, job.output, plan); });
  if (!known) not_in_family(job.f, Bits == 8 ? "int8 block" : "int4 block");
}

}  // namespace frugal::quant::device_detail
