// frugal/mr/pool.hpp: a general-purpose coalescing pool over any upstream, O(1) allocate and free
// (two-level segregated fit), with every byte of bookkeeping kept off-band in host memory.
//   frugal::pool_resource pool{frugal::host_resource{}, {.chunk_size = 64 << 20}};
//   void* p = pool.allocate(1000);  pool.deallocate(p, 1000);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/detail/pointer_map.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace frugal {

/// @brief Growth and release policy of a pool_resource. The defaults grow without a cap.
struct pool_options {
  std::size_t initial_size = 0;  ///< bytes reserved from the upstream at construction
  /// bytes asked of the upstream each time the pool grows (at least the request);
  /// 0 grows adaptively by 1/16 of what is reserved, between 1 MiB and 1 GiB
  std::size_t chunk_size = 0;
  std::size_t max_size = std::numeric_limits<std::size_t>::max();  ///< cap on bytes reserved
  std::size_t release_threshold = 0;  ///< trim() keeps at least this many bytes reserved
};

/// @brief One block of a pool segment, as pool_resource::segments() reports it.
struct pool_block_info {
  const void* address = nullptr;
  std::size_t offset = 0;     ///< from the segment's base
  std::size_t size = 0;       ///< bytes the block spans (a multiple of the granularity)
  std::size_t requested = 0;  ///< bytes asked for; 0 when free
  bool free = true;
};

/// @brief One chunk obtained from the upstream and the blocks it is divided into, in address
/// order: what a memory snapshot draws.
struct pool_segment_info {
  const void* base = nullptr;
  std::size_t size = 0;
  std::vector<pool_block_info> blocks;
};

/// @brief General-purpose pool (see docs/concepts.md#resource). Memory comes from `Upstream` in
/// chunks; blocks are 256-byte granules found by a two-level segregated fit (TLSF) search, split
/// on allocation and coalesced with free neighbours immediately on free. Bookkeeping (block
/// records, free lists, the pointer map) lives in host vectors, never in the managed memory, so
/// the pool runs over device memory and over address space that is not backed at all.
///
/// Costs: allocate is O(1) (two bitmap scans, a list pop, at most two splits and a hash insert);
/// deallocate is O(1) (a hash lookup, at most two merges and a list push). Not thread safe:
/// wrap it in frugal::synchronized to share it.
template <resource Upstream>
class pool_resource : public detail::forward_properties<pool_resource<Upstream>, Upstream> {
 public:
  static constexpr std::size_t granularity = 256;  ///< every block is a multiple of this

  /// @param upstream where chunks come from (held by value; pass frugal::ref(r) to share r)
  /// @param options growth policy; initial_size is reserved now
  /// @throws invalid_argument if initial_size exceeds max_size
  /// @throws invalid_argument if initial_size exceeds max_size or the largest chunk a pool holds
  /// (just under 1 TiB: block sizes count 256-byte granules in 32 bits)
  /// @throws out_of_memory if the initial reservation fails
  explicit pool_resource(Upstream upstream, pool_options options = {})
      : upstream_(std::move(upstream)), options_(options) {
    FRUGAL_EXPECTS(options_.initial_size <= options_.max_size,
                   "pool_resource: initial_size exceeds max_size", invalid_argument);
    FRUGAL_EXPECTS(options_.initial_size <= max_block_bytes,
                   "pool_resource: initial_size " + format_bytes(options_.initial_size) +
                       " exceeds the largest chunk a pool holds, just under 1 TiB (" +
                       std::to_string(max_block_bytes) +
                       " bytes: block sizes count 256-byte granules in 32 bits)",
                   invalid_argument);
    heads_.fill(npos);
    if (options_.initial_size > 0) {
      const std::size_t bytes = detail::align_up(options_.initial_size, granularity);
      if (grow(bytes, granularity, bytes) == npos)
        FRUGAL_OUT_OF_MEMORY(bytes, "the upstream refused the initial reservation", "pool_resource");
    }
  }

  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;

  /// Returns every chunk to the upstream. Blocks still allocated become invalid.
  ~pool_resource() {
    for (const chunk& c : chunks_)
      if (c.base != 0) upstream_.deallocate(reinterpret_cast<void*>(c.base), c.size, c.alignment);
  }

