// The paged KV cache: page states, prefix hashing and eviction, copy-on-write, swaps, exports.
#include <frugal/kv/cache.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace frugal::kv {

// ---- sequence handle ----------------------------------------------------------------------------

void sequence::release() noexcept {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->release(slot_);
}
std::span<const page_id> sequence::pages() const noexcept {
  return owner_ ? std::span<const page_id>(owner_->sequences_[slot_].pages)
                : std::span<const page_id>{};
}
std::size_t sequence::num_tokens() const noexcept {
  return owner_ ? owner_->sequences_[slot_].num_tokens : 0;
}
std::size_t sequence::cached_tokens() const noexcept {
  return owner_ ? owner_->sequences_[slot_].cached_tokens : 0;
}
bool sequence::swapped_out() const noexcept { return owner_ && owner_->sequences_[slot_].swapped; }

// ---- construction -------------------------------------------------------------------------------

cache::cache(const kv::layout& l, std::uint32_t num_pages, any_resource_ref memory, options opts)
    : options_(std::move(opts)),
      pages_(l, num_pages, memory),
      index_(num_pages, options_.enable_prefix_caching) {
  FRUGAL_EXPECTS(options_.watermark >= 0.0 && options_.watermark < 1.0,
                 "kv::cache: watermark must be in [0, 1)", invalid_argument);
  FRUGAL_EXPECTS(l.page_size <= 0xFFFF, "kv::cache: page_size above 65535", invalid_argument);
  if (options_.host_pages > 0) {
    if (!options_.host_memory) {
      own_host_memory_ = std::make_unique<host_resource>();
      options_.host_memory.emplace(*own_host_memory_);
    }
    host_ = std::make_unique<page_pool>(l, options_.host_pages, *options_.host_memory);
  }
  fill_.assign(num_pages, 0);
}

cache::~cache() {
  // A sequence that outlives its cache would release into freed memory: caught in debug builds.
  FRUGAL_ASSERT(std::none_of(sequences_.begin(), sequences_.end(),
                             [](const sequence_state& s) { return s.live; }),
                "kv::cache destroyed while sequences still refer to it");
}

// ---- page states
// ----------------------------------------------------------------------------------

std::uint32_t cache::num_free_pages() const noexcept {
  return pages_.num_free() + index_.cached_count();
}

std::uint32_t cache::watermark_pages() const noexcept {
  return static_cast<std::uint32_t>(options_.watermark * pages_.num_pages());
}

page_id cache::take_page() noexcept {
  if (auto p = pages_.try_allocate()) {
    fill_[*p] = 0;
    return *p;
  }
  FRUGAL_ASSERT(index_.cached_count() > 0, "kv::cache: take_page with no free or cached page");
  const page_id p = index_.evict();
  fill_[p] = 0;
  pages_.retain(p);  // 0 -> 1
  ++evictions_;
  return p;
}

void cache::set_fill(page_id p, std::size_t tokens) noexcept {
  used_fill_ = used_fill_ - fill_[p] + tokens;  // p is held
  fill_[p] = static_cast<std::uint16_t>(tokens);
}

void cache::drop_holders(std::span<const page_id> pages) noexcept {
  index_.on_release(pages, [&](page_id p) {
    if (pages_.release(p) != 0) return false;  // still held
    used_fill_ -= fill_[p];
    if (index_.hash_of(p) != 0) return true;  // content kept for prefix hits until evicted
    pages_.free(p);
    return false;
  });
}

// A page's hash: FNV-1a over its tokens, seeded with the parent page's hash and the extra key,
// then a splitmix64 finaliser; 0 is reserved for "no hash". The FNV state is kept per sequence
// while a page fills, so a sequence never stores its tokens.
namespace {
constexpr std::uint64_t hash_seed(std::uint64_t parent, std::uint64_t extra_key) noexcept {
  return 0xCBF29CE484222325ull ^ (parent * 0x9E3779B97F4A7C15ull) ^
         (extra_key * 0xC2B2AE3D27D4EB4Full);
}
constexpr std::uint64_t hash_step(std::uint64_t state, token_id t) noexcept {
  return (state ^ static_cast<std::uint32_t>(t)) * 0x100000001B3ull;
}
constexpr std::uint64_t hash_finish(std::uint64_t h) noexcept {
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;
}
}  // namespace

