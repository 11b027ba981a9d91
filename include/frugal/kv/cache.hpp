// frugal/kv/cache.hpp: a paged KV cache manager for your own attention kernels: pages on demand,
// prefix caching with LRU eviction, fork with copy-on-write, a host tier, and the page tables
// FlashInfer and vLLM kernels read.
//   frugal::kv::cache kv{layout, num_pages, gpu, {.enable_prefix_caching = true}};
//   auto seq = kv.add_sequence(prompt);   kv.append(seq, generated);
//   const frugal::kv::sequence* batch[] = {&seq};   auto table = kv.export_flashinfer(batch);
#pragma once

#include <frugal/kv/copy_op.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/kv/prefix_index.hpp>
#include <frugal/kv/sequence.hpp>
#include <frugal/mr/host_resource.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace frugal::kv {

using token_id = std::int32_t;

/// @brief FlashInfer's CSR page table for a batch: pages of sequence i are
/// indices[indptr[i] .. indptr[i + 1]), and its last page holds last_page_len[i] tokens
/// (1..page_size).
struct flashinfer_page_table {
  std::vector<std::int32_t> indptr;
  std::vector<std::int32_t> indices;
  std::vector<std::int32_t> last_page_len;
};

/// @brief vLLM's padded block tables: row i (max_pages entries) holds sequence i's pages,
/// padded with `pad`; seq_lens[i] is its token count.
struct block_tables {
  std::vector<std::int32_t> tables;
  std::size_t max_pages = 0;
  std::vector<std::int32_t> seq_lens;
};

/// @brief Counters of a cache (see cache::stats()).
struct cache_stats {
  std::uint32_t total_pages = 0;
  std::uint32_t used_pages = 0;     ///< held by at least one sequence
  std::uint32_t cached_pages = 0;   ///< held by none, kept for prefix hits, evictable
  std::uint32_t free_pages = 0;     ///< neither: total = used + cached + free
  double prefix_hit_rate = 0;       ///< cached prompt tokens / prompt tokens, last N sequences
  std::size_t slots_allocated = 0;  ///< used pages x page_size
  std::size_t slots_used = 0;       ///< token slots of used pages that hold a token
  std::size_t evictions = 0;
  std::size_t cow_copies = 0;
  std::size_t swaps_out = 0;
  std::size_t swaps_in = 0;
  /// (allocated - used) / allocated: the share of held slots without a token.
  double waste() const noexcept {
    return slots_allocated == 0 ? 0.0 : 1.0 - static_cast<double>(slots_used) / slots_allocated;
  }
};

/// @brief Options of a kv::cache (also spelled kv::cache::options).
struct cache_options {
  bool enable_prefix_caching = true;
  /// Fraction of pages a new sequence must leave free (running sequences grow into them).
  double watermark = 0.01;
  /// Pages of the host tier for swap_out (0: no host tier). Host memory comes from host_memory
  /// when given, else from a host_resource the cache owns.
  std::uint32_t host_pages = 0;
  std::optional<any_resource_ref> host_memory{};
  /// Sequences over which prefix_hit_rate is computed.
  std::size_t hit_rate_window = 1000;
};

/// @brief A paged KV cache over a fixed page_pool (see docs/kv.md). Not thread safe.
///
/// Page states: *used* (reference count > 0), *cached* (count 0, content identified by a hash,
/// evictable), *free*. num_free_pages() = free + cached. A full page's hash chains its parent's
/// hash, its tokens and the sequence's extra key, so equal prefixes map to equal pages.
class cache {
 public:
  using options = cache_options;

  /// @param memory any resource (device memory for a real cache); must outlive the cache
  /// @throws invalid_argument for a bad layout, zero pages or a watermark outside [0, 1)
  /// @throws out_of_memory when the pages cannot be allocated
  cache(const layout& l, std::uint32_t num_pages, any_resource_ref memory, options opts = {});
  cache(const layout& l, std::uint32_t num_pages, any_resource_ref memory, bool prefix_caching)
      : cache(l, num_pages, memory, options{.enable_prefix_caching = prefix_caching}) {}
  ~cache();
  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;

  // ---- sequences ---------------------------------------------------------------------------