  /// @brief Allocates `bytes` aligned to `alignment` (any power of two).
  /// @returns nullptr for zero bytes
  /// @throws invalid_argument if alignment is not a power of two (nothing changes)
  /// @throws out_of_memory naming the request, bytes in use, reserved and the largest free block
  ///         when neither the pool nor its upstream can satisfy it (nothing changes)
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "pool_resource");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr) [[unlikely]] {
      std::string state = describe(stats());
      if (options_.max_size != std::numeric_limits<std::size_t>::max())
        state += ", max_size " + format_bytes(options_.max_size);
      if (bytes > max_block_bytes)
        state += "; beyond the largest block a pool holds, just under 1 TiB (" +
                 std::to_string(max_block_bytes) +
                 " bytes: block sizes count 256-byte granules in 32 bits)";
      FRUGAL_OUT_OF_MEMORY(bytes, std::move(state), "pool_resource");
    }
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing (also for a bad alignment).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment) || bytes > options_.max_size ||
        bytes > max_block_bytes || alignment > max_block_bytes / 2) [[unlikely]]
      return nullptr;
    if (!reserve_bookkeeping()) [[unlikely]]
      return nullptr;
    const std::size_t size = detail::align_up(bytes, granularity);
    const std::size_t align = std::max(alignment, granularity);
    const std::size_t need = size + (align - granularity);

    index i = find_free(need);
    if (i == npos) [[unlikely]] {
      i = grow(need, align, size);
      if (i == npos) return nullptr;
    }
    unlink_free(i);
    if (align > granularity) i = split_front(i, align);
    split_back(i, size);

    block& b = blocks_[i];
    b.is_free = false;
    b.slack = static_cast<std::uint8_t>(b.size() - bytes);
    pointers_.insert(b.address, i);
    block_bytes_in_use_ += b.size();
    bytes_in_use_ += bytes;
    ++allocations_;
    peak_bytes_in_use_ = std::max(peak_bytes_in_use_, bytes_in_use_);
    FRUGAL_ASSERT_EXPENSIVE(is_valid(), "pool_resource corrupted by allocate");
    return reinterpret_cast<void*>(b.address);
  }

  /// @brief Returns a block. Misuse (a pointer the pool did not hand out, a double free, a size
  /// other than the one allocated) is reported to the misuse handler and changes nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    index i = pointers_.take(address);
    if (i == npos) [[unlikely]] {
      report_unknown(p, bytes);
      return;
    }
    if (blocks_[i].requested() != bytes) [[unlikely]] {
      pointers_.insert(address, i);  // cannot allocate: the entry's slot was just freed
      report_size_mismatch(p, bytes, blocks_[i].requested());
      return;
    }
    block_bytes_in_use_ -= blocks_[i].size();
    bytes_in_use_ -= bytes;
    --allocations_;
    blocks_[i].is_free = true;
    prefetch_neighbours(i);
    i = merge_with_neighbours(i);
    link_free(i);
    FRUGAL_ASSERT_EXPENSIVE(is_valid(), "pool_resource corrupted by deallocate");
  }

  /// @brief Returns fully free chunks to the upstream while more than release_threshold bytes
  /// stay reserved. @returns the bytes released.
  std::size_t trim() noexcept {
    std::size_t released = 0;
    for (std::uint32_t c = 0; c < chunks_.size(); ++c) {
      chunk& ch = chunks_[c];
      if (ch.base == 0) continue;
      const block& b = blocks_[ch.first];
      if (!b.is_free || b.size() != ch.size) continue;
      if (reserved_ - ch.size < options_.release_threshold) continue;
      unlink_free(ch.first);
      release_node(ch.first);
      upstream_.deallocate(reinterpret_cast<void*>(ch.base), ch.size, ch.alignment);
      reserved_ -= ch.size;
      released += ch.size;
      ch = chunk{};
      free_chunk_slots_.push_back(c);
    }
    return released;
  }

  /// @brief Current counters. largest_free_block costs a walk of the largest size class.
  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use_;
    s.bytes_reserved = reserved_;
    s.peak_bytes_in_use = peak_bytes_in_use_;
    s.peak_bytes_reserved = peak_reserved_;
    s.largest_free_block = largest_free_block();
    s.allocations = allocations_;
    return s;
  }

  /// @brief Every segment (chunk) with its blocks, in the order the chunks were obtained.
  /// O(blocks); allocates the returned vectors.
  std::vector<pool_segment_info> segments() const {
    std::vector<pool_segment_info> out;
    for (const chunk& c : chunks_) {
      if (c.base == 0) continue;
      pool_segment_info& segment = out.emplace_back();
      segment.base = reinterpret_cast<const void*>(c.base);
      segment.size = c.size;
      for (index i = c.first; i != npos; i = blocks_[i].next_phys) {
        const block& b = blocks_[i];
        segment.blocks.push_back(pool_block_info{reinterpret_cast<const void*>(b.address),
                                                 b.address - c.base, b.size(),
                                                 b.is_free ? 0 : b.requested(), b.is_free});
      }
    }
    return out;
  }

  /// @brief Walks every chunk and free list and checks every invariant (tests, debug builds).
  bool is_valid() const;

  const Upstream& upstream() const noexcept { return upstream_; }
  Upstream& upstream() noexcept { return upstream_; }
  const pool_options& options() const noexcept { return options_; }

  friend bool operator==(const pool_resource& a, const pool_resource& b) noexcept {
    return &a == &b;
  }

 private:
  using index = std::uint32_t;
  static constexpr index npos = detail::pointer_map::npos;
  static constexpr unsigned sl_bits = 5;                 // 32 classes per power of two
  static constexpr unsigned sl_count = 1u << sl_bits;
  static constexpr unsigned fl_count = 33 - sl_bits;    // granule counts are 32-bit
  static constexpr unsigned granule_shift = 8;
  static_assert((std::size_t{1} << granule_shift) == granularity);

  /// One contiguous range of a chunk. Physical neighbours link the blocks of a chunk in address
  /// order; free blocks are also on the free list of their size class.
  struct block {  // 32 bytes: two records per cache line
    std::uintptr_t address = 0;
    std::uint32_t granules = 0;
    index prev_phys = npos, next_phys = npos;
    index prev_free = npos, next_free = npos;
    std::uint16_t size_class = 0;  // fl * sl_count + sl, while on a free list
    std::uint8_t slack = 0;        // size() - bytes requested, while allocated
    bool is_free = true;

    std::size_t size() const noexcept { return std::size_t{granules} << granule_shift; }
    std::size_t requested() const noexcept { return size() - slack; }
    void set_size(std::size_t bytes) noexcept {
      granules = static_cast<std::uint32_t>(bytes >> granule_shift);
    }
  };
  static_assert(sizeof(block) == 32);
  /// Blocks count granules in 32 bits: the largest block (and chunk) is just under 1 TiB.
  static constexpr std::size_t max_block_bytes = std::size_t{0xFFFFFFFFu} << granule_shift;
  struct chunk {
    std::uintptr_t base = 0;     // 0: slot unused
    std::size_t size = 0;
    std::size_t alignment = 0;
    index first = npos;
  };

  static void mapping(std::size_t units, unsigned& fl, unsigned& sl) noexcept {
    if (units < sl_count) {
      fl = 0;
      sl = static_cast<unsigned>(units);
    } else {
      const unsigned msb = static_cast<unsigned>(std::bit_width(units)) - 1;
      fl = msb - sl_bits + 1;
      sl = static_cast<unsigned>(units >> (msb - sl_bits)) - sl_count;
    }
  }

  /// The first block of a class whose every member holds at least `bytes` (good fit), or, when
  /// none, a bounded walk of the request's own class.
  index find_free(std::size_t bytes) const noexcept {
    if (bytes > max_block_bytes) return npos;
    const std::size_t units = bytes >> granule_shift;
    unsigned fl, sl;
    if (units >= sl_count) {
      const unsigned msb = static_cast<unsigned>(std::bit_width(units)) - 1;
      mapping(units + (std::size_t{1} << (msb - sl_bits)) - 1, fl, sl);
    } else {
      mapping(units, fl, sl);
    }
    if (fl < fl_count) {
      std::uint32_t sl_map = sl_bitmap_[fl] & (~0u << sl);
      if (sl_map == 0) {
        const std::uint64_t fl_map = fl + 1 < 64 ? fl_bitmap_ & (~0ull << (fl + 1)) : 0;
        if (fl_map != 0) {
          fl = static_cast<unsigned>(std::countr_zero(fl_map));
          sl_map = sl_bitmap_[fl];
        }
      }
      if (sl_map != 0) return heads_[fl * sl_count + std::countr_zero(sl_map)];
    }
    mapping(units, fl, sl);  // a block of the request's own class may still be large enough
    int budget = 64;
    for (index i = heads_[fl * sl_count + sl]; i != npos && budget-- > 0; i = blocks_[i].next_free)
      if (blocks_[i].size() >= bytes) return i;
    return npos;
  }

  [[gnu::always_inline]] void link_free(index i) noexcept {
    unsigned fl, sl;
    mapping(blocks_[i].granules, fl, sl);
    const unsigned size_class = fl * sl_count + sl;
    index& head = heads_[size_class];
    blocks_[i].size_class = static_cast<std::uint16_t>(size_class);
    blocks_[i].prev_free = npos;
    blocks_[i].next_free = head;
    if (head != npos) blocks_[head].prev_free = i;
    head = i;
    fl_bitmap_ |= std::uint64_t{1} << fl;
    sl_bitmap_[fl] |= 1u << sl;
    free_bytes_ += blocks_[i].size();
  }

  [[gnu::always_inline]] void unlink_free(index i) noexcept {
    block& b = blocks_[i];
    if (b.prev_free != npos) {
      blocks_[b.prev_free].next_free = b.next_free;
    } else {
      const unsigned fl = b.size_class / sl_count, sl = b.size_class % sl_count;
      heads_[b.size_class] = b.next_free;
      if (b.next_free == npos) {
        sl_bitmap_[fl] &= ~(1u << sl);
        if (sl_bitmap_[fl] == 0) fl_bitmap_ &= ~(std::uint64_t{1} << fl);
      }
    }
    if (b.next_free != npos) blocks_[b.next_free].prev_free = b.prev_free;
    b.prev_free = b.next_free = npos;
    free_bytes_ -= b.size();
  }

  /// Ensures the host bookkeeping can take one more allocation (two new block records and a
  /// pointer-map entry) without allocating mid-operation, so allocate never half-happens.
  bool reserve_bookkeeping() noexcept {
    try {
      if (free_nodes_.size() < 2 && blocks_.capacity() < blocks_.size() + 2)
        blocks_.reserve(std::max<std::size_t>(64, 2 * blocks_.capacity()));
      pointers_.reserve(pointers_.size() + 1);
      if (free_chunk_slots_.empty() && chunks_.capacity() == chunks_.size())
        chunks_.reserve(std::max<std::size_t>(8, 2 * chunks_.capacity()));
      return true;
    } catch (...) {
      return false;
    }
  }

  [[gnu::always_inline]] index new_node() noexcept {  // capacity was reserved by reserve_bookkeeping
    if (!free_nodes_.empty()) {
      const index i = free_nodes_.back();
      free_nodes_.pop_back();
      blocks_[i] = block{};
      return i;
    }
    blocks_.emplace_back();
    return static_cast<index>(blocks_.size() - 1);
  }

  void release_node(index i) noexcept {
    // The free-node stack never outgrows blocks_, whose capacity it shares.
    if (free_nodes_.capacity() == free_nodes_.size()) {
      try {
        free_nodes_.reserve(std::max<std::size_t>(64, blocks_.capacity()));
      } catch (...) {
        return;  // the record is leaked, never reused: harmless
      }
    }
    free_nodes_.push_back(i);
  }

  /// Splits the unaligned front of free block i off as a free block; returns the aligned part.
  index split_front(index i, std::size_t align) noexcept {
    const std::uintptr_t aligned = detail::align_up(blocks_[i].address, align);
    const std::size_t front = aligned - blocks_[i].address;
    if (front == 0) return i;
    const index j = new_node();
    block& b = blocks_[i];
    block& a = blocks_[j];  // the aligned remainder
    a.address = aligned;
    a.set_size(b.size() - front);
    a.prev_phys = i;
    a.next_phys = b.next_phys;
    if (b.next_phys != npos) blocks_[b.next_phys].prev_phys = j;
    b.next_phys = j;
    b.set_size(front);
    link_free(i);
    return j;
  }

  /// Splits the tail of block i beyond `size` off as a free block when it is at least a granule.
  void split_back(index i, std::size_t size) noexcept {
    const std::size_t rest = blocks_[i].size() - size;
    if (rest == 0) return;
    const index j = new_node();
    block& b = blocks_[i];
    block& t = blocks_[j];
    t.address = b.address + size;
    t.set_size(rest);
    t.prev_phys = i;
    t.next_phys = b.next_phys;
    if (b.next_phys != npos) blocks_[b.next_phys].prev_phys = j;
    b.next_phys = j;
    b.set_size(size);
    link_free(j);
  }

  /// Starts loading the records a merge may touch (both physical neighbours, then their free-list
  /// neighbours) so the cache misses overlap instead of following one another.
  [[gnu::always_inline]] void prefetch_neighbours(index i) const noexcept {
    const block& b = blocks_[i];
    const index next = b.next_phys, prev = b.prev_phys;
    if (next != npos) __builtin_prefetch(&blocks_[next]);
    if (prev != npos) __builtin_prefetch(&blocks_[prev]);
    for (const index n : {next, prev}) {
      if (n == npos || !blocks_[n].is_free) continue;
      if (blocks_[n].prev_free != npos) __builtin_prefetch(&blocks_[blocks_[n].prev_free]);
      if (blocks_[n].next_free != npos) __builtin_prefetch(&blocks_[blocks_[n].next_free]);
    }
  }

  /// Merges free block i with free physical neighbours; returns the surviving record.
  index merge_with_neighbours(index i) noexcept {
    const index next = blocks_[i].next_phys;
    if (next != npos && blocks_[next].is_free) {
      unlink_free(next);
      blocks_[i].granules += blocks_[next].granules;
      blocks_[i].next_phys = blocks_[next].next_phys;
      if (blocks_[i].next_phys != npos) blocks_[blocks_[i].next_phys].prev_phys = i;
      release_node(next);
    }
    const index prev = blocks_[i].prev_phys;
    if (prev != npos && blocks_[prev].is_free) {
      unlink_free(prev);
      blocks_[prev].granules += blocks_[i].granules;
      blocks_[prev].next_phys = blocks_[i].next_phys;
      if (blocks_[prev].next_phys != npos) blocks_[blocks_[prev].next_phys].prev_phys = prev;
      release_node(i);
      return prev;
    }
    return i;
  }

  /// Bytes to ask the upstream for when `need` bytes do not fit.
  std::size_t chunk_bytes_for(std::size_t need) const noexcept {
    std::size_t bytes = options_.chunk_size;
    if (bytes == 0) {
      constexpr std::size_t min_chunk = std::size_t{1} << 20;
      constexpr std::size_t max_chunk = std::size_t{1} << 30;
      bytes = std::clamp(reserved_ / 16, min_chunk, max_chunk);
    }
    bytes = detail::align_up(std::max(bytes, need), granularity);
    return std::min({bytes, options_.max_size - reserved_, max_block_bytes});
  }

  /// Adds a chunk holding at least `need` bytes aligned to `align`; returns its free block.
  /// `size` is the request rounded to the granularity (enough when the chunk is aligned).
  index grow(std::size_t need, std::size_t align, std::size_t size) noexcept {
    if (size > options_.max_size - reserved_ || need > max_block_bytes) return npos;
    std::size_t bytes = chunk_bytes_for(need);
    if (bytes < size) return npos;
    void* p = detail::try_allocate(upstream_, bytes, align);
    if (p == nullptr && bytes > size) {  // the upstream may still have room for the request
      bytes = size;
      p = detail::try_allocate(upstream_, bytes, align);
    }
    if (p == nullptr) return npos;

    std::uint32_t c;
    if (!free_chunk_slots_.empty()) {
      c = free_chunk_slots_.back();
      free_chunk_slots_.pop_back();
    } else {
      chunks_.emplace_back();  // capacity reserved by reserve_bookkeeping
      c = static_cast<std::uint32_t>(chunks_.size() - 1);
    }
    const index i = new_node();
    block& b = blocks_[i];
    b.address = reinterpret_cast<std::uintptr_t>(p);
    b.set_size(bytes);
    chunks_[c] = chunk{b.address, bytes, align, i};
    reserved_ += bytes;
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    link_free(i);
    return i;
  }

  std::size_t largest_free_block() const noexcept {
    if (fl_bitmap_ == 0) return 0;
    const unsigned fl = 63u - static_cast<unsigned>(std::countl_zero(fl_bitmap_));
    const unsigned sl = 31u - static_cast<unsigned>(std::countl_zero(sl_bitmap_[fl]));
    std::size_t largest = 0;
    for (index i = heads_[fl * sl_count + sl]; i != npos; i = blocks_[i].next_free)
      largest = std::max(largest, blocks_[i].size());
    return largest;
  }

  [[gnu::cold]] static void report_size_mismatch(void* p, std::size_t bytes,
                                                 std::size_t requested) noexcept {
    detail::report_misuse(misuse_kind::size_mismatch, "pool_resource", p, bytes,
                          "size mismatch: block was allocated with " + std::to_string(requested) +
                              " bytes, freed with " + std::to_string(bytes));
  }

  /// Slow path of deallocate: says what an unknown pointer is before reporting it.
  [[gnu::cold]] void report_unknown(void* p, std::size_t bytes) const noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    for (const chunk& c : chunks_) {
      if (c.base == 0 || address < c.base || address >= c.base + c.size) continue;
      for (index i = c.first; i != npos; i = blocks_[i].next_phys) {
        const block& b = blocks_[i];
        if (address < b.address || address >= b.address + b.size()) continue;
        if (b.is_free) {
          detail::report_misuse(misuse_kind::double_free, "pool_resource", p, bytes,
                                "double free: " + std::to_string(bytes) +
                                    " bytes at a pointer that is already free");
        } else {
          detail::report_misuse(misuse_kind::unknown_pointer, "pool_resource", p, bytes,
                                "pointer into the middle of a live block (not one allocate "
                                "returned)");
        }
        return;
      }
    }
    detail::report_misuse(misuse_kind::unknown_pointer, "pool_resource", p, bytes,
                          "unknown pointer: not allocated from this pool");
  }

  Upstream upstream_;
  pool_options options_;
  std::vector<block> blocks_;
  std::vector<index> free_nodes_;
  std::vector<chunk> chunks_;
  std::vector<std::uint32_t> free_chunk_slots_;
  detail::pointer_map pointers_;  // address -> record, for allocated blocks only
  std::array<index, fl_count * sl_count> heads_{};
  std::array<std::uint32_t, fl_count> sl_bitmap_{};
  std::uint64_t fl_bitmap_ = 0;
  // block_bytes_in_use_ + free_bytes_ == reserved_;  bytes_in_use_ <= block_bytes_in_use_
  std::size_t block_bytes_in_use_ = 0;
  std::size_t free_bytes_ = 0;
  std::size_t reserved_ = 0;
  std::size_t bytes_in_use_ = 0;
  std::size_t peak_bytes_in_use_ = 0;
  std::size_t peak_reserved_ = 0;
  std::size_t allocations_ = 0;
};