std::uint64_t cache::page_hash(std::uint64_t parent, std::span<const token_id> tokens,
                               std::uint64_t extra_key) const noexcept {
  std::uint64_t state = hash_seed(parent, extra_key);
  for (const token_id t : tokens) state = hash_step(state, t);
  return hash_finish(state);
}

void cache::feed_tokens(sequence_state& s, std::span<const token_id> tokens) {
  const std::size_t page_size = layout().page_size;
  for (const token_id t : tokens) {
    if (s.num_tokens % page_size == 0) s.partial_hash = hash_seed(s.last_hash, s.extra_key);
    s.partial_hash = hash_step(s.partial_hash, t);
    ++s.num_tokens;
    if (s.num_tokens % page_size != 0) continue;
    const std::uint64_t h = hash_finish(s.partial_hash);
    s.last_hash = h;
    if (!options_.enable_prefix_caching) continue;
    const std::size_t index = s.num_tokens / page_size - 1;
    if (s.pending.empty() && s.num_tokens <= s.register_limit) {
      register_page(s.pages[index], h);
      s.pages_registered = index + 1;
    } else {
      s.pending.push_back(h);
    }
  }
}

void cache::register_page(page_id p, std::uint64_t h) noexcept { index_.insert(p, h); }

void cache::mark_computed(sequence& seq, std::size_t num_tokens) {
  sequence_state& s = state_of(seq, "mark_computed");
  s.register_limit = std::max(s.register_limit, num_tokens);
  const std::size_t page_size = layout().page_size;
  std::size_t done = 0;
  while (done < s.pending.size() && (s.pages_registered + 1) * page_size <= s.register_limit &&
         !s.swapped) {
    register_page(s.pages[s.pages_registered], s.pending[done]);
    ++s.pages_registered;
    ++done;
  }
  s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<std::ptrdiff_t>(done));
}

std::uint32_t cache::new_slot() {
  if (!free_slots_.empty()) {
    const std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    return slot;
  }
  sequences_.emplace_back();
  return static_cast<std::uint32_t>(sequences_.size() - 1);
}

cache::sequence_state& cache::state_of(const sequence& seq, const char* operation) {
  return const_cast<sequence_state&>(std::as_const(*this).state_of(seq, operation));
}

const cache::sequence_state& cache::state_of(const sequence& seq, const char* operation) const {
  FRUGAL_EXPECTS(
      !seq.empty(),
      std::string("kv::cache::") + operation + ": the sequence is empty (released or moved from)",
      invalid_argument);
  FRUGAL_EXPECTS(seq.owner_ == this,
                 std::string("kv::cache::") + operation + ": the sequence belongs to another cache",
                 invalid_argument);
  const sequence_state& s = sequences_[seq.slot_];
  FRUGAL_EXPECTS(s.live && s.generation == seq.generation_,
                 std::string("kv::cache::") + operation + ": the sequence was released",
                 invalid_argument);
  return s;
}

// ---- sequences ----------------------------------------------------------------------------------

std::optional<sequence> cache::try_add_sequence(std::span<const token_id> tokens,
                                                std::uint64_t extra_key) {
  return try_add_sequence(tokens, extra_key, std::numeric_limits<std::size_t>::max());
}

