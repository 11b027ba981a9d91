// frugal/kv/attention.hpp: attention over the pages of a kv::page_pool. write_kv stores new
// tokens' K and V rows into their slots (vLLM's reshape_and_cache); paged_attention computes
// causal, grouped-query attention of a batch of query rows (prefill chunks and decodes mixed)
// through a FlashInfer page table or vLLM block tables. CPU here; the CUDA versions are in
// frugal/kv/attention_kernels.hpp.
//   frugal::kv::write_kv(cache.pages(), layer, k, v, plan.slot_mapping);
//   frugal::kv::paged_attention(cache.pages(), layer, q, qo_indptr,
//                               frugal::kv::paged_kv{plan.page_table}, out, {.num_qo_heads = 8});
#pragma once

#include <frugal/kv/cache.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace frugal::kv {

/// @brief A non-owning view of a batch's page table, in either format kv::cache exports:
/// FlashInfer's CSR (indptr / indices / last_page_len) or vLLM's padded block tables (tables /
/// max_pages / seq_lens). Sequence i has kv_len(i) tokens on its pages, in order.
struct paged_kv {
  enum class format : std::uint8_t { flashinfer, block_tables };

  format kind = format::flashinfer;
  std::span<const std::int32_t> indptr;         ///< flashinfer: batch + 1 entries
  std::span<const std::int32_t> indices;        ///< flashinfer: page ids
  std::span<const std::int32_t> last_page_len;  ///< flashinfer: 1..page_size per sequence
  std::span<const std::int32_t> tables;         ///< block tables: batch x max_pages page ids
  std::size_t max_pages = 0;                    ///< block tables: row length
  std::span<const std::int32_t> seq_lens;       ///< block tables: tokens per sequence

  paged_kv() = default;
  /// Views of what kv::cache::export_flashinfer / export_block_tables return (which must outlive
  /// the view).
  paged_kv(const flashinfer_page_table& t)  // NOLINT(google-explicit-constructor): a view
      : kind(format::flashinfer),
        indptr(t.indptr),
        indices(t.indices),
        last_page_len(t.last_page_len) {}
  paged_kv(const block_tables& t)  // NOLINT(google-explicit-constructor): a view
      : kind(format::block_tables),
        tables(t.tables),
        max_pages(t.max_pages),
        seq_lens(t.seq_lens) {}

  /// @brief Sequences in the batch.
  std::size_t batch_size() const noexcept {
    return kind == format::flashinfer ? (indptr.empty() ? 0 : indptr.size() - 1) : seq_lens.size();
  }
};

/// @brief Options of paged_attention and paged_decode_device.
struct attention_options {
  /// Query heads; a positive multiple of the layout's num_kv_heads (query head h reads KV head
  /// h / (num_qo_heads / num_kv_heads)).
  std::uint32_t num_qo_heads = 0;
  /// Multiplies q . k; 0 means 1 / sqrt(head_dim).
  float sm_scale = 0.0f;
  /// Sliding window: a query at position p sees keys at positions >= p - window_left
  /// (FlashInfer's window_left; a model with window W, counting the query itself, uses W - 1).
  /// Negative: no window.
  std::int32_t window_left = -1;
  /// Causal: query j of a sequence with kv_len tokens and qo_len queries sits at position
  /// kv_len - qo_len + j and sees keys up to it. Not causal: every query sees every key.
  bool causal = true;
};

/// @brief Stores the K and V rows of new tokens of one layer into their slots, encoding them in
/// the pool's dtype (fp8/int8 as value / scale, with the scales given here).
/// @param k, v tokens x num_kv_heads x head_dim floats, row-major, tokens = slot_mapping.size()
/// @param slot_mapping per token, page * page_size + offset (kv::cache::slot_mapping, a
///   step_plan's slot_mapping); a negative slot skips its token (vLLM's padding)
/// @param scales the layer's layout::scales_per_layer() floats: per tensor [K, V], per head
///   [K x num_kv_heads, V x num_kv_heads]; empty for fp32/fp16/bf16
/// @throws invalid_argument for a layer out of range, sizes that disagree, a slot beyond the
///   pool, or scales that are missing, not positive or not finite; nothing is written then
/// The pool's memory must be host-accessible.
void write_kv(page_pool& pages, std::uint32_t layer, std::span<const float> k,
              std::span<const float> v, std::span<const std::int64_t> slot_mapping,
              std::span<const float> scales = {});

/// @brief Attention of a batch of query rows over their sequences' pages, fp32 out.
/// Sequence i's query rows are q rows [qo_indptr[i], qo_indptr[i + 1]), the last qo_len of its
/// kv_len tokens (their K and V written already). Online softmax per page in fp32: stable for
/// any score range. Each output row is computed alone, in the same order whatever else is in
/// the batch (batch-invariant).
/// @param q rows x num_qo_heads x head_dim floats; rows = qo_indptr.back()
/// @param out same shape as q
/// @param scales as for write_kv
/// @throws invalid_argument for a layer out of range, num_qo_heads not a positive multiple of
///   num_kv_heads, sizes that disagree, a page id outside the pool, a last_page_len outside
///   1..page_size, more queries than tokens in a sequence, or bad scales; nothing is written then
void paged_attention(const page_pool& pages, std::uint32_t layer, std::span<const float> q,
                     std::span<const std::int32_t> qo_indptr, const paged_kv& table,
                     std::span<float> out, const attention_options& options,
                     std::span<const float> scales = {});

namespace detail {
/// @brief Tokens of sequence `i` of a checked table.
std::size_t kv_len_of(const paged_kv& table, std::size_t i, std::uint32_t page_size) noexcept;
/// @brief Checks a table against a pool: sizes, page ids, last_page_len, seq_lens.
/// @throws invalid_argument naming the first problem
void check_table(const paged_kv& table, const page_pool& pages, const char* who);
/// @brief Checks a layer's scales against the layout. @throws invalid_argument
void check_scales(const layout& l, std::span<const float> scales, const char* who);
/// @brief Checks a layer index against the layout. @throws invalid_argument
void check_layer(const layout& l, std::uint32_t layer, const char* who);
}  // namespace detail

}  // namespace frugal::kv