  /// @brief A new sequence holding `tokens` (the prompt), its pages allocated now; the longest
  /// run of cached full pages is reused, but at least the last token is left to compute.
  /// @param extra_key separates otherwise equal prefixes (adapter id, salt); 0 for none
  /// @returns nullopt when the pages do not fit now while keeping the watermark free
  /// @throws invalid_argument for an empty prompt, or one needing more pages than the cache has
  std::optional<sequence> try_add_sequence(std::span<const token_id> tokens,
                                           std::uint64_t extra_key = 0);
  /// @brief As try_add_sequence, for an engine that computes the prompt in chunks: only the
  /// full pages within the first `computed_tokens` tokens (those whose KV exists, or is written
  /// before anything else reads the cache) are registered for prefix hits now; the others when
  /// mark_computed() reaches them, so no other sequence can hit a page whose KV is not there.
  /// Pages filled by later appends are held back too until mark_computed covers them.
  std::optional<sequence> try_add_sequence(std::span<const token_id> tokens,
                                           std::uint64_t extra_key, std::size_t computed_tokens);
  /// @brief Registers for prefix hits the full pages of `seq` within its first `num_tokens`
  /// tokens that were held back by try_add_sequence's computed_tokens. Never unregisters.
  /// @throws invalid_argument for an empty, released or foreign sequence
  void mark_computed(sequence& seq, std::size_t num_tokens);
  /// @brief As try_add_sequence. @throws out_of_memory when the pages do not fit now
  sequence add_sequence(std::span<const token_id> tokens, std::uint64_t extra_key = 0);

  /// @brief Appends tokens, allocating a page only when one fills (and copying a shared,
  /// partly filled last page first: copy-on-write). All or nothing.
  /// @returns false, changing nothing, when the pages needed are not free
  /// @throws invalid_argument for an empty, released, foreign or swapped-out sequence
  bool try_append(sequence& seq, std::span<const token_id> new_tokens);
  /// @brief As try_append. @throws out_of_memory when the pages needed are not free
  void append(sequence& seq, std::span<const token_id> new_tokens);

  /// @brief A new sequence sharing every page of `seq` (reference counts); the first write into
  /// a shared, partly filled page copies it (the copy comes out of take_copy_ops()).
  sequence fork(const sequence& seq);

  /// @brief The page copies (copy-on-write, device to device) the engine must perform before
  /// its next kernel, in order; the list is emptied. swap_out and swap_in also empty it: they
  /// return the pending copies first, so every list the cache hands out is complete in itself.
  std::vector<copy_op> take_copy_ops() noexcept;

  // ---- host tier ---------------------------------------------------------------------------

  /// @brief Moves a sequence's pages to the host tier. @returns the copies to perform, in order,
  /// before the device pages are reused: pending copy-on-write copies, then device page -> host
  /// page (copy_kind says which). All or nothing.
  /// @throws out_of_memory when the host tier lacks pages; invalid_argument as try_append
  std::vector<copy_op> swap_out(sequence& seq);
  /// @brief As swap_out. @returns nullopt, changing nothing, when the host tier lacks pages
  /// @throws invalid_argument as swap_out (a swapped-out or foreign sequence, no host tier)
  std::optional<std::vector<copy_op>> try_swap_out(sequence& seq);
  /// @brief Brings a swapped-out sequence back. @returns the copies, in order: pending
  /// copy-on-write copies, then host page -> device page.
  /// The pages it gets back are not registered for prefix hits (their hashes were not kept).
  /// @throws out_of_memory when device pages are lacking (nothing changes)
  std::vector<copy_op> swap_in(sequence& seq);

  // ---- exports -----------------------------------------------------------------------------

  flashinfer_page_table export_flashinfer(std::span<const sequence* const> seqs) const;
  /// @brief Into caller buffers: indptr (B + 1), indices (total pages), last_page_len (B).
  /// @throws invalid_argument when a buffer is too small (nothing written)
  void export_flashinfer(std::span<const sequence* const> seqs, std::span<std::int32_t> indptr,
                         std::span<std::int32_t> indices,
                         std::span<std::int32_t> last_page_len) const;
  block_tables export_block_tables(std::span<const sequence* const> seqs,
                                   std::int32_t pad = 0) const;
  /// @brief Into caller buffers: tables (B x max_pages), seq_lens (B).
  void export_block_tables(std::span<const sequence* const> seqs, std::size_t max_pages,
                           std::span<std::int32_t> tables, std::span<std::int32_t> seq_lens,
                           std::int32_t pad = 0) const;
  /// @brief Slots (page * page_size + offset) of the tokens each sequence gained by its last
  /// add (the tokens not served from the prefix cache) or append, in batch order.
  std::vector<std::int64_t> slot_mapping(std::span<const sequence* const> seqs) const;

  // ---- state -------------------------------------------------------------------------------