std::optional<sequence> cache::try_add_sequence(std::span<const token_id> tokens,
                                                std::uint64_t extra_key,
                                                std::size_t computed_tokens) {
  FRUGAL_EXPECTS(!tokens.empty(), "kv::cache::add_sequence: the prompt is empty", invalid_argument);
  const std::size_t page_size = layout().page_size;
  const std::size_t needed = layout().pages_for(tokens.size());
  FRUGAL_EXPECTS(needed <= num_pages(),
                 "kv::cache::add_sequence: " + std::to_string(tokens.size()) + " tokens need " +
                     std::to_string(needed) + " pages, more than the cache's " +
                     std::to_string(num_pages()) + ": it can never fit",
                 invalid_argument);

  // Longest run of cached full pages, leaving at least the last token to compute.
  std::vector<std::uint64_t> hashes;
  std::size_t hits = 0;
  if (options_.enable_prefix_caching) {
    const std::size_t reusable = (tokens.size() - 1) / page_size;
    std::uint64_t parent = 0;
    for (std::size_t i = 0; i < reusable; ++i) {
      const std::uint64_t h =
          page_hash(parent, tokens.subspan(i * page_size, page_size), extra_key);
      if (index_.find(h) == prefix_index::no_page) break;
      hashes.push_back(h);
      parent = h;
      ++hits;
    }
  }
  std::uint32_t hits_cached = 0;  // hit pages that sit among the free (evictable) pages
  for (std::size_t i = 0; i < hits; ++i)
    hits_cached += pages_.refcount(index_.find(hashes[i])) == 0;
  const std::size_t fresh = needed - hits;
  const std::size_t available = num_free_pages() - hits_cached;
  if (fresh + watermark_pages() > available) return std::nullopt;

  const std::uint32_t slot = new_slot();
  sequence_state& s = sequences_[slot];
  s.clear();
  s.extra_key = extra_key;
  s.cached_tokens = hits * page_size;
  s.num_tokens = s.cached_tokens;
  s.register_limit = std::max(computed_tokens, s.cached_tokens);
  s.pages_registered = hits;
  s.last_hash = hits == 0 ? 0 : hashes[hits - 1];
  s.new_begin = s.cached_tokens;
  s.live = true;
  s.pages.reserve(needed);
  for (std::size_t i = 0; i < hits; ++i) {
    const page_id p = index_.find(hashes[i]);
    if (pages_.refcount(p) == 0) {
      index_.on_hit(p);
      used_fill_ += fill_[p];
    }
    pages_.retain(p);
    s.pages.push_back(p);
  }
  for (std::size_t i = hits; i < needed; ++i) {
    const page_id p = take_page();
    set_fill(p, std::min(page_size, tokens.size() - i * page_size));
    s.pages.push_back(p);
  }
  feed_tokens(s, tokens.subspan(s.cached_tokens));

  hit_window_.emplace_back(s.cached_tokens, tokens.size());
  window_cached_ += s.cached_tokens;
  window_prompt_ += tokens.size();
  while (hit_window_.size() > options_.hit_rate_window) {
    window_cached_ -= hit_window_.front().first;
    window_prompt_ -= hit_window_.front().second;
    hit_window_.pop_front();
  }
  FRUGAL_ASSERT_EXPENSIVE(is_valid(), "kv::cache corrupted by add_sequence");
  return sequence(this, slot, s.generation);
}

sequence cache::add_sequence(std::span<const token_id> tokens, std::uint64_t extra_key) {
  if (auto seq = try_add_sequence(tokens, extra_key)) return std::move(*seq);
  const std::size_t needed = layout().pages_for(tokens.size());
  FRUGAL_OUT_OF_MEMORY(needed * layout().page_bytes(),
                       std::to_string(needed) + " pages needed, " +
                           std::to_string(num_free_pages()) + " free (" +
                           std::to_string(index_.cached_count()) + " of them cached), " +
                           std::to_string(watermark_pages()) + " kept free by the watermark",
                       "kv::cache");
}

bool cache::try_append(sequence& seq, std::span<const token_id> new_tokens) {
  sequence_state& s = state_of(seq, "append");
  FRUGAL_EXPECTS(!s.swapped, "kv::cache::append: the sequence is swapped out", invalid_argument);
  const std::size_t page_size = layout().page_size;
  const std::size_t n = s.num_tokens;
  if (new_tokens.empty()) {
    s.new_begin = n;
    return true;
  }
  const std::size_t in_last = n - (s.pages.size() - 1) * page_size;  // 1..page_size
  const std::size_t room = page_size - in_last;
  const bool copy_on_write = room > 0 && pages_.refcount(s.pages.back()) > 1;
  const std::size_t beyond = new_tokens.size() > room ? new_tokens.size() - room : 0;
  const std::size_t fresh = (copy_on_write ? 1 : 0) + layout().pages_for(beyond);
  if (fresh > num_free_pages()) return false;

  s.pages.reserve(s.pages.size() + fresh);
  copy_ops_.reserve(copy_ops_.size() + 1);
  if (copy_on_write) {
    const page_id shared = s.pages.back();
    const page_id copy = take_page();
    copy_ops_.push_back({shared, copy});
    set_fill(copy, fill_[shared]);
    pages_.release(shared);  // still held by another sequence
    s.pages.back() = copy;
    ++cow_copies_;
  }
  std::size_t left = new_tokens.size();
  const std::size_t into_last = std::min(left, room);
  set_fill(s.pages.back(), fill_[s.pages.back()] + into_last);
  left -= into_last;
  while (left > 0) {
    const page_id p = take_page();
    const std::size_t here = std::min(left, page_size);
    set_fill(p, here);
    s.pages.push_back(p);
    left -= here;
  }
  feed_tokens(s, new_tokens);
  s.new_begin = n;
  FRUGAL_ASSERT_EXPENSIVE(is_valid(), "kv::cache corrupted by append");
  return true;
}

