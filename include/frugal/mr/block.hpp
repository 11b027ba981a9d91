// frugal/mr/block.hpp: fixed-size blocks ("pages") carved from contiguous slabs, each addressed
// by a 32-bit id as well as a pointer: the substrate of the paged KV cache.
//   frugal::block_resource pages{frugal::host_resource{}, 64 << 10, {.initial_blocks = 1024}};
//   auto id = pages.allocate_id();  void* p = pages.address_of(id);  pages.deallocate_id(id);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace frugal {

/// @brief Capacity policy of a block_resource. Fixed capacity: initial_blocks == max_blocks.
struct block_options {
  std::size_t alignment = default_alignment;  ///< alignment of every block (power of two)
  std::uint32_t initial_blocks = 0;           ///< blocks in the first slab, made at construction
  std::uint32_t blocks_per_slab = 0;          ///< blocks added per growth; 0: 64 or initial_blocks
  std::uint32_t max_blocks = std::numeric_limits<std::uint32_t>::max() - 1;  ///< capacity cap
};

/// @brief 32-bit id of one block of a block_resource.
using block_id = std::uint32_t;

/// @brief Fixed-size block allocator (see docs/concepts.md#page). Blocks are carved from slabs:
/// contiguous upstream allocations of many blocks, so a fixed-capacity resource is one contiguous
/// range (registerable once for RDMA). Ids run 0, 1, ... across slabs in creation order.
///
/// Costs: allocate_id and deallocate_id are O(1) (a stack pop/push and a bitmap bit);
/// address_of is O(1); id_of is O(1) with one slab and O(log slabs) otherwise. All bookkeeping
/// is off-band. Not thread safe.
template <resource Upstream>
class block_resource : public detail::forward_properties<block_resource<Upstream>, Upstream> {
 public:
  /// @param block_size bytes per block (> 0); blocks are spaced by block_size rounded up to
  ///        the alignment
  /// @throws invalid_argument for a zero block size, a bad alignment, or initial_blocks >
  ///         max_blocks
  /// @throws out_of_memory if the first slab cannot be allocated
  block_resource(Upstream upstream, std::size_t block_size, block_options options = {})
      : upstream_(std::move(upstream)), block_size_(block_size), options_(options) {
    FRUGAL_EXPECTS(block_size > 0, "block_resource: block_size must be positive", invalid_argument);
    detail::check_alignment(options_.alignment, "block_resource");
    FRUGAL_EXPECTS(options_.initial_blocks <= options_.max_blocks,
                   "block_resource: initial_blocks exceeds max_blocks", invalid_argument);
    FRUGAL_EXPECTS(options_.max_blocks < std::numeric_limits<block_id>::max(),
                   "block_resource: max_blocks must leave one id free as 'none'", invalid_argument);
    stride_ = detail::align_up(block_size, options_.alignment);
    first_slab_blocks_ = options_.initial_blocks;
    slab_blocks_ = options_.blocks_per_slab != 0  ? options_.blocks_per_slab
                   : options_.initial_blocks != 0 ? options_.initial_blocks
                                                  : 64;
    if (first_slab_blocks_ == 0) first_slab_blocks_ = slab_blocks_;
    if (options_.initial_blocks > 0 && !add_slab())
      FRUGAL_OUT_OF_MEMORY(static_cast<std::size_t>(options_.initial_blocks) * stride_,
                           "the upstream refused the first slab", "block_resource");
  }

  block_resource(const block_resource&) = delete;
  block_resource& operator=(const block_resource&) = delete;

  ~block_resource() {
    for (const slab_info& s : slabs_) upstream_.deallocate(s.base, s.bytes, options_.alignment);
  }

  // ---- ids ----------------------------------------------------------------------------------

  /// @brief One block's id, or nullopt when no block is free and the resource cannot grow.
  std::optional<block_id> try_allocate_id() noexcept {
    if (free_ids_.empty() && !add_slab()) return std::nullopt;
    const block_id id = free_ids_.back();
    free_ids_.pop_back();
    set_live(id, true);
    return id;
  }