  /// @brief Changes the fraction of pages a new sequence must leave free.
  /// @throws invalid_argument outside [0, 1)
  void set_watermark(double watermark) {
    FRUGAL_EXPECTS(watermark >= 0.0 && watermark < 1.0, "kv::cache: watermark must be in [0, 1)",
                   invalid_argument);
    options_.watermark = watermark;
  }
  /// @brief Pages a new sequence must leave free: watermark x num_pages(), rounded down.
  std::uint32_t watermark_pages() const noexcept;
  /// @brief Pages a new allocation could take: free plus cached (evictable) pages.
  std::uint32_t num_free_pages() const noexcept;
  std::uint32_t num_pages() const noexcept { return pages_.num_pages(); }
  cache_stats stats() const;
  /// @brief Forgets every cached page. @returns false, changing nothing, while any page is used.
  bool reset_prefix_cache();
  /// @brief Checks every invariant: reference counts equal holders, free + used + cached =
  /// total, every hash entry points at a cached or used page with that hash, the eviction queue
  /// holds exactly the cached pages.
  bool is_valid() const;

  const kv::layout& layout() const noexcept { return pages_.layout(); }
  const page_pool& pages() const noexcept { return pages_; }
  page_pool& pages() noexcept { return pages_; }
  /// @brief The host tier (null without one).
  const page_pool* host_pages() const noexcept { return host_.get(); }
  page_pool* host_pages() noexcept { return host_.get(); }
  const options& config() const noexcept { return options_; }
  /// @brief Host bytes of bookkeeping per page of the device pool: per-page state, the prefix
  /// map, and every sequence's record and page table.
  double metadata_bytes_per_page() const noexcept;

 private:
  friend class sequence;

  // Per sequence, host memory is its page table: tokens are not kept. Full pages need only the
  // chained hash of the last one; the partial page, the running state of its hash.
  struct sequence_state {
    std::vector<page_id> pages;
    std::vector<page_id> host;       // while swapped out
    std::uint64_t partial_hash = 0;  // hash state over the partial last page's tokens
    std::size_t num_tokens = 0;
    std::uint64_t last_hash = 0;  // of the last full page; 0 before the first
    std::uint64_t extra_key = 0;
    std::size_t cached_tokens = 0;
    std::size_t new_begin = 0;  // first token of the last add/append
    // Full pages held back from the prefix map until computed (see mark_computed): the hashes
    // of pages [pages_registered, pages_registered + pending.size()), in order.
    std::size_t register_limit = 0;  // tokens whose full pages may be registered
    std::size_t pages_registered = 0;
    std::vector<std::uint64_t> pending;
    std::uint32_t generation = 0;
    bool live = false;
    bool swapped = false;

    /// Back to an unused record (the generation stays; the vectors keep their capacity).
    void clear() noexcept {
      pages.clear();
      host.clear();
      partial_hash = 0;
      num_tokens = 0;
      last_hash = 0;
      extra_key = 0;
      cached_tokens = 0;
      new_begin = 0;
      register_limit = 0;
      pages_registered = 0;
      pending.clear();
      live = false;
      swapped = false;
    }
  };

  sequence_state& state_of(const sequence& seq, const char* operation);
  const sequence_state& state_of(const sequence& seq, const char* operation) const;
  void release(std::uint32_t slot) noexcept;

  std::uint64_t page_hash(std::uint64_t parent, std::span<const token_id> tokens,
                          std::uint64_t extra_key) const noexcept;
  page_id take_page() noexcept;  // free, else evict a cached page (prefix_index's choice)
  /// A sequence lets go of `pages`: each one's count drops, and at zero it is cached (when
  /// registered) or freed.
  void drop_holders(std::span<const page_id> pages) noexcept;
  /// Adds tokens to s's partial last page, registering each page that fills (its page must be
  /// in s.pages already).
  void feed_tokens(sequence_state& s, std::span<const token_id> tokens);
  void register_page(page_id p, std::uint64_t h) noexcept;
  void set_fill(page_id p, std::size_t tokens) noexcept;
  std::uint32_t new_slot();

  options options_;
  page_pool pages_;
  std::unique_ptr<host_resource> own_host_memory_;
  std::unique_ptr<page_pool> host_;
  prefix_index index_;               // hash -> page, and the eviction order of cached pages
  std::vector<std::uint16_t> fill_;  // per page (device pool): tokens held
  std::size_t used_fill_ = 0;        // sum of fill_ over pages held by a sequence
  std::vector<sequence_state> sequences_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<copy_op> copy_ops_;
  std::deque<std::pair<std::size_t, std::size_t>> hit_window_;  // (cached, prompt) tokens
  std::size_t window_cached_ = 0, window_prompt_ = 0;
  std::size_t evictions_ = 0, cow_copies_ = 0, swaps_out_ = 0, swaps_in_ = 0;
};

/// @brief Performs `ops` in order between the device pool and the host tier of `kv`, when both
/// are host-accessible (a cache over host memory: tests, CPU engines). Device pools use
/// copy_pages_device (cuda/kv_copy.cu) for device_to_device and cudaMemcpy for the others.
void perform_copies_host(cache& kv, std::span<const copy_op> ops);

}  // namespace frugal::kv