void cache::append(sequence& seq, std::span<const token_id> new_tokens) {
  if (try_append(seq, new_tokens)) return;
  FRUGAL_OUT_OF_MEMORY(
      new_tokens.size() * layout().token_bytes() * 2 * layout().num_layers,
      "no free page for the appended tokens: " + std::to_string(num_free_pages()) + " free",
      "kv::cache");
}

sequence cache::fork(const sequence& seq) {
  const sequence_state& source = state_of(seq, "fork");
  FRUGAL_EXPECTS(!source.swapped, "kv::cache::fork: the sequence is swapped out", invalid_argument);
  const std::uint32_t slot = new_slot();
  sequence_state& s = sequences_[slot];
  const sequence_state& from = sequences_[seq.slot_];  // new_slot may have moved the vector
  s.clear();
  s.pages = from.pages;
  s.partial_hash = from.partial_hash;
  s.num_tokens = from.num_tokens;
  s.last_hash = from.last_hash;
  s.extra_key = from.extra_key;
  s.cached_tokens = from.cached_tokens;
  s.new_begin = from.num_tokens;
  s.register_limit = from.register_limit;
  s.pages_registered = from.pages_registered;
  s.pending = from.pending;
  s.live = true;
  for (const page_id p : s.pages) pages_.retain(p);
  return sequence(this, slot, s.generation);
}

std::vector<copy_op> cache::take_copy_ops() noexcept { return std::exchange(copy_ops_, {}); }

void cache::release(std::uint32_t slot) noexcept {
  sequence_state& s = sequences_[slot];
  if (!s.live) return;
  drop_holders(s.pages);
  for (const page_id p : s.host) {
    host_->release(p);
    host_->free(p);
  }
  s.clear();
  ++s.generation;
  free_slots_.push_back(slot);  // capacity: at most one entry per slot ever made
}

// ---- host tier ----------------------------------------------------------------------------------

std::vector<copy_op> cache::swap_out(sequence& seq) {
  if (auto ops = try_swap_out(seq)) return std::move(*ops);
  const sequence_state& s = state_of(seq, "swap_out");
  FRUGAL_OUT_OF_MEMORY(s.pages.size() * layout().page_bytes(),
                       std::to_string(s.pages.size()) + " host pages needed, " +
                           std::to_string(host_->num_free()) + " free",
                       "kv::cache host tier");
}

std::optional<std::vector<copy_op>> cache::try_swap_out(sequence& seq) {
  sequence_state& s = state_of(seq, "swap_out");
  FRUGAL_EXPECTS(!s.swapped, "kv::cache::swap_out: the sequence is already swapped out",
                 invalid_argument);
  FRUGAL_EXPECTS(host_ != nullptr, "kv::cache::swap_out: the cache has no host tier (host_pages)",
                 invalid_argument);
  if (host_->num_free() < s.pages.size()) return std::nullopt;
  std::vector<copy_op> ops = std::exchange(copy_ops_, {});
  ops.reserve(ops.size() + s.pages.size());
  s.host.reserve(s.pages.size());
  for (const page_id p : s.pages) {
    const page_id h = host_->allocate();
    s.host.push_back(h);
    ops.push_back({p, h, copy_kind::device_to_host});
  }
  drop_holders(s.pages);
  s.pages.clear();
  s.pending.clear();  // the pages it gets back are not registered (see swap_in)
  s.swapped = true;
  ++swaps_out_;
  return ops;
}