  /// @brief One block's id. @throws out_of_memory when none is free and growth fails.
  block_id allocate_id() {
    if (auto id = try_allocate_id()) return *id;
    FRUGAL_OUT_OF_MEMORY(block_size_, describe(stats()), "block_resource");
  }

  /// @brief Fills `out` with out.size() block ids, all or nothing: on failure nothing changes
  /// (slabs added for the attempt are returned). @returns whether it succeeded.
  bool try_allocate_n(std::span<block_id> out) noexcept {
    const std::size_t slabs_before = slabs_.size();
    while (free_ids_.size() < out.size()) {
      if (!add_slab()) {
        while (slabs_.size() > slabs_before) remove_last_slab();
        return false;
      }
    }
    for (block_id& id : out) {
      id = free_ids_.back();
      free_ids_.pop_back();
      set_live(id, true);
    }
    return true;
  }

  /// @brief As try_allocate_n. @throws out_of_memory naming the bytes of all n blocks.
  void allocate_n(std::span<block_id> out) {
    if (!try_allocate_n(out))
      FRUGAL_OUT_OF_MEMORY(out.size() * block_size_,
                           std::to_string(out.size()) + " blocks of " + format_bytes(block_size_) +
                               " requested, " + std::to_string(num_free()) + " free; " +
                               describe(stats()),
                           "block_resource");
  }

  /// @brief Frees a block by id. An id out of range or already free goes to the misuse handler
  /// and changes nothing.
  void deallocate_id(block_id id) noexcept {
    if (id >= capacity()) [[unlikely]] {
      detail::report_misuse(misuse_kind::unknown_pointer, "block_resource", nullptr, block_size_,
                            "block id " + std::to_string(id) + " is out of range (capacity " +
                                std::to_string(capacity()) + ")");
      return;
    }
    if (!is_live(id)) [[unlikely]] {
      detail::report_misuse(misuse_kind::double_free, "block_resource", address_of(id), block_size_,
                            "double free of block " + std::to_string(id));
      return;
    }
    set_live(id, false);
    free_ids_.push_back(id);  // capacity reserved when the slab was added
  }

  /// @brief Frees every id in `ids` (each checked as in deallocate_id).
  void deallocate_n(std::span<const block_id> ids) noexcept {
    for (block_id id : ids) deallocate_id(id);
  }

  /// @brief The address of block `id`. O(1). Precondition: id < capacity().
  void* address_of(block_id id) const noexcept {
    FRUGAL_ASSERT(id < capacity(), "block_resource::address_of: id out of range");
    if (id < first_slab_blocks_) return static_cast<std::byte*>(slabs_[0].base) + id * stride_;
    const std::size_t rest = id - first_slab_blocks_;
    const std::size_t s = 1 + rest / slab_blocks_;
    return static_cast<std::byte*>(slabs_[s].base) + (rest % slab_blocks_) * stride_;
  }