template <resource Upstream>
bool pool_resource<Upstream>::is_valid() const {
  std::size_t used_bytes = 0, free_bytes = 0, used_blocks = 0, free_blocks = 0, reserved = 0;
  for (std::uint32_t c = 0; c < chunks_.size(); ++c) {
    const chunk& ch = chunks_[c];
    if (ch.base == 0) continue;
    reserved += ch.size;
    std::uintptr_t expect = ch.base;
    index prev = npos;
    bool prev_free = false;
    for (index i = ch.first; i != npos; i = blocks_[i].next_phys) {
      const block& b = blocks_[i];
      if (b.address != expect || b.prev_phys != prev || b.granules == 0) return false;
      if (b.is_free && prev_free) return false;  // free neighbours must have been merged
      if (b.is_free) {
        free_bytes += b.size();
        ++free_blocks;
        if (pointers_.find(b.address) != npos) return false;
      } else {
        used_bytes += b.size();
        ++used_blocks;
        if (pointers_.find(b.address) != i || b.slack >= granularity) return false;
      }
      prev_free = b.is_free;
      expect = b.address + b.size();
      prev = i;
    }
    if (expect != ch.base + ch.size) return false;
  }
  std::size_t listed = 0;
  for (unsigned fl = 0; fl < fl_count; ++fl) {
    for (unsigned sl = 0; sl < sl_count; ++sl) {
      const index head = heads_[fl * sl_count + sl];
      if (((sl_bitmap_[fl] >> sl) & 1u) != (head != npos)) return false;
      index prev = npos;
      for (index i = head; i != npos; i = blocks_[i].next_free) {
        unsigned f, s;
        mapping(blocks_[i].granules, f, s);
        if (!blocks_[i].is_free || f != fl || s != sl || blocks_[i].prev_free != prev ||
            blocks_[i].size_class != fl * sl_count + sl)
          return false;
        if (++listed > blocks_.size()) return false;  // a cycle
        prev = i;
      }
    }
    if (((fl_bitmap_ >> fl) & 1u) != (sl_bitmap_[fl] != 0)) return false;
  }
  return listed == free_blocks && used_blocks == allocations_ &&
         pointers_.size() == used_blocks && used_bytes == block_bytes_in_use_ &&
         free_bytes == free_bytes_ && reserved == reserved_ &&
         used_bytes + free_bytes == reserved_;
}

}  // namespace frugal

static_assert(frugal::resource_with<frugal::pool_resource<frugal::host_resource>,
                                    frugal::host_accessible>);
static_assert(!frugal::has_property_v<frugal::pool_resource<frugal::host_resource>,
                                      frugal::device_accessible>);