std::vector<copy_op> cache::swap_in(sequence& seq) {
  sequence_state& s = state_of(seq, "swap_in");
  FRUGAL_EXPECTS(s.swapped, "kv::cache::swap_in: the sequence is not swapped out",
                 invalid_argument);
  if (num_free_pages() < s.host.size())
    FRUGAL_OUT_OF_MEMORY(s.host.size() * layout().page_bytes(),
                         std::to_string(s.host.size()) + " pages needed, " +
                             std::to_string(num_free_pages()) + " free",
                         "kv::cache");
  std::vector<copy_op> ops = std::exchange(copy_ops_, {});
  ops.reserve(ops.size() + s.host.size());
  s.pages.reserve(s.host.size());
  const std::size_t page_size = layout().page_size;
  for (std::size_t i = 0; i < s.host.size(); ++i) {
    const page_id p = take_page();
    set_fill(p, std::min(page_size, s.num_tokens - i * page_size));
    s.pages.push_back(p);
    ops.push_back({s.host[i], p, copy_kind::host_to_device});
  }
  for (const page_id h : s.host) {
    host_->release(h);
    host_->free(h);
  }
  s.host.clear();
  s.swapped = false;
  ++swaps_in_;
  return ops;
}

// ---- exports ------------------------------------------------------------------------------------

void cache::export_flashinfer(std::span<const sequence* const> seqs, std::span<std::int32_t> indptr,
                              std::span<std::int32_t> indices,
                              std::span<std::int32_t> last_page_len) const {
  std::size_t total = 0;
  for (const sequence* seq : seqs) {
    const sequence_state& s = state_of(*seq, "export_flashinfer");
    FRUGAL_EXPECTS(!s.swapped, "kv::cache::export_flashinfer: a sequence is swapped out",
                   invalid_argument);
    total += s.pages.size();
  }
  FRUGAL_EXPECTS(indptr.size() >= seqs.size() + 1 && indices.size() >= total &&
                     last_page_len.size() >= seqs.size(),
                 "kv::cache::export_flashinfer: a buffer is too small", invalid_argument);
  const std::size_t page_size = layout().page_size;
  std::size_t at = 0;
  indptr[0] = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const sequence_state& s = sequences_[seqs[i]->slot_];
    for (const page_id p : s.pages) indices[at++] = static_cast<std::int32_t>(p);
    indptr[i + 1] = static_cast<std::int32_t>(at);
    last_page_len[i] = static_cast<std::int32_t>(s.num_tokens - (s.pages.size() - 1) * page_size);
  }
}

flashinfer_page_table cache::export_flashinfer(std::span<const sequence* const> seqs) const {
  std::size_t total = 0;
  for (const sequence* seq : seqs) total += state_of(*seq, "export_flashinfer").pages.size();
  flashinfer_page_table t;
  t.indptr.resize(seqs.size() + 1);
  t.indices.resize(total);
  t.last_page_len.resize(seqs.size());
  export_flashinfer(seqs, t.indptr, t.indices, t.last_page_len);
  return t;
}

void cache::export_block_tables(std::span<const sequence* const> seqs, std::size_t max_pages,
                                std::span<std::int32_t> tables, std::span<std::int32_t> seq_lens,
                                std::int32_t pad) const {
  for (const sequence* seq : seqs) {
    const sequence_state& s = state_of(*seq, "export_block_tables");
    FRUGAL_EXPECTS(!s.swapped, "kv::cache::export_block_tables: a sequence is swapped out",
                   invalid_argument);
    FRUGAL_EXPECTS(s.pages.size() <= max_pages,
                   "kv::cache::export_block_tables: a sequence has more pages than max_pages",
                   invalid_argument);
  }
  FRUGAL_EXPECTS(tables.size() >= seqs.size() * max_pages && seq_lens.size() >= seqs.size(),
                 "kv::cache::export_block_tables: a buffer is too small", invalid_argument);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const sequence_state& s = sequences_[seqs[i]->slot_];
    std::int32_t* row = tables.data() + i * max_pages;
    for (std::size_t j = 0; j < s.pages.size(); ++j) row[j] = static_cast<std::int32_t>(s.pages[j]);
    std::fill(row + s.pages.size(), row + max_pages, pad);
    seq_lens[i] = static_cast<std::int32_t>(s.num_tokens);
  }
}

block_tables cache::export_block_tables(std::span<const sequence* const> seqs,
                                        std::int32_t pad) const {
  block_tables t;
  for (const sequence* seq : seqs)
    t.max_pages = std::max(t.max_pages, state_of(*seq, "export_block_tables").pages.size());
  t.tables.resize(seqs.size() * t.max_pages);
  t.seq_lens.resize(seqs.size());
  export_block_tables(seqs, t.max_pages, t.tables, t.seq_lens, pad);
  return t;
}

