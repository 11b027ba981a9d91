// write_kv_device and paged_decode_device: the KV write and decode attention of
// frugal/kv/attention_kernels.hpp. Element codecs, scale lookup, split plan and the merge are the
// host+device functions of frugal/kv/detail/attention_math.hpp that the CPU version uses too.
#include "pool_device_base.cuh"
#include "stream_memory.cuh"

#include <frugal/error.hpp>
#include <frugal/kv/attention_kernels.hpp>
#include <frugal/kv/detail/attention_math.hpp>

#include <cuda_runtime_api.h>

#include <cmath>
#include <string>

namespace frugal::kv {
namespace {

constexpr int warp = 32;
constexpr std::size_t max_head_dim = 256;  // 8 dimensions per lane
constexpr std::size_t max_group = 32;      // query heads per KV head: warps per block
constexpr std::size_t max_scales = 256;    // 2 x 128 KV heads with per-head scales

/// One layer's 8-bit scales, passed by value to the kernels.
struct scale_args {
  float values[max_scales];
};

/// Where a pool's pages are, for a kernel: page_addressing with the device's base pointer.
page_addressing device_addressing(const page_pool& pool, const char* who) {
  page_addressing a = pool.addressing();
  a.base = cuda_detail::pool_device_base(pool, who, "the pool's");
  return a;
}

scale_args pack_scales(const layout& l, std::span<const float> scales, const char* who) {
  detail::check_scales(l, scales, who);
  FRUGAL_EXPECTS(scales.size() <= max_scales,
                 std::string(who) + ": per-head scales take at most 128 KV heads",
                 invalid_argument);
  scale_args s{};
  for (std::size_t i = 0; i < scales.size(); ++i) s.values[i] = scales[i];
  return s;
}

/// Grid: one block per token (grid-stride); threads walk the token's 2 x heads x dim elements.
__global__ void write_kv_kernel(layout l, page_addressing a, std::uint32_t layer, const float* k,
                                const float* v, const std::int64_t* slots, std::size_t num_tokens,
                                std::int64_t capacity, scale_args scales) {
  const std::size_t elements = 2 * std::size_t{l.num_kv_heads} * l.head_dim;
  for (std::size_t t = blockIdx.x; t < num_tokens; t += gridDim.x) {
    const std::int64_t slot = slots[t];
    for (std::size_t e = threadIdx.x; e < elements; e += blockDim.x)
      detail::write_kv_element(l, a, layer, k, v, slot, capacity, t, e, scales.values);
  }
}

/// Grid: (sequence, KV head, split); block: one warp per query head of the group. Lane j holds
/// dimensions j, j + 32, ... of its head's accumulator; a key's score is a warp reduction. Writes
/// the split's softmax state and unnormalised accumulator for the merge.
__global__ void decode_split_kernel(layout l, page_addressing a, std::uint32_t layer,
                                    const float* q, device_page_table table,
                                    std::uint32_t num_qo_heads, float sm_scale,
                                    std::int32_t window_left, std::uint32_t pages_per_split,
                                    std::size_t splits, scale_args scales, float* part_max,
                                    float* part_sum, float* part_acc) {
  const std::size_t seq = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
  const std::size_t group = num_qo_heads / l.num_kv_heads;
  const std::size_t g = threadIdx.x / warp, lane = threadIdx.x % warp;
  const std::size_t qh = h * group + g, dim = l.head_dim;
  const std::int32_t page_begin = table.indptr[seq];
  const auto num_pages = static_cast<std::size_t>(table.indptr[seq + 1] - page_begin);
  const detail::split_keys keys =
      detail::keys_of_split(num_pages, static_cast<std::size_t>(table.last_page_len[seq]),
                            l.page_size, split, pages_per_split, window_left);
  const std::size_t kv_len = keys.kv_len, first = keys.first;

  float qv[max_head_dim / warp], acc[max_head_dim / warp];
  const float* qrow = q + (seq * num_qo_heads + qh) * dim;
  for (std::size_t j = 0; j < max_head_dim / warp; ++j) {
    const std::size_t d = lane + j * warp;
    qv[j] = d < dim ? qrow[d] : 0.0f;
    acc[j] = 0.0f;
  }
  const float k_scale = detail::scale_of(l, scales.values, 0, h);
  const float v_scale = detail::scale_of(l, scales.values, 1, h);
  detail::softmax_state state;
  for (std::size_t p = keys.page_begin; p < keys.page_end; ++p) {
    const auto page =
        static_cast<page_id>(table.indices[page_begin + static_cast<std::int32_t>(p)]);
    for (std::size_t t = 0; t < l.page_size; ++t) {
      const std::size_t position = p * l.page_size + t;
      if (position >= kv_len) break;
      if (position < first) continue;
      const std::byte* key = a.base + a.offset(layer, page, 0, t, h);
      const std::byte* value = a.base + a.offset(layer, page, 1, t, h);
      float partial = 0.0f;
      for (std::size_t j = 0; j < max_head_dim / warp; ++j) {
        const std::size_t d = lane + j * warp;
        if (d < dim)
          partial += qv[j] * (detail::load_code(l.dtype, key + d * a.element_size) * k_scale);
      }
      for (int offset = warp / 2; offset > 0; offset /= 2)
        partial += __shfl_xor_sync(0xFFFFFFFFu, partial, offset);
      const float score = partial * sm_scale;
      const float max = score > state.max ? score : state.max;
      const float correction = state.sum == 0.0f ? 0.0f : expf(state.max - max);
      const float weight = expf(score - max);
      state.sum = state.sum * correction + weight;
      state.max = max;
      for (std::size_t j = 0; j < max_head_dim / warp; ++j) {
        const std::size_t d = lane + j * warp;
        if (d < dim)
          acc[j] = acc[j] * correction +
                   weight * (detail::load_code(l.dtype, value + d * a.element_size) * v_scale);
      }
    }
  }
  const std::size_t at = (seq * num_qo_heads + qh) * splits + split;
  if (lane == 0) {
    part_max[at] = state.max;
    part_sum[at] = state.sum;
  }
  for (std::size_t j = 0; j < max_head_dim / warp; ++j) {
    const std::size_t d = lane + j * warp;
    if (d < dim) part_acc[at * dim + d] = acc[j];
  }
}

/// Grid: (sequence, query head); threads: one per dimension.
__global__ void decode_merge_kernel(std::size_t dim, std::size_t splits, std::uint32_t num_qo_heads,
                                    const float* part_max, const float* part_sum,
                                    const float* part_acc, float* out) {
  const std::size_t row = blockIdx.x * num_qo_heads + blockIdx.y;
  for (std::size_t d = threadIdx.x; d < dim; d += blockDim.x)
    out[row * dim + d] = detail::merge_partials(part_max + row * splits, part_sum + row * splits,
                                                part_acc + row * splits * dim, splits, dim, d);
}

}  // namespace

void write_kv_device(page_pool& pages, std::uint32_t layer, const float* k, const float* v,
                     const std::int64_t* slot_mapping, std::size_t num_tokens,
                     std::span<const float> scales, cudaStream_t stream) {
  const char* who = "kv::write_kv_device";
  const layout& l = pages.layout();
  detail::check_layer(l, layer, who);
  const scale_args packed = pack_scales(l, scales, who);
  const page_addressing a = device_addressing(pages, who);
  if (num_tokens == 0) return;
  FRUGAL_EXPECTS(k != nullptr && v != nullptr && slot_mapping != nullptr,
                 std::string(who) + ": k, v and slot_mapping must not be null", invalid_argument);
  const auto blocks = static_cast<unsigned>(num_tokens < 65535 ? num_tokens : 65535);
  const std::int64_t capacity = std::int64_t{pages.num_pages()} * l.page_size;
  write_kv_kernel<<<blocks, 128, 0, stream>>>(l, a, layer, k, v, slot_mapping, num_tokens, capacity,
                                              packed);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

void paged_decode_device(const page_pool& pages, std::uint32_t layer, const float* q,
                         const device_page_table& table, std::size_t batch, std::size_t max_pages,
                         float* out, const attention_options& options,
                         std::span<const float> scales, cudaStream_t stream,
                         const decode_tuning& tuning) {
  const char* who = "kv::paged_decode_device";
  const layout& l = pages.layout();
  detail::check_layer(l, layer, who);
  FRUGAL_EXPECTS(options.num_qo_heads > 0 && options.num_qo_heads % l.num_kv_heads == 0,
                 std::string(who) + ": num_qo_heads (" + std::to_string(options.num_qo_heads) +
                     ") must be a positive multiple of num_kv_heads (" +
                     std::to_string(l.num_kv_heads) + ")",
                 invalid_argument);
  FRUGAL_EXPECTS(options.num_qo_heads / l.num_kv_heads <= max_group,
                 std::string(who) + ": at most 32 query heads per KV head", invalid_argument);
  FRUGAL_EXPECTS(l.head_dim <= max_head_dim, std::string(who) + ": head_dim above 256",
                 invalid_argument);
  FRUGAL_EXPECTS(options.causal, std::string(who) + ": decode attention is causal",
                 invalid_argument);
  FRUGAL_EXPECTS(tuning.pages_per_split > 0, std::string(who) + ": pages_per_split is zero",
                 invalid_argument);
  const scale_args packed = pack_scales(l, scales, who);
  const page_addressing a = device_addressing(pages, who);
  if (batch == 0) return;
  FRUGAL_EXPECTS(q != nullptr && out != nullptr && table.indptr != nullptr &&
                     table.indices != nullptr && table.last_page_len != nullptr,
                 std::string(who) + ": q, out and the table must not be null", invalid_argument);
  FRUGAL_EXPECTS(batch <= 65535 && l.num_kv_heads <= 65535,
                 std::string(who) + ": batch and num_kv_heads must fit a grid dimension",
                 invalid_argument);

  const std::size_t splits = detail::num_splits(max_pages, tuning.pages_per_split);
  FRUGAL_EXPECTS(splits <= 65535, std::string(who) + ": too many splits: raise pages_per_split",
                 invalid_argument);
  const std::size_t rows = batch * options.num_qo_heads;
  const std::size_t floats = rows * splits * (2 + l.head_dim);
  const cuda_detail::stream_allocation scratch(floats * sizeof(float), stream, who);
  float* part_max = static_cast<float*>(scratch.get());
  float* part_sum = part_max + rows * splits;
  float* part_acc = part_sum + rows * splits;
  const float sm_scale = options.sm_scale != 0.0f
                             ? options.sm_scale
                             : 1.0f / std::sqrt(static_cast<float>(l.head_dim));
  const dim3 grid(static_cast<unsigned>(batch), l.num_kv_heads, static_cast<unsigned>(splits));
  const auto threads = static_cast<unsigned>(options.num_qo_heads / l.num_kv_heads * warp);
  decode_split_kernel<<<grid, threads, 0, stream>>>(
      l, a, layer, q, table, options.num_qo_heads, sm_scale, options.window_left,
      tuning.pages_per_split, splits, packed, part_max, part_sum, part_acc);
  FRUGAL_CUDA_TRY(cudaGetLastError());
  const dim3 merge_grid(static_cast<unsigned>(batch), options.num_qo_heads);
  decode_merge_kernel<<<merge_grid, static_cast<unsigned>(l.head_dim < 256 ? l.head_dim : 256), 0,
                        stream>>>(l.head_dim, splits, options.num_qo_heads, part_max, part_sum,
                                  part_acc, out);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

}  // namespace frugal::kv