  /// @brief The id of the block starting at `p`, or nullopt if `p` is not a block start of
  /// this resource. O(1) with one slab, O(log slabs) otherwise.
  std::optional<block_id> id_of(const void* p) const noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    auto it = std::upper_bound(by_address_.begin(), by_address_.end(), address,
                               [](std::uintptr_t a, const slab_ref& r) { return a < r.base; });
    if (it == by_address_.begin()) return std::nullopt;
    --it;
    const std::size_t offset = address - it->base;
    if (offset >= it->bytes || offset % stride_ != 0) return std::nullopt;
    return static_cast<block_id>(it->first_id + offset / stride_);
  }

  // ---- the resource concept ------------------------------------------------------------------

  /// @brief One block for a request of at most block_size bytes and at most the block alignment.
  /// @throws invalid_argument for a bad alignment, bytes > block_size or alignment > the
  /// block alignment; out_of_memory when no block is free and growth fails
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "block_resource");
    if (bytes == 0) return nullptr;
    FRUGAL_EXPECTS(alignment <= options_.alignment,
                   "block_resource: alignment " + std::to_string(alignment) +
                       " exceeds the block alignment " + std::to_string(options_.alignment),
                   invalid_argument);
    if (bytes > block_size_) {
      // An overflowing size is an out-of-memory like everywhere else; a merely large one is misuse.
      if (!detail::fits_with_alignment(bytes, alignment))
        FRUGAL_OUT_OF_MEMORY(bytes, describe(stats()), "block_resource");
      FRUGAL_FAIL("block_resource: " + std::to_string(bytes) + " bytes requested from blocks of " +
                      std::to_string(block_size_),
                  invalid_argument);
    }
    return address_of(allocate_id());
  }

  /// @brief As allocate, but nullptr on any failure.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || bytes > block_size_ || !detail::is_pow2(alignment) ||
        alignment > options_.alignment)
      return nullptr;
    auto id = try_allocate_id();
    return id ? address_of(*id) : nullptr;
  }

  /// @brief Frees the block at `p`. A pointer that is not a block start, a block already free,
  /// or bytes > block_size go to the misuse handler and change nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto id = id_of(p);
    if (!id) [[unlikely]] {
      detail::report_misuse(misuse_kind::unknown_pointer, "block_resource", p, bytes,
                            "unknown pointer: not the start of a block of this resource");
      return;
    }
    if (bytes > block_size_) [[unlikely]] {
      detail::report_misuse(misuse_kind::size_mismatch, "block_resource", p, bytes,
                            "size mismatch: " + std::to_string(bytes) +
                                " bytes freed into blocks of " + std::to_string(block_size_));
      return;
    }
    deallocate_id(*id);
  }

  // ---- state -------------------------------------------------------------------------------

  std::size_t block_size() const noexcept { return block_size_; }
  /// Distance between consecutive blocks of a slab (block_size rounded up to the alignment).
  std::size_t stride() const noexcept { return stride_; }
  std::size_t alignment() const noexcept { return options_.alignment; }
  /// Blocks that exist now (allocated or free).
  std::uint32_t capacity() const noexcept { return capacity_; }
  std::uint32_t num_free() const noexcept { return static_cast<std::uint32_t>(free_ids_.size()); }
  std::uint32_t num_allocated() const noexcept { return capacity_ - num_free(); }
  bool is_allocated(block_id id) const noexcept { return id < capacity_ && is_live(id); }
  std::size_t num_slabs() const noexcept { return slabs_.size(); }
  /// Base and size of slab `s`: a fixed-capacity resource is exactly one slab.
  std::span<std::byte> slab(std::size_t s) const noexcept {
    return {static_cast<std::byte*>(slabs_[s].base), slabs_[s].bytes};
  }

  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = std::size_t{num_allocated()} * stride_;
    s.bytes_reserved = reserved_;
    s.peak_bytes_in_use = std::max(peak_in_use_, s.bytes_in_use);
    s.peak_bytes_reserved = peak_reserved_;
    s.largest_free_block = free_ids_.empty() ? 0 : block_size_;
    s.allocations = num_allocated();
    return s;
  }

  /// @brief Host bytes of bookkeeping: the free stack, the live bitmap and the slab tables.
  std::size_t metadata_bytes() const noexcept {
    return free_ids_.capacity() * sizeof(block_id) + live_.capacity() * sizeof(std::uint64_t) +
           slabs_.capacity() * sizeof(slab_info) + by_address_.capacity() * sizeof(slab_ref);
  }

  /// @brief Checks that the free stack and the live bitmap agree (tests, debug builds).
  bool is_valid() const {
    std::vector<bool> seen(capacity_, false);
    for (block_id id : free_ids_) {
      if (id >= capacity_ || seen[id] || is_live(id)) return false;
      seen[id] = true;
    }
    std::size_t live = 0;
    for (block_id id = 0; id < capacity_; ++id) live += is_live(id);
    return live + free_ids_.size() == capacity_;
  }

  const Upstream& upstream() const noexcept { return upstream_; }
  friend bool operator==(const block_resource& a, const block_resource& b) noexcept {
    return &a == &b;
  }

 private:
  struct slab_info {
    void* base;
    std::size_t bytes;
  };
  struct slab_ref {  // slabs sorted by address, for id_of
    std::uintptr_t base;
    std::size_t bytes;
    block_id first_id;
  };

  bool is_live(block_id id) const noexcept { return (live_[id >> 6] >> (id & 63)) & 1u; }
  void set_live(block_id id, bool live) noexcept {
    if (live) {
      live_[id >> 6] |= std::uint64_t{1} << (id & 63);
      peak_in_use_ = std::max(peak_in_use_, std::size_t{num_allocated()} * stride_);
    } else {
      live_[id >> 6] &= ~(std::uint64_t{1} << (id & 63));
    }
  }

  /// Adds one slab (the first has first_slab_blocks_, later ones slab_blocks_). Host vectors
  /// are grown before the upstream call so a failure leaves everything as it was.
  bool add_slab() noexcept {
    const std::uint32_t blocks = slabs_.empty() ? first_slab_blocks_ : slab_blocks_;
    if (blocks == 0 || blocks > options_.max_blocks - capacity_) return false;
    const std::size_t bytes = std::size_t{blocks} * stride_;
    if (bytes / stride_ != blocks) return false;
    try {
      slabs_.reserve(slabs_.size() + 1);
      by_address_.reserve(by_address_.size() + 1);
      free_ids_.reserve(std::size_t{capacity_} + blocks);
      live_.resize((std::size_t{capacity_} + blocks + 63) / 64, 0);
    } catch (...) {
      return false;
    }
    void* p = detail::try_allocate(upstream_, bytes, options_.alignment);
    if (p == nullptr) return false;
    const block_id first = capacity_;
    slabs_.push_back(slab_info{p, bytes});
    const slab_ref ref{reinterpret_cast<std::uintptr_t>(p), bytes, first};
    by_address_.insert(
        std::upper_bound(by_address_.begin(), by_address_.end(), ref,
                         [](const slab_ref& a, const slab_ref& b) { return a.base < b.base; }),
        ref);
    for (std::uint32_t k = blocks; k-- > 0;) free_ids_.push_back(first + k);  // low ids first
    capacity_ += blocks;
    reserved_ += bytes;
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    return true;
  }

  /// Undoes the last add_slab; only valid while none of its blocks is allocated.
  void remove_last_slab() noexcept {
    const slab_info s = slabs_.back();
    const std::uint32_t blocks = slabs_.size() == 1 ? first_slab_blocks_ : slab_blocks_;
    const block_id first = capacity_ - blocks;
    std::erase_if(free_ids_, [&](block_id id) { return id >= first; });
    std::erase_if(by_address_, [&](const slab_ref& r) { return r.first_id == first; });
    slabs_.pop_back();
    capacity_ -= blocks;
    reserved_ -= s.bytes;
    upstream_.deallocate(s.base, s.bytes, options_.alignment);
  }

  Upstream upstream_;
  std::size_t block_size_;
  std::size_t stride_ = 0;
  block_options options_;
  std::uint32_t first_slab_blocks_ = 0;
  std::uint32_t slab_blocks_ = 0;
  std::uint32_t capacity_ = 0;  // num_allocated() + num_free() == capacity_
  std::vector<slab_info> slabs_;
  std::vector<slab_ref> by_address_;
  std::vector<block_id> free_ids_;  // a stack: the most recently freed block is reused first
  std::vector<std::uint64_t> live_;
  std::size_t reserved_ = 0;
  std::size_t peak_reserved_ = 0;
  std::size_t peak_in_use_ = 0;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::block_resource<frugal::host_resource>, frugal::host_accessible>);