std::vector<std::int64_t> cache::slot_mapping(std::span<const sequence* const> seqs) const {
  std::vector<std::int64_t> slots;
  for (const sequence* seq : seqs) {
    const sequence_state& s = state_of(*seq, "slot_mapping");
    FRUGAL_EXPECTS(!s.swapped, "kv::cache::slot_mapping: a sequence is swapped out",
                   invalid_argument);
    for (std::size_t t = s.new_begin; t < s.num_tokens; ++t)
      slots.push_back(layout().slot_of(s.pages, t));
  }
  return slots;
}

// ---- state --------------------------------------------------------------------------------------

cache_stats cache::stats() const {
  cache_stats st;
  st.total_pages = num_pages();
  st.cached_pages = index_.cached_count();
  st.free_pages = pages_.num_free();
  st.used_pages = st.total_pages - st.cached_pages - st.free_pages;
  st.prefix_hit_rate =
      window_prompt_ == 0 ? 0.0 : static_cast<double>(window_cached_) / window_prompt_;
  st.slots_allocated = std::size_t{st.used_pages} * layout().page_size;
  st.slots_used = used_fill_;
  st.evictions = evictions_;
  st.cow_copies = cow_copies_;
  st.swaps_out = swaps_out_;
  st.swaps_in = swaps_in_;
  return st;
}

bool cache::reset_prefix_cache() {
  if (stats().used_pages != 0) return false;
  index_.clear([&](page_id p) { pages_.free(p); });
  return true;
}

double cache::metadata_bytes_per_page() const noexcept {
  std::size_t bytes =
      index_.memory_bytes() + fill_.capacity() * sizeof(std::uint16_t) + pages_.metadata_bytes();
  for (const sequence_state& s : sequences_)
    bytes += sizeof(sequence_state) + (s.pages.capacity() + s.host.capacity()) * sizeof(page_id);
  return static_cast<double>(bytes) / num_pages();
}

bool cache::is_valid() const {
  const std::uint32_t n = num_pages();
  std::vector<std::uint32_t> holders(n, 0);
  const std::size_t page_size = layout().page_size;
  for (const sequence_state& s : sequences_) {
    if (!s.live) continue;
    if (s.swapped) {
      if (!s.pages.empty() || s.host.size() != layout().pages_for(s.num_tokens)) return false;
      continue;
    }
    if (s.pages.size() != layout().pages_for(s.num_tokens)) return false;
    for (std::size_t i = 0; i < s.pages.size(); ++i) {
      const page_id p = s.pages[i];
      if (p >= n) return false;
      ++holders[p];
      const std::size_t tokens_here = std::min(page_size, s.num_tokens - i * page_size);
      if (fill_[p] != tokens_here) return false;
    }
  }
  std::uint32_t used = 0, cached = 0, free = 0;
  std::size_t fill_held = 0;
  for (page_id p = 0; p < n; ++p) {
    if (holders[p] > 0) fill_held += fill_[p];
    if (!pages_.is_allocated(p)) {
      ++free;
      if (holders[p] != 0 || index_.hash_of(p) != 0) return false;
      continue;
    }
    if (pages_.refcount(p) != holders[p]) return false;
    if (holders[p] > 0) {
      ++used;
    } else {
      ++cached;
      if (index_.hash_of(p) == 0) return false;  // an unheld allocated page must be a cached one
    }
    if (index_.hash_of(p) != 0 && index_.find(index_.hash_of(p)) != p) return false;
  }
  if (used + cached + free != n || free != pages_.num_free() || cached != index_.cached_count() ||
      fill_held != used_fill_)
    return false;
  return index_.is_valid(pages_);
}

void perform_copies_host(cache& kv, std::span<const copy_op> ops) {
  for (const copy_op& op : ops) {
    FRUGAL_EXPECTS(op.kind == copy_kind::device_to_device || kv.host_pages() != nullptr,
                   "kv::perform_copies_host: a host copy, but the cache has no host tier",
                   invalid_argument);
    const page_pool& from = op.kind == copy_kind::host_to_device ? *kv.host_pages() : kv.pages();
    page_pool& to = op.kind == copy_kind::device_to_host ? *kv.host_pages() : kv.pages();
    copy_pages_host(from, to, std::span<const copy_op>(&op, 1));
  }
}

}  // namespace frugal::kv
