// frugal/kv/attention_kernels.hpp: the CUDA versions of write_kv and paged attention for decode
// (cuda/attention.cu, in frugal::cuda), over a page_pool in device-accessible memory.
// snippet: cuda
//   frugal::kv::write_kv_device(cache.pages(), layer, d_k, d_v, d_slots, num_tokens, {}, stream);
//   frugal::kv::paged_decode_device(cache.pages(), layer, d_q, table, batch_size, max_pages,
//                                   d_out, {.num_qo_heads = 32}, {}, stream);
#pragma once

#include <frugal/config.hpp>
#include <frugal/kv/attention.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

#if FRUGAL_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace frugal::kv {

/// @brief Launch shape of paged_decode_device (CUB's habit: the knobs in one aggregate).
struct decode_tuning {
  /// Pages one thread block walks; a longer sequence is split among several blocks whose
  /// softmax states a second kernel merges (flash-decoding). Positive.
  std::uint32_t pages_per_split = 32;
};

/// @brief A FlashInfer page table in device memory: indptr (batch + 1), indices, last_page_len
/// (batch), as kv::cache::export_flashinfer lays them out.
struct device_page_table {
  const std::int32_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const std::int32_t* last_page_len = nullptr;
};

#if FRUGAL_HAS_CUDA

/// @brief write_kv on the device: K and V rows (num_tokens x num_kv_heads x head_dim floats, device
/// memory) into their slots (num_tokens int64 in device memory; negative: skipped, and slots past
/// the pool are skipped too, never written). Asynchronous on `stream`. The same codecs as write_kv
/// (frugal/kv/detail/attention_math.hpp), so both write the same bytes.
/// @param scales host span, as for write_kv
/// @throws invalid_argument for a layer out of range, bad scales, more than 128 KV heads with
///   per-head scales, or a pool in pageable host memory; nothing is launched then
/// @throws cuda_error when the launch fails
void write_kv_device(page_pool& pages, std::uint32_t layer, const float* k, const float* v,
                     const std::int64_t* slot_mapping, std::size_t num_tokens,
                     std::span<const float> scales, cudaStream_t stream = nullptr);

/// @brief Decode attention on the device: one query row per sequence (its last token: position
/// kv_len - 1), grouped-query, optional sliding window, every KV dtype, fp32 out (batch x
/// num_qo_heads x head_dim). Sequences longer than pages_per_split pages are split among blocks
/// and merged. Partial results live in stream-ordered scratch (cudaMallocAsync) freed on `stream`.
/// @param q batch x num_qo_heads x head_dim floats, device memory
/// @param max_pages the most pages any sequence of the table has (a bound: it sizes the grid)
/// @throws invalid_argument as paged_attention's checks that need no device data (options,
///   layer, scales, head_dim above 256, num_qo_heads / num_kv_heads above 32), or a pool in
///   pageable host memory; nothing is launched then
/// @throws out_of_memory when the stream's pool cannot supply the scratch; cuda_error when a
///   launch fails (the scratch is freed either way, and no CUDA error is left pending)
void paged_decode_device(const page_pool& pages, std::uint32_t layer, const float* q,
                         const device_page_table& table, std::size_t batch, std::size_t max_pages,
                         float* out, const attention_options& options,
                         std::span<const float> scales = {}, cudaStream_t stream = nullptr,
                         const decode_tuning& tuning = {});

#endif  // FRUGAL_HAS_CUDA

}  // namespace frugal::kv
