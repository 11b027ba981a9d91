// frugal/mr/arena.hpp: bump allocation over chunks, released all at once: the step arena for a
// forward pass's intermediates.
//   frugal::arena_resource arena{frugal::host_resource{}};
//   auto m = arena.mark();  void* a = arena.allocate(4096);  /* ... */  arena.release(m);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace frugal {

/// @brief Growth policy of an arena_resource. The defaults grow without a cap.
struct arena_options {
  std::size_t initial_size = 0;  ///< bytes reserved at construction
  /// bytes asked of the upstream when the arena grows (at least the request); 0 doubles the
  /// capacity, starting at 1 MiB
  std::size_t chunk_size = 0;
  std::size_t max_size = std::numeric_limits<std::size_t>::max();  ///< cap on bytes reserved
};

/// @brief A point in an arena's history; release(marker) frees everything allocated after it.
struct arena_marker {
  std::uint32_t chunk = 0;
  std::size_t offset = 0;
  std::size_t bytes_before = 0;  ///< bytes consumed in the chunks before `chunk`
  std::size_t allocations = 0;
  std::uint64_t epoch = 0;  ///< reset() count when made; older markers are stale
};

/// @brief Bump allocator (see docs/concepts.md#resource). allocate is a pointer bump in the
/// current chunk, O(1). Individual frees are not tracked: deallocate of the most recent block
/// reclaims it, any other waits for release(marker) or reset(). Bookkeeping is off-band (a vector
/// of chunks on the host), so arenas work over device memory and unbacked reservations.
///
/// bytes_in_use counts bytes consumed (padding and not-yet-reclaimed frees included), which is
/// what the arena actually holds. Not thread safe.
template <resource Upstream>
class arena_resource : public detail::forward_properties<arena_resource<Upstream>, Upstream> {
 public:
  /// @throws invalid_argument if initial_size exceeds max_size
  /// @throws out_of_memory if the initial reservation fails
  explicit arena_resource(Upstream upstream, arena_options options = {})
      : upstream_(std::move(upstream)), options_(options) {
    FRUGAL_EXPECTS(options_.initial_size <= options_.max_size,
                   "arena_resource: initial_size exceeds max_size", invalid_argument);
    if (options_.initial_size > 0 && !add_chunk(options_.initial_size, default_alignment, 0))
      FRUGAL_OUT_OF_MEMORY(options_.initial_size, "the upstream refused the initial reservation",
                           "arena_resource");
  }

  arena_resource(const arena_resource&) = delete;
  arena_resource& operator=(const arena_resource&) = delete;

  ~arena_resource() {
    for (const chunk& c : chunks_) upstream_.deallocate(c.base, c.size, c.alignment);
  }

