// frugal/mr/pool.hpp: a general-purpose coalescing pool over any upstream, O(1) allocate and free
// (two-level segregated fit), with every byte of bookkeeping kept off-band in host memory.
//   frugal::pool_resource pool{frugal::host_resource{}, {.chunk_size = 64 << 20}};
//   void* p = pool.allocate(1000);  pool.deallocate(p, 1000);
#pragma once

#include <frugal/detail/pointer_map.hpp>
#include <frugal/mr/concepts.hpp>
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
  /// Growth in place: when the upstream hands out the range that starts where the pool's newest
  /// segment ends (virtual_resource and cuda_virtual_resource reserve once and hand out ranges in
  /// address order), the segment grows by what its free tail lacks, rounded up to this. 0: the
  /// upstream's granularity() when it has one, else 2 MiB.
  std::size_t segment_granularity = 0;
  /// Where a snapshot of the pool (JSON and SVG, see docs/snapshots.md) is written when an
  /// allocate() fails, before the exception leaves; empty: the directory named by the
  /// environment variable FRUGAL_OOM_SNAPSHOT, read at the failure; neither: none.
  std::string oom_snapshot_dir{};
};

/// @brief One block of a pool segment, as pool_resource::segments() reports it.
struct pool_block_info {
  const void* address = nullptr;
  std::size_t offset = 0;     ///< from the segment's base
  std::size_t size = 0;       ///< bytes the block spans (a multiple of the granularity)
  std::size_t requested = 0;  ///< bytes asked for; 0 when free
  bool free = true;
};

/// @brief One segment (a contiguous range obtained from the upstream in one or more pieces) and
/// the blocks it is divided into, in address order: what a memory snapshot draws.
struct pool_segment_info {
  const void* base = nullptr;
  std::size_t size = 0;
  std::vector<pool_block_info> blocks;
};

namespace detail {
/// The OOM snapshots written on this thread and the path of the latest, without extension (a
/// tracking_adaptor over the pool rewrites it with tags and its timeline).
struct oom_snapshot_state {
  std::uint64_t written = 0;
  std::string last;
};
inline oom_snapshot_state& oom_snapshots() noexcept {
  thread_local oom_snapshot_state state;
  return state;
}
/// `option` when not empty, else $FRUGAL_OOM_SNAPSHOT, else empty (in libfrugal).
std::string oom_snapshot_directory(const std::string& option);
/// What a tracking_adaptor adds to an OOM snapshot (defined in tracking_adaptor.hpp).
struct oom_snapshot_extra;
/// Writes `prefix`.json and `prefix`.svg, or, with an empty prefix, a new
/// `directory`/frugal-oom-<pid>-<n> pair, and records it in oom_snapshots(). Never throws.
/// @returns the note for the error message: "; memory snapshot: <path>.json and .svg", or why
///          none was written
std::string write_oom_snapshot(const std::string& directory, const std::string& prefix,
                               const resource_stats& stats,
                               const std::vector<pool_segment_info>& segments,
                               const oom_snapshot_extra* extra = nullptr) noexcept;
}  // namespace detail

