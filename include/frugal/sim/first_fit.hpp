// frugal/sim/first_fit.hpp: a naive first-fit heap over one fixed range, the way a device heap
// without a caching pool behaves; the baseline that fragmentation studies compare frugal against.
//   frugal::virtual_resource gpu{{.reserve_bytes = std::size_t{80} << 30, .commit = false}};
//   frugal::sim::first_fit_device heap{frugal::ref(gpu), std::size_t{80} << 30};
//   void* p = heap.allocate(1 << 20);   // the lowest address where 1 MiB fits
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

namespace frugal::sim {

/// @brief A first-fit allocator over `capacity` bytes taken from `Upstream` once, at
/// construction (see docs/concepts.md#resource). Free space is one address-ordered list of
/// ranges with no size classes: allocate takes the lowest free range that fits (O(free ranges)),
/// deallocate returns the range and merges it with free neighbours at once (O(log free ranges)).
/// Sizes are rounded up to 256 bytes. Bookkeeping is off-band (host maps of offsets), so the
/// range may be device memory or address space that is not backed.
///
/// stats(): bytes_in_use counts bytes as requested; bytes_reserved is the end of the highest live
/// block (the part of the device the heap has spread over), peak_bytes_reserved its high-water
/// mark; largest_free_block is the largest request that fits now. failures() counts refused
/// requests. Not thread safe.
template <resource Upstream>
class first_fit_device
    : public frugal::detail::forward_properties<first_fit_device<Upstream>, Upstream> {
 public:
  static constexpr std::size_t granularity = 256;  ///< every block is a multiple of this

  /// @param upstream gives the whole range once (held by value; pass frugal::ref(r) to share r)
  /// @param capacity bytes in the range (rounded down to the granularity)
  /// @throws invalid_argument when capacity is below one granule
  /// @throws whatever the upstream throws when it cannot provide the range
  first_fit_device(Upstream upstream, std::size_t capacity)
      : upstream_(std::move(upstream)), capacity_(capacity / granularity * granularity) {
    FRUGAL_EXPECTS(capacity_ >= granularity, "first_fit_device: capacity below 256 bytes",
                   invalid_argument);
    base_ = static_cast<std::byte*>(upstream_.allocate(capacity_, granularity));
    free_.emplace(0, capacity_);
  }

  first_fit_device(const first_fit_device&) = delete;
  first_fit_device& operator=(const first_fit_device&) = delete;
  ~first_fit_device() { upstream_.deallocate(base_, capacity_, granularity); }

  /// @brief The lowest free range where `bytes` fit at `alignment`.
  /// @returns nullptr for zero bytes
  /// @throws invalid_argument for an alignment that is not a power of two (nothing changes)
  /// @throws out_of_memory naming in use, reserved and the largest free block (nothing changes
  ///   but failures())
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    frugal::detail::check_alignment(alignment, "first_fit_device");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr) FRUGAL_OUT_OF_MEMORY(bytes, describe(stats()), "first_fit_device");
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing (also for a bad alignment).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !frugal::detail::is_pow2(alignment)) return nullptr;
    if (bytes > capacity_) {
      ++failures_;
      return nullptr;
    }
    const std::size_t size = frugal::detail::align_up(bytes, granularity);
    const std::size_t align = std::max(alignment, granularity);
    try {
      live_.reserve(live_.size() + 1);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        const std::size_t start = frugal::detail::align_up(it->first, align);
        const std::size_t end = it->first + it->second;
        if (start > end || end - start < size) continue;
        take(it, start, size);
        live_.emplace(start, block{size, bytes});
        bytes_in_use_ += bytes;
        peak_in_use_ = std::max(peak_in_use_, bytes_in_use_);
        peak_reserved_ = std::max(peak_reserved_, reserved());
        return base_ + start;
      }
    } catch (...) {
      // The host bookkeeping could not grow: refused like a full heap, nothing changed.
    }
    ++failures_;
    return nullptr;
  }

  /// @brief Returns a block and merges it with free neighbours. A pointer this heap did not hand
  /// out, or a size other than the one allocated, goes to the misuse handler and changes nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const auto base = reinterpret_cast<std::uintptr_t>(base_);
    auto it = live_.end();
    if (address >= base && address < base + capacity_) it = live_.find(address - base);
    if (it == live_.end()) {
      frugal::detail::report_misuse(misuse_kind::unknown_pointer, "first_fit_device", p, bytes,
                                    "unknown pointer (or double free): no live block starts there");
      return;
    }
    if (it->second.requested != bytes) {
      frugal::detail::report_misuse(misuse_kind::size_mismatch, "first_fit_device", p, bytes,
                                    "size mismatch: allocated " +
                                        std::to_string(it->second.requested) +
                                        " bytes, freed with " + std::to_string(bytes));
      return;
    }
    std::size_t offset = it->first, size = it->second.size;
    bytes_in_use_ -= it->second.requested;
    live_.erase(it);
    // Merge with the free range after and the one before, if they touch.
    auto next = free_.lower_bound(offset);
    if (next != free_.end() && next->first == offset + size) {
      size += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += size;
        return;
      }
    }
    free_.emplace_hint(next, offset, size);
  }

  /// @brief Counters (see the class comment). largest_free_block walks the free list.
  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use_;
    s.bytes_reserved = reserved();
    s.peak_bytes_in_use = peak_in_use_;
    s.peak_bytes_reserved = peak_reserved_;
    s.allocations = live_.size();
    for (const auto& [offset, size] : free_)
      s.largest_free_block = std::max(s.largest_free_block, size);
    return s;
  }

  /// @brief The end of the highest live block: bytes of the range the heap spreads over. O(1).
  std::size_t reserved() const noexcept {
    if (free_.empty()) return capacity_;
    const auto& [offset, size] = *free_.rbegin();
    return offset + size == capacity_ ? offset : capacity_;
  }

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t failures() const noexcept { return failures_; }        ///< refused requests so far
  std::size_t free_ranges() const noexcept { return free_.size(); }  ///< length of the free list

  /// @brief Checks that free and live blocks tile the range without overlap, free neighbours are
  /// merged and the byte counts agree (tests).
  bool is_valid() const {
    std::map<std::size_t, std::pair<std::size_t, bool>> all;  // offset -> (size, free)
    for (const auto& [offset, size] : free_) all.emplace(offset, std::pair{size, true});
    std::size_t requested = 0;
    for (const auto& [offset, b] : live_) {
      if (!all.emplace(offset, std::pair{b.size, false}).second) return false;
      requested += b.requested;
    }
    if (requested != bytes_in_use_) return false;
    std::size_t at = 0;
    bool previous_free = false;
    for (const auto& [offset, entry] : all) {
      if (offset != at || entry.first == 0 || entry.first % granularity != 0) return false;
      if (previous_free && entry.second) return false;  // unmerged neighbours
      previous_free = entry.second;
      at = offset + entry.first;
    }
    return at == capacity_;
  }

  const Upstream& upstream() const noexcept { return upstream_; }

  /// @brief A heap equals only itself.
  friend bool operator==(const first_fit_device& a, const first_fit_device& b) noexcept {
    return &a == &b;
  }

 private:
  struct block {
    std::size_t size;       // bytes spanned (rounded to the granularity)
    std::size_t requested;  // bytes asked for
  };

  /// Carves [start, start + size) out of free range `it`; what is left before and after stays free.
  void take(std::map<std::size_t, std::size_t>::iterator it, std::size_t start, std::size_t size) {
    const std::size_t offset = it->first, end = it->first + it->second;
    if (start + size < end) free_.emplace_hint(std::next(it), start + size, end - (start + size));
    if (start > offset)
      it->second = start - offset;  // the aligned-away front stays a free range
    else
      free_.erase(it);
  }

  Upstream upstream_;
  std::size_t capacity_ = 0;
  std::byte* base_ = nullptr;
  std::map<std::size_t, std::size_t> free_;      // offset -> size; address order
  std::unordered_map<std::size_t, block> live_;  // offset -> block
  std::size_t bytes_in_use_ = 0;
  std::size_t peak_in_use_ = 0;
  std::size_t peak_reserved_ = 0;
  std::size_t failures_ = 0;
};

}  // namespace frugal::sim

static_assert(frugal::resource_with<frugal::sim::first_fit_device<frugal::host_resource>,
                                    frugal::host_accessible>);