  /// @brief Bumps `bytes` aligned to `alignment` off the current chunk, growing when needed.
  /// @returns nullptr for zero bytes
  /// @throws invalid_argument for an alignment that is not a power of two (nothing changes)
  /// @throws out_of_memory when growth would pass max_size or the upstream refuses
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "arena_resource");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr) [[unlikely]]
      FRUGAL_OUT_OF_MEMORY(bytes, describe(stats()), "arena_resource");
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing. O(1) on the fast path: an
  /// align-up, a compare and an add.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (current_ < chunks_.size()) {
      const chunk& c = chunks_[current_];
      const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(c.base);
      const std::size_t start = detail::align_up(base + top_, alignment) - base;
      if (start <= c.size && bytes <= c.size - start && bytes != 0 && detail::is_pow2(alignment)) {
        top_ = start + bytes;
        ++allocations_;
        return static_cast<std::byte*>(c.base) + start;
      }
    }
    return allocate_slow(bytes, alignment);
  }

  /// @brief Reclaims the block if it is the most recent one; otherwise only counts the free.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    if (current_ < chunks_.size()) {
      std::byte* base = static_cast<std::byte*>(chunks_[current_].base);
      if (static_cast<std::byte*>(p) + bytes == base + top_ && static_cast<std::byte*>(p) >= base) {
        note_peak();
        top_ = static_cast<std::size_t>(static_cast<std::byte*>(p) - base);
      }
    }
    if (allocations_ > 0) --allocations_;
  }

  /// @brief The current position, for release().
  arena_marker mark() const noexcept {
    return arena_marker{current_, top_, bytes_before_, allocations_, epoch_};
  }

  /// @brief Frees everything allocated after `m` at once; the chunks stay for reuse.
  /// @throws invalid_argument if `m` is stale (made before a reset, or after the current
  /// position because a release already went past it); nothing changes then.
  void release(const arena_marker& m) {
    const bool behind = m.chunk < current_ || (m.chunk == current_ && m.offset <= top_);
    FRUGAL_EXPECTS(
        m.epoch == epoch_ && m.chunk < std::max<std::size_t>(chunks_.size(), 1) && behind,
        "arena_resource: release() with a stale marker", invalid_argument);
    note_peak();
    current_ = m.chunk;
    top_ = m.offset;
    bytes_before_ = m.bytes_before;
    allocations_ = m.allocations;
  }

  /// @brief Frees everything and keeps only the chunks needed to hold this cycle's high-water
  /// mark, returning the rest to the upstream. Outstanding markers become stale.
  void reset() noexcept {
    note_peak();
    const std::size_t needed = cycle_peak_;
    std::size_t kept = 0, capacity = 0;
    while (kept < chunks_.size() && capacity < needed) capacity += chunks_[kept++].size;
    for (std::size_t i = kept; i < chunks_.size(); ++i) {
      upstream_.deallocate(chunks_[i].base, chunks_[i].size, chunks_[i].alignment);
      reserved_ -= chunks_[i].size;
    }
    chunks_.resize(kept);
    current_ = 0;
    top_ = 0;
    bytes_before_ = 0;
    allocations_ = 0;
    cycle_peak_ = 0;
    ++epoch_;
  }

  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use();
    s.bytes_reserved = reserved_;
    s.peak_bytes_in_use = std::max(peak_in_use_, s.bytes_in_use);
    s.peak_bytes_reserved = peak_reserved_;
    s.allocations = allocations_;
    std::size_t largest = 0;
    if (current_ < chunks_.size()) largest = chunks_[current_].size - top_;
    for (std::size_t i = current_ + 1; i < chunks_.size(); ++i)
      largest = std::max(largest, chunks_[i].size);
    s.largest_free_block = largest;
    return s;
  }

  /// @brief Bytes consumed since the last reset (chunks before the current one count in full
  /// up to where they were left, padding included).
  std::size_t bytes_in_use() const noexcept { return bytes_before_ + top_; }
  /// @brief The most bytes in use since the last reset(): what a right-sized arena needs.
  std::size_t high_water_mark() const noexcept { return std::max(cycle_peak_, bytes_in_use()); }
  std::size_t num_chunks() const noexcept { return chunks_.size(); }

  const Upstream& upstream() const noexcept { return upstream_; }
  Upstream& upstream() noexcept { return upstream_; }

  friend bool operator==(const arena_resource& a, const arena_resource& b) noexcept {
    return &a == &b;
  }

 private:
  struct chunk {
    void* base;
    std::size_t size;
    std::size_t alignment;
  };

  /// bytes_in_use only falls in release, reclaiming deallocate and reset, so recording the peak
  /// there (and reading the live value in stats) tracks it without a branch on the fast path.
  void note_peak() noexcept {
    const std::size_t in_use = bytes_in_use();
    cycle_peak_ = std::max(cycle_peak_, in_use);
    peak_in_use_ = std::max(peak_in_use_, in_use);
  }

  /// Moves to the next kept chunk when the request fits there, else inserts a new chunk after
  /// the current one. O(1) amortised plus the upstream call when growing.
  void* allocate_slow(std::size_t bytes, std::size_t alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment) || !detail::fits_with_alignment(bytes, alignment))
      return nullptr;
    const std::size_t next = chunks_.empty() ? 0 : current_ + 1;
    const bool reuse = next < chunks_.size() && bytes <= chunks_[next].size &&
                       reinterpret_cast<std::uintptr_t>(chunks_[next].base) % alignment == 0;
    if (!reuse && !add_chunk(bytes, std::max(alignment, default_alignment), next)) return nullptr;
    bytes_before_ += top_;
    current_ = static_cast<std::uint32_t>(next);
    top_ = bytes;
    ++allocations_;
    return chunks_[current_].base;
  }

  /// Inserts a new chunk of at least `bytes` at position `at`.
  bool add_chunk(std::size_t bytes, std::size_t align, std::size_t at) noexcept {
    std::size_t size = options_.chunk_size != 0
                           ? options_.chunk_size
                           : std::max<std::size_t>(std::size_t{1} << 20, reserved_);
    size = std::max(size, bytes);
    if (bytes > options_.max_size - reserved_) return false;
    size = detail::align_up(std::min(size, options_.max_size - reserved_), default_alignment);
    size = std::min(size, options_.max_size - reserved_);
    if (size < bytes) return false;
    try {
      chunks_.reserve(chunks_.size() + 1);
    } catch (...) {
      return false;
    }
    void* p = detail::try_allocate(upstream_, size, align);
    if (p == nullptr && size > bytes) p = detail::try_allocate(upstream_, size = bytes, align);
    if (p == nullptr) return false;
    chunks_.insert(chunks_.begin() + static_cast<std::ptrdiff_t>(at), chunk{p, size, align});
    reserved_ += size;
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    return true;
  }

  Upstream upstream_;
  arena_options options_;
  std::vector<chunk> chunks_;  // chunks_[0..current_] hold this cycle's data; later ones wait
  std::uint32_t current_ = 0;
  std::size_t top_ = 0;           // bytes consumed in chunks_[current_]
  std::size_t bytes_before_ = 0;  // bytes consumed in chunks_[0..current_)
  std::size_t allocations_ = 0;
  std::size_t reserved_ = 0;
  std::size_t peak_reserved_ = 0;
  std::size_t peak_in_use_ = 0;
  std::size_t cycle_peak_ = 0;
  std::uint64_t epoch_ = 0;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::arena_resource<frugal::host_resource>, frugal::host_accessible>);