/// @brief General-purpose pool (see docs/concepts.md#resource). Memory comes from `Upstream` in
/// segments; blocks are 256-byte granules found by a two-level segregated fit (TLSF) search,
/// split on allocation and coalesced with free neighbours immediately on free. Bookkeeping (block
/// records, free lists, the pointer map) lives in host vectors, never in the managed memory, so
/// the pool runs over device memory and over address space that is not backed at all.
///
/// Growth: when the upstream hands out a range that starts where the newest segment ends (an
/// upstream that reserves address space once and hands it out in order: virtual_resource,
/// cuda_virtual_resource), the segment grows in place ("expandable segment"): it asks only for
/// what its free tail lacks, rounded up to segment_granularity, and blocks merge across the
/// pieces, so a large free block never strands. trim() gives the free tail back piece by piece.
/// Over other upstreams each growth is a chunk of its own (chunk_size, or 1/16 of what is reserved
/// and at least the request); before growing, fully free chunks too small for the request go back
/// to the upstream so that they are not counted twice.
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
      : upstream_(std::move(upstream)), options_(std::move(options)) {
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
      void* p =
          reserve_bookkeeping() ? detail::try_allocate(upstream_, bytes, granularity) : nullptr;
      if (p != nullptr && add_piece(p, bytes, granularity) == npos) {
        upstream_.deallocate(p, bytes, granularity);
        p = nullptr;
      }
      if (p == nullptr)
        FRUGAL_OUT_OF_MEMORY(bytes, "the upstream refused the initial reservation",
                             "pool_resource");
    }
  }

  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;

  /// Returns every segment to the upstream. Blocks still allocated become invalid.
  ~pool_resource() {
    for (const segment& g : segments_)
      for (const piece& pc : g.pieces)
        upstream_.deallocate(reinterpret_cast<void*>(pc.base), pc.size, pc.alignment);
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
      const std::string directory = detail::oom_snapshot_directory(options_.oom_snapshot_dir);
      if (!directory.empty()) {
        try {
          state += detail::write_oom_snapshot(directory, {}, stats(), segments());
        } catch (...) {  // no host memory for the picture: the error still leaves
        }
      }
      FRUGAL_OUT_OF_MEMORY(bytes, std::move(state), "pool_resource");
    }
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing (also for a bad alignment).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    return allocate_block(bytes, alignment, true);
  }

  /// @brief As try_allocate, but only from memory the pool holds already: never asks the
  /// upstream (stream_pool_resource tries this before taking other streams' free blocks).
  void* try_allocate_reserved(std::size_t bytes,
                              std::size_t alignment = default_alignment) noexcept {
    return allocate_block(bytes, alignment, false);
  }

  /// @brief Returns a block. Misuse (a pointer the pool did not hand out, a double free, a size
  /// other than the one allocated) is reported to the misuse handler and changes nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    index i = pointers_.take(address, address_of());
    if (i == npos) [[unlikely]] {
      report_unknown(p, bytes);
      return;
    }
    if (blocks_[i].requested() != bytes) [[unlikely]] {
      // Cannot allocate: the entry's slot was just freed.
      pointers_.insert(address, i, address_of());
      report_size_mismatch(p, bytes, blocks_[i].requested());
      return;
    }
    block_bytes_in_use_ -= blocks_[i].size();
    bytes_in_use_ -= bytes;
    --allocations_;
    blocks_[i].is_free = true;
    i = merge_with_neighbours(i);
    link_free(i);
    FRUGAL_ASSERT_EXPENSIVE(is_valid(), "pool_resource corrupted by deallocate");
  }

  /// @brief Returns to the upstream every piece of a segment that lies entirely in the segment's
  /// free tail (a fully free chunk is one such piece) while more than release_threshold bytes
  /// stay reserved, then lets an upstream with a trim() of its own (virtual_resource,
  /// cuda_virtual_resource) decommit what it got back. @returns the bytes the pool released.
  std::size_t trim() noexcept {
    const std::size_t released = release_free_tails(options_.release_threshold, false);
    if constexpr (requires(Upstream & u) { u.trim(); }) {
      try {
        (void)upstream_.trim();
      } catch (...) {  // a driver failure leaves the memory committed: nothing is lost
      }
    } else if constexpr (requires(Upstream & u) { u.get().trim(); }) {
      try {
        (void)upstream_.get().trim();
      } catch (...) {
      }
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

  /// @brief Every segment with its blocks, in the order the segments were started.
  /// O(blocks); allocates the returned vectors.
  std::vector<pool_segment_info> segments() const {
    std::vector<pool_segment_info> out;
    for (const segment& c : segments_) {
      if (c.base == 0) continue;
      pool_segment_info& segment = out.emplace_back();
      segment.base = reinterpret_cast<const void*>(c.base);
      segment.size = c.size;
      for (index i = c.first; !is_end(i); i = blocks_[i].next_phys) {
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
  static constexpr unsigned sl_bits = 5;  // 32 classes per power of two
  static constexpr unsigned sl_count = 1u << sl_bits;
  static constexpr unsigned fl_count = 33 - sl_bits;  // granule counts are 32-bit
  static constexpr unsigned granule_shift = 8;
  static constexpr unsigned keep_shift = 3;  // remainders under 1/8 of a block are not split off
  static_assert((std::size_t{1} << granule_shift) == granularity);

  /// One contiguous range of a segment. Physical neighbours link the blocks of a segment in
  /// address order (the last block's next_phys is end_mark(segment)); free blocks are also on the
  /// free list of their size class.
  struct block {  // 32 bytes: two records per cache line
    std::uintptr_t address = 0;
    std::uint32_t granules = 0;
    index prev_phys = npos, next_phys = npos;
    // Free-list links while free. While allocated, prev_free holds the granules kept beyond the
    // request (kept_granules: a remainder too small to split off, see split_back).
    index prev_free = npos, next_free = npos;
    std::uint16_t size_class = 0;  // fl * sl_count + sl, while on a free list
    std::uint8_t slack = 0;        // bytes short of the request's last granule, while allocated
    bool is_free = true;

    std::size_t size() const noexcept { return std::size_t{granules} << granule_shift; }
    index& kept_granules() noexcept { return prev_free; }
    index kept_granules() const noexcept { return prev_free; }
    std::size_t requested() const noexcept {
      return size() - (std::size_t{kept_granules()} << granule_shift) - slack;
    }
    void set_size(std::size_t bytes) noexcept {
      granules = static_cast<std::uint32_t>(bytes >> granule_shift);
    }
  };
  static_assert(sizeof(block) == 32);
  /// Blocks count granules in 32 bits: the largest block (and chunk) is just under 1 TiB.
  static constexpr std::size_t max_block_bytes = std::size_t{0xFFFFFFFFu} << granule_shift;
  /// One range obtained from the upstream in one call, given back in one call.
  struct piece {
    std::uintptr_t base = 0;
    std::size_t size = 0;
    std::size_t alignment = 0;
  };
  /// Contiguous pieces, in address order, and the blocks that divide them.
  struct segment {
    std::uintptr_t base = 0;  // 0: slot unused
    std::size_t size = 0;     // == sum of pieces[].size
    index first = npos, last = npos;
    std::vector<piece> pieces;
  };
  /// A next_phys with this bit set marks the end of segment (next_phys & ~end_bit); block indices
  /// stay below it (reserve_bookkeeping). npos has it too, so it never names a block.
  static constexpr index end_bit = 0x80000000u;
  static constexpr index no_segment = npos;
  static constexpr bool is_end(index next) noexcept { return (next & end_bit) != 0; }
  static constexpr index end_mark(std::uint32_t s) noexcept { return end_bit | s; }
  /// Makes block i the physical predecessor of `next` (a block or an end mark).
  [[gnu::always_inline]] void set_prev(index next, index i) noexcept {
    if (is_end(next)) {
      segments_[next & ~end_bit].last = i;
    } else {
      blocks_[next].prev_phys = i;
    }
  }

  /// try_allocate, growing from the upstream only when `may_grow`.
  [[gnu::always_inline]] void* allocate_block(std::size_t bytes, std::size_t alignment,
                                              bool may_grow) noexcept {
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
      if (!may_grow) return nullptr;
      i = grow(need, align, size);
      if (i == npos) return nullptr;
    }
    unlink_free(i);
    if (align > granularity) i = split_front(i, align);
    const std::uint32_t kept = split_back(i, size);

    block& b = blocks_[i];
    b.is_free = false;
    b.kept_granules() = kept;
    b.slack = static_cast<std::uint8_t>(size - bytes);
    pointers_.insert(b.address, i, address_of());
    block_bytes_in_use_ += b.size();
    bytes_in_use_ += bytes;
    ++allocations_;
    peak_bytes_in_use_ = std::max(peak_bytes_in_use_, bytes_in_use_);
    FRUGAL_ASSERT_EXPENSIVE(is_valid(), "pool_resource corrupted by allocate");
    return reinterpret_cast<void*>(b.address);
  }

  /// Size class of a block of `units` granules: exact below sl_count granules (fl 0), else
  /// fl = 1 + floor(log2(units)) - sl_bits and sl the next sl_bits bits. Branch free: block sizes
  /// are random, so a branch on the size would be mispredicted half the time.
  [[gnu::always_inline]] static void mapping(std::size_t units, unsigned& fl,
                                             unsigned& sl) noexcept {
    const unsigned msb = static_cast<unsigned>(std::bit_width(units | 1)) - 1;
    const unsigned shift = std::max(msb, sl_bits) - sl_bits;
    const unsigned large = units >= sl_count ? 1u : 0u;
    fl = shift + large;
    sl = static_cast<unsigned>(units >> shift) - large * sl_count;
  }

  /// A block holding at least `bytes`: one of the first four of the request's own class, else the
  /// first block of a class whose every member holds it (good fit), else one further along the
  /// request's own class (a bounded walk). O(1).
  index find_free(std::size_t bytes) const noexcept {
    if (bytes > max_block_bytes) return npos;
    const std::size_t units = bytes >> granule_shift;
    unsigned own_fl, own_sl;
    mapping(units, own_fl, own_sl);
    const unsigned own = own_fl * sl_count + own_sl;
    // The good fit comes from the bitmaps alone; its record starts loading now.
    const index good = good_fit(units);
    if (good != npos) prefetch_record(good);
    // Best fit first: the head of the request's own class when it holds the request (exact below
    // 32 granules), so that a block freed at one size serves the next request of that size
    // without splitting a larger one. Its size is cached beside the heads: no record is loaded.
    const index pick = static_cast<index>(select(head_granules_[own] >= units, heads_[own], good));
    if (pick != npos) [[likely]]
      return pick;
    int budget = 64;  // a block further along the request's own class may still be large enough
    for (index i = heads_[own]; i != npos && budget-- > 0; i = blocks_[i].next_free)
      if (blocks_[i].granules >= units) return i;
    return npos;
  }

  /// The head of the smallest non-empty class whose every block holds `units` granules, or npos.
  index good_fit(std::size_t units) const noexcept {
    unsigned fl, sl;
    if (units >= sl_count) {
      const unsigned msb = static_cast<unsigned>(std::bit_width(units)) - 1;
      mapping(units + (std::size_t{1} << (msb - sl_bits)) - 1, fl, sl);
    } else {
      mapping(units, fl, sl);
    }
    if (fl >= fl_count) return npos;
    std::uint32_t sl_map = sl_bitmap_[fl] & (~0u << sl);
    if (sl_map == 0) {
      const std::uint64_t fl_map = fl + 1 < 64 ? fl_bitmap_ & (~0ull << (fl + 1)) : 0;
      if (fl_map == 0) return npos;
      fl = static_cast<unsigned>(std::countr_zero(fl_map));
      sl_map = sl_bitmap_[fl];
    }
    return heads_[fl * sl_count + std::countr_zero(sl_map)];
  }

  /// The address record i would have, computed as an integer: an index that names no record
  /// (npos, an end mark) gives an address that is never dereferenced, only prefetched (which does
  /// not fault) or discarded by select().
  [[gnu::always_inline]] std::uintptr_t record_address(index i) const noexcept {
    return reinterpret_cast<std::uintptr_t>(blocks_.data()) + std::uintptr_t{i} * sizeof(block);
  }

  /// The pointer map's view of the records: the address record i starts at.
  struct record_address_of {
    const std::vector<block>* blocks;
    std::uint64_t operator()(index i) const noexcept { return (*blocks)[i].address; }
  };
  record_address_of address_of() const noexcept { return {&blocks_}; }

  /// Record i, or for npos a free record of no size that ends its list.
  [[gnu::always_inline]] const block& record_or_sentinel(index i) const noexcept {
    return *reinterpret_cast<const block*>(
        select(i != npos, record_address(i), reinterpret_cast<std::uintptr_t>(&sentinel_)));
  }

  /// Starts loading record i (any index, see record_address).
  [[gnu::always_inline]] void prefetch_record(index i) const noexcept {
    __builtin_prefetch(reinterpret_cast<const void*>(record_address(i)));
  }

  [[gnu::always_inline]] void link_free(index i) noexcept {
    unsigned fl, sl;
    mapping(blocks_[i].granules, fl, sl);
    const unsigned size_class = fl * sl_count + sl;
    index& head = heads_[size_class];
    blocks_[i].size_class = static_cast<std::uint16_t>(size_class);
    blocks_[i].prev_free = npos;
    blocks_[i].next_free = head;
    *prev_free_field(head) = i;
    head = i;
    head_granules_[size_class] = blocks_[i].granules;
    fl_bitmap_ |= std::uint64_t{1} << fl;
    sl_bitmap_[fl] |= 1u << sl;
  }

  /// Where the free-list link naming `i` as a predecessor lives: blocks_[i].prev_free, or a
  /// scratch word for npos. Free lists are short and block sizes random, so a branch on the
  /// list's end would be mispredicted often; a select and a store are cheaper.
  [[gnu::always_inline]] index* prev_free_field(index i) noexcept {
    return reinterpret_cast<index*>(select(i != npos,
                                           record_address(i) + offsetof(block, prev_free),
                                           reinterpret_cast<std::uintptr_t>(&scratch_link_)));
  }

  /// `yes ? a : b` without a branch (compilers turn the ternary into one when they cannot tell
  /// that both operands are cheap).
  [[gnu::always_inline]] static std::uintptr_t select(bool yes, std::uintptr_t a,
                                                      std::uintptr_t b) noexcept {
    const std::uintptr_t mask = std::uintptr_t{0} - std::uintptr_t{yes};
    return (a & mask) | (b & ~mask);
  }

  /// Takes free block i off its size class's list.
  [[gnu::always_inline]] void unlink_free(index i) noexcept {
    block& b = blocks_[i];
    const index prev = b.prev_free, next = b.next_free;
    const unsigned fl = b.size_class / sl_count, sl = b.size_class % sl_count;
    const std::uintptr_t prev_link = record_address(prev) + offsetof(block, next_free);
    const auto head = reinterpret_cast<std::uintptr_t>(&heads_[b.size_class]);
    *reinterpret_cast<index*>(select(prev != npos, prev_link, head)) = next;
    *prev_free_field(next) = prev;
    // A new head brings its size to the cache; an emptied class caches 0 (no request fits).
    std::uint32_t& cached = head_granules_[b.size_class];
    cached =
        static_cast<std::uint32_t>(select(prev == npos, record_or_sentinel(next).granules, cached));
    // The class's list is empty when i was both its head and its tail.
    const std::uint32_t emptied = (prev == npos) & (next == npos);
    sl_bitmap_[fl] &= ~(emptied << sl);
    fl_bitmap_ &= ~(std::uint64_t{sl_bitmap_[fl] == 0} << fl);
    b.prev_free = b.next_free = npos;
  }

  /// Ensures the host bookkeeping can take one more allocation (two new block records and a
  /// pointer-map entry) without allocating mid-operation, so allocate never half-happens.
  [[gnu::always_inline]] bool reserve_bookkeeping() noexcept {
    if ((free_nodes_.size() >= 3 || blocks_.capacity() - blocks_.size() >= 3) &&
        pointers_.has_room_for(1)) [[likely]]
      return true;
    return reserve_bookkeeping_slow();
  }

  [[gnu::cold]] bool reserve_bookkeeping_slow() noexcept {
    try {
      // Three records at most: a new segment or piece, the aligned front, the tail.
      if (free_nodes_.size() < 3 && blocks_.capacity() < blocks_.size() + 3) {
        if (blocks_.size() + 3 >= end_bit) return false;
        // Never past end_bit, so that spare capacity always means valid indices.
        blocks_.reserve(
            std::min<std::size_t>(end_bit, std::max<std::size_t>(64, 2 * blocks_.capacity())));
      }
      pointers_.reserve(pointers_.size() + 1);
      return true;
    } catch (...) {
      return false;
    }
  }

  [[gnu::always_inline]] index
  new_node() noexcept {  // capacity was reserved by reserve_bookkeeping
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
    set_prev(b.next_phys, j);
    b.next_phys = j;
    b.set_size(front);
    link_free(i);
    return j;
  }

  /// Splits the tail of block i beyond `size` off as a free block when it is at least a granule.
  /// Returns the granules kept: a remainder under 1/2^keep_shift of the block stays with it
  /// (except at the end of a segment, where growth extends it), so that a block that nearly fits
  /// is taken whole. On random sizes that spares most splits and the merges that would follow;
  /// the waste is bounded by that fraction of the block, and it returns with the block.
  std::uint32_t split_back(index i, std::size_t size) noexcept {
    const std::size_t rest = blocks_[i].size() - size;
    if (rest == 0) return 0;
    if (rest < (blocks_[i].size() >> keep_shift) && !is_end(blocks_[i].next_phys))
      return static_cast<std::uint32_t>(rest >> granule_shift);
    const index j = new_node();
    block& b = blocks_[i];
    block& t = blocks_[j];
    t.address = b.address + size;
    t.set_size(rest);
    t.prev_phys = i;
    t.next_phys = b.next_phys;
    set_prev(b.next_phys, j);
    b.next_phys = j;
    b.set_size(size);
    link_free(j);
    return 0;
  }

  /// Merges free block i with free physical neighbours; returns the surviving record.
  index merge_with_neighbours(index i) noexcept {
    const index next = blocks_[i].next_phys;
    if (!is_end(next) && blocks_[next].is_free) {
      unlink_free(next);
      blocks_[i].granules += blocks_[next].granules;
      blocks_[i].next_phys = blocks_[next].next_phys;
      set_prev(blocks_[i].next_phys, i);
      release_node(next);
    }
    const index prev = blocks_[i].prev_phys;
    if (prev != npos && blocks_[prev].is_free) {
      unlink_free(prev);
      blocks_[prev].granules += blocks_[i].granules;
      blocks_[prev].next_phys = blocks_[i].next_phys;
      set_prev(blocks_[prev].next_phys, prev);
      release_node(i);
      return prev;
    }
    return i;
  }

  /// The unit an expandable segment grows by: the option, else the upstream's commit granule.
  std::size_t growth_granularity() const noexcept {
    if (options_.segment_granularity != 0) return options_.segment_granularity;
    if constexpr (requires(const Upstream& u) {
                    { u.granularity() } -> std::convertible_to<std::size_t>;
                  }) {
      return std::max<std::size_t>(upstream_.granularity(), granularity);
    } else if constexpr (requires(const Upstream& u) {
                           { u.get().granularity() } -> std::convertible_to<std::size_t>;
                         }) {
      return std::max<std::size_t>(upstream_.get().granularity(), granularity);
    } else {
      return std::size_t{2} << 20;
    }
  }

  /// Bytes to ask the upstream for a new chunk when `need` bytes do not fit.
  std::size_t chunk_bytes_for(std::size_t need) const noexcept {
    std::size_t bytes = options_.chunk_size;
    if (bytes == 0) {
      constexpr std::size_t min_chunk = std::size_t{1} << 20;
      constexpr std::size_t max_chunk = std::size_t{1} << 30;
      // Whole commit granules, so that the next piece of an in-order upstream is adjacent.
      bytes = detail::align_up(std::max(std::clamp(reserved_ / 16, min_chunk, max_chunk), need),
                               growth_granularity());
    }
    bytes = detail::align_up(std::max(bytes, need), granularity);
    return std::min({bytes, options_.max_size - reserved_, max_block_bytes});
  }

  /// Makes room for a free block of at least `need` bytes (`size`: the request rounded to the
  /// granularity, enough when the block is aligned to `align`); returns that block, linked free.
  index grow(std::size_t need, std::size_t align, std::size_t size) noexcept {
    if (need > max_block_bytes) return npos;
    if (extends_ && growing_ != no_segment) {
      const index i = extend(need);
      if (i != npos) return i;
    }
    // Fully free segments other than the newest cannot hold the request (find_free failed):
    // they go back first, unless the request would fail anyway (a failure changes nothing).
    if (size > options_.max_size - reserved_ + whole_free_bytes()) return npos;
    if (release_free_tails(options_.release_threshold, true) > 0 && extends_ &&
        growing_ != no_segment) {
      const index i = extend(need);
      if (i != npos) return i;
    }
    if (size > options_.max_size - reserved_) return npos;
    std::size_t bytes = chunk_bytes_for(need);
    if (bytes < size) return npos;
    void* p = detail::try_allocate(upstream_, bytes, align);
    if (p == nullptr && bytes > size) {  // the upstream may still have room for the request
      bytes = size;
      p = detail::try_allocate(upstream_, bytes, align);
    }
    if (p == nullptr) return npos;
    const index i = add_piece(p, bytes, align);
    if (i == npos) upstream_.deallocate(p, bytes, align);
    return i;
  }

  /// Grows the newest segment by what its free tail lacks for `need` bytes. Returns its tail
  /// block, or npos when the upstream refused or put the piece elsewhere (then the piece is kept
  /// as a new segment if it holds `need`, else given back, and in-place growth is not tried
  /// again until a growth lands adjacent).
  index extend(std::size_t need) noexcept {
    const segment& g = segments_[growing_];
    const index tail = g.last;
    const std::size_t free_tail = blocks_[tail].is_free ? blocks_[tail].size() : 0;
    if (free_tail >= need) return tail;
    const std::size_t missing = need - free_tail;
    const std::size_t room = options_.max_size - reserved_;
    if (missing > room || need > max_block_bytes) return npos;
    std::size_t bytes = std::max(missing, options_.chunk_size);
    // With an explicit chunk_size the pieces are that size (a multiple of the upstream's granule
    // keeps them adjacent); otherwise whole granules of the upstream.
    if (options_.chunk_size == 0) bytes = detail::align_up(bytes, growth_granularity());
    bytes = std::min({bytes, room, max_block_bytes - free_tail});
    void* p = detail::try_allocate(upstream_, bytes, granularity);
    if (p == nullptr) return npos;
    if (reinterpret_cast<std::uintptr_t>(p) != g.base + g.size) {
      extends_ = false;
      if (bytes >= need) {
        const index i = add_piece(p, bytes, granularity);
        if (i != npos) return i;
      }
      upstream_.deallocate(p, bytes, granularity);
      return npos;
    }
    return add_piece(p, bytes, granularity);
  }

  /// Records a range obtained from the upstream: appended to the newest segment when it starts
  /// at that segment's end, else a segment of its own. Returns the free block now covering it
  /// (linked free), or npos when host memory for the records ran out (nothing changed).
  index add_piece(void* p, std::size_t bytes, std::size_t align) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    if (growing_ != no_segment) {
      segment& g = segments_[growing_];
      const index tail = g.last;
      const bool tail_free = blocks_[tail].is_free;
      if (address == g.base + g.size &&
          bytes <= max_block_bytes - (tail_free ? blocks_[tail].size() : 0)) {
        try {
          g.pieces.push_back(piece{address, bytes, align});
        } catch (...) {
          return npos;
        }
        g.size += bytes;
        reserved_ += bytes;
        peak_reserved_ = std::max(peak_reserved_, reserved_);
        extends_ = true;
        if (tail_free) {
          unlink_free(tail);
          blocks_[tail].granules += static_cast<std::uint32_t>(bytes >> granule_shift);
          link_free(tail);
          return tail;
        }
        const index j = new_node();
        block& b = blocks_[j];
        b.address = address;
        b.set_size(bytes);
        b.prev_phys = tail;
        b.next_phys = end_mark(growing_);
        blocks_[tail].next_phys = j;
        g.last = j;
        link_free(j);
        return j;
      }
    }
    std::uint32_t c;
    if (!free_segment_slots_.empty()) {
      c = free_segment_slots_.back();
    } else {
      c = static_cast<std::uint32_t>(segments_.size());
      if (c >= end_bit) return npos;
    }
    segment fresh;
    try {
      if (free_segment_slots_.empty() && segments_.capacity() == segments_.size())
        segments_.reserve(std::max<std::size_t>(8, 2 * segments_.capacity()));
      fresh.pieces.push_back(piece{address, bytes, align});
    } catch (...) {
      return npos;
    }
    if (!free_segment_slots_.empty()) {
      free_segment_slots_.pop_back();
    } else {
      segments_.emplace_back();  // capacity reserved by reserve_bookkeeping
    }
    const index i = new_node();
    block& b = blocks_[i];
    b.address = address;
    b.set_size(bytes);
    b.next_phys = end_mark(c);
    fresh.base = address;
    fresh.size = bytes;
    fresh.first = fresh.last = i;
    segments_[c] = std::move(fresh);
    growing_ = c;
    reserved_ += bytes;
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    link_free(i);
    return i;
  }

  /// Bytes of the fully free segments other than the newest (what release_free_tails(_, true)
  /// may give back). O(segments).
  std::size_t whole_free_bytes() const noexcept {
    std::size_t bytes = 0;
    for (std::uint32_t c = 0; c < segments_.size(); ++c) {
      const segment& g = segments_[c];
      if (g.base != 0 && c != growing_ && g.first == g.last && blocks_[g.first].is_free)
        bytes += g.size;
    }
    return bytes;
  }

  /// Gives back every piece lying entirely in a segment's free tail (only whole free segments
  /// when `whole_only`), newest piece first, while more than `keep` bytes stay reserved.
  std::size_t release_free_tails(std::size_t keep, bool whole_only) noexcept {
    std::size_t released = 0;
    for (std::uint32_t c = 0; c < segments_.size(); ++c) {
      while (segments_[c].base != 0) {
        segment& g = segments_[c];
        const index tail = g.last;
        block& t = blocks_[tail];
        const piece pc = g.pieces.back();
        if (!t.is_free || pc.base < t.address || reserved_ - pc.size < keep) break;
        const bool whole = g.pieces.size() == 1;
        if (whole_only && (g.first != g.last || c == growing_)) break;
        unlink_free(tail);
        upstream_.deallocate(reinterpret_cast<void*>(pc.base), pc.size, pc.alignment);
        reserved_ -= pc.size;
        released += pc.size;
        g.pieces.pop_back();
        g.size -= pc.size;
        if (whole) {
          release_node(tail);
          g = segment{};
          if (growing_ == c) growing_ = no_segment;
          try {
            free_segment_slots_.push_back(c);
          } catch (...) {  // the slot stays unused: harmless
          }
        } else if (t.address == pc.base) {
          const index prev = t.prev_phys;  // allocated: free neighbours are always merged
          blocks_[prev].next_phys = end_mark(c);
          g.last = prev;
          release_node(tail);
        } else {
          t.set_size(t.size() - pc.size);
          link_free(tail);
        }
      }
    }
    return released;
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
    for (const segment& c : segments_) {
      if (c.base == 0 || address < c.base || address >= c.base + c.size) continue;
      for (index i = c.first; !is_end(i); i = blocks_[i].next_phys) {
        const block& b = blocks_[i];
        if (address < b.address || address >= b.address + b.size()) continue;
        if (b.is_free) {
          detail::report_misuse(
              misuse_kind::double_free, "pool_resource", p, bytes,
              "double free: " + std::to_string(bytes) + " bytes at a pointer that is already free");
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
  std::vector<segment> segments_;
  std::vector<std::uint32_t> free_segment_slots_;
  std::uint32_t growing_ = no_segment;  // the newest segment: where growth in place is tried
  /// Whether the upstream is expected to hand out the range after growing_ (true until a piece
  /// lands elsewhere; set again whenever one lands adjacent).
  bool extends_ = true;
  detail::pointer_map pointers_{3};  // address -> record, for allocated blocks only
  std::array<index, fl_count * sl_count> heads_{};
  std::array<std::uint32_t, fl_count * sl_count>
      head_granules_{};  // granules of each head; 0: none
  std::array<std::uint32_t, fl_count> sl_bitmap_{};
  std::uint64_t fl_bitmap_ = 0;
  index scratch_link_ = npos;  // prev_free_field(npos): written, never read
  block sentinel_{};           // record_or_sentinel(npos): granules 0, next_free npos
  // block_bytes_in_use_ + free blocks' bytes == reserved_; bytes_in_use_ <= block_bytes_in_use_
  std::size_t block_bytes_in_use_ = 0;
  std::size_t reserved_ = 0;
  std::size_t bytes_in_use_ = 0;
  std::size_t peak_bytes_in_use_ = 0;
  std::size_t peak_reserved_ = 0;
  std::size_t allocations_ = 0;
};

template <resource Upstream>
bool pool_resource<Upstream>::is_valid() const {
  std::size_t used_bytes = 0, free_bytes = 0, used_blocks = 0, free_blocks = 0, reserved = 0;
  for (std::uint32_t c = 0; c < segments_.size(); ++c) {
    const segment& ch = segments_[c];
    if (ch.base == 0) continue;
    reserved += ch.size;
    if (ch.pieces.empty() || ch.pieces.front().base != ch.base) return false;
    std::uintptr_t piece_end = ch.base;
    for (const piece& pc : ch.pieces) {
      if (pc.base != piece_end || pc.size == 0) return false;
      piece_end += pc.size;
    }
    if (piece_end != ch.base + ch.size) return false;
    std::uintptr_t expect = ch.base;
    index prev = npos;
    bool prev_free = false;
    index i = ch.first;
    for (; !is_end(i); i = blocks_[i].next_phys) {
      const block& b = blocks_[i];
      if (b.address != expect || b.prev_phys != prev || b.granules == 0) return false;
      if (b.is_free && prev_free) return false;  // free neighbours must have been merged
      if (b.is_free) {
        free_bytes += b.size();
        ++free_blocks;
        if (pointers_.find(b.address, address_of()) != npos) return false;
      } else {
        used_bytes += b.size();
        ++used_blocks;
        if (pointers_.find(b.address, address_of()) != i || b.slack >= granularity) return false;
        const index kept = b.kept_granules();  // under 1/2^keep_shift of the block
        if (kept != 0 && (std::uint64_t{kept} << keep_shift) >= b.granules) return false;
      }
      prev_free = b.is_free;
      expect = b.address + b.size();
      prev = i;
    }
    if (i != end_mark(c) || ch.last != prev || expect != ch.base + ch.size) return false;
  }
  std::size_t listed = 0;
  for (unsigned fl = 0; fl < fl_count; ++fl) {
    for (unsigned sl = 0; sl < sl_count; ++sl) {
      const index head = heads_[fl * sl_count + sl];
      if (((sl_bitmap_[fl] >> sl) & 1u) != (head != npos)) return false;
      if (head_granules_[fl * sl_count + sl] != (head == npos ? 0 : blocks_[head].granules))
        return false;
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
  return listed == free_blocks && used_blocks == allocations_ && pointers_.size() == used_blocks &&
         used_bytes == block_bytes_in_use_ && reserved == reserved_ &&
         used_bytes + free_bytes == reserved_;
}

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::pool_resource<frugal::host_resource>, frugal::host_accessible>);
static_assert(!frugal::has_property_v<frugal::pool_resource<frugal::host_resource>,
                                      frugal::device_accessible>);
