// frugal/mr/virtual_resource.hpp: one large host address range reserved up front, committed in
// granules on demand and decommitted by trim(). With commit = false nothing is ever backed: an
// 80 GiB "GPU" on a small host, and proof that allocators never touch the memory they manage.
//   frugal::virtual_resource gpu{{.reserve_bytes = std::size_t{80} << 30, .commit = false}};
//   frugal::pool_resource pool{frugal::ref(gpu)};
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/range_map.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace frugal {

/// @brief Reservation and commit policy of a virtual_resource.
struct virtual_options {
  std::size_t reserve_bytes = std::size_t{1} << 40;  ///< address space reserved up front
  /// true: granules are backed (read/write) when first allocated; false: address space only,
  /// every access faults (PROT_NONE)
  bool commit = true;
  std::size_t granularity = vmm_granule;  ///< commit unit; a power of two >= the page
};

/// @brief Host virtual-memory upstream (see docs/concepts.md#upstream). Allocations are
/// granule-aligned ranges inside the reservation, placed first-fit; the bookkeeping (free ranges,
/// live ranges, committed granules) is host-side. Freed ranges stay committed until trim().
/// The device counterpart over cuMemMap is cuda_virtual_resource. Not thread safe.
class virtual_resource {
 public:
  /// @throws invalid_argument for a granularity that is not a power-of-two multiple of the page
  /// size, or a zero reservation
  /// @throws out_of_memory when the address space cannot be reserved
  explicit virtual_resource(virtual_options options = {}) : options_(options) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    FRUGAL_EXPECTS(detail::is_pow2(options_.granularity) && options_.granularity >= page,
                   "virtual_resource: granularity must be a power of two of at least a page",
                   invalid_argument);
    FRUGAL_EXPECTS(options_.reserve_bytes > 0, "virtual_resource: reserve_bytes must be positive",
                   invalid_argument);
    const std::size_t granules = options_.reserve_bytes / options_.granularity +
                                 (options_.reserve_bytes % options_.granularity != 0 ? 1 : 0);
    size_ = granules * options_.granularity;
    // Reserve extra address space so the base can be aligned to max_alignment: alignments up to
    // that are then alignments of granule offsets.
    const std::size_t base_alignment = std::max(options_.granularity, max_alignment);
    const std::size_t mapped = size_ + base_alignment;
    void* raw =
        ::mmap(nullptr, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
      FRUGAL_OUT_OF_MEMORY(mapped, std::string("mmap failed: ") + std::strerror(errno),
                           "virtual_resource");
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t base = detail::align_up(start, base_alignment);
    if (base > start) ::munmap(raw, base - start);
    const std::uintptr_t end = start + mapped;
    if (end > base + size_) ::munmap(reinterpret_cast<void*>(base + size_), end - (base + size_));
    base_ = reinterpret_cast<std::byte*>(base);
    ranges_ = detail::range_map(granules);
    committed_.assign(granules, false);
  }

  virtual_resource(const virtual_resource&) = delete;
  virtual_resource& operator=(const virtual_resource&) = delete;
  ~virtual_resource() { ::munmap(base_, size_); }

  /// Largest alignment honoured (the reservation's base is aligned to it).
  static constexpr std::size_t max_alignment = std::size_t{1} << 30;

  /// @brief A range of whole granules holding `bytes`, aligned to max(alignment, granularity),
  /// for alignments up to max_alignment. Committed first when commit is on.
  /// @throws invalid_argument for an alignment that is not a power of two
  /// @throws out_of_memory when no free range fits or committing fails (nothing changes)
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "virtual_resource");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr)
      FRUGAL_OUT_OF_MEMORY(bytes, describe(stats()) + ", address space " + format_bytes(size_),
                           "virtual_resource");
    return p;
  }

  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment) || alignment > max_alignment || bytes > size_)
      return nullptr;
    const std::size_t granules = granules_for(bytes);
    const std::size_t align = std::max<std::size_t>(1, alignment / options_.granularity);
    try {
      live_.reserve(live_.size() + 1);
      const auto offset = ranges_.find_first_fit(granules, align);
      if (!offset) return nullptr;
      if (options_.commit && !commit(*offset, granules)) return nullptr;
      ranges_.take(*offset, granules);
      live_.emplace(*offset, live_range{granules, bytes});
      bytes_in_use_ += bytes;
      return base_ + *offset * options_.granularity;
    } catch (...) {
      return nullptr;
    }
  }

  /// @brief Returns the range to the free space; it stays committed until trim(). A pointer this
  /// resource did not hand out, or a size other than the one allocated, goes to the misuse
  /// handler and changes nothing.
  void deallocate(void* p, std::size_t bytes,
                  [[maybe_unused]] std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const auto base = reinterpret_cast<std::uintptr_t>(base_);
    auto it = live_.end();
    if (address >= base && address < base + size_ && (address - base) % options_.granularity == 0)
      it = live_.find((address - base) / options_.granularity);
    if (it == live_.end()) {
      detail::report_misuse(misuse_kind::unknown_pointer, "virtual_resource", p, bytes,
                            "unknown pointer (or double free): no live range starts there");
      return;
    }
    if (it->second.bytes != bytes) {
      detail::report_misuse(misuse_kind::size_mismatch, "virtual_resource", p, bytes,
                            "size mismatch: allocated " + std::to_string(it->second.bytes) +
                                " bytes, freed with " + std::to_string(bytes));
      return;
    }
    ranges_.release(it->first, it->second.granules);
    bytes_in_use_ -= bytes;
    live_.erase(it);
  }

  /// @brief Decommits every committed granule that no live range covers (madvise DONTNEED,
  /// then PROT_NONE). @returns the bytes decommitted.
  std::size_t trim() noexcept {
    std::size_t released = 0;
    for (const auto& [offset, length] : ranges_.free_ranges()) {
      for (std::size_t g = offset; g < offset + length;) {
        if (!committed_[g]) {
          ++g;
          continue;
        }
        std::size_t end = g;
        while (end < offset + length && committed_[end]) committed_[end++] = false;
        void* p = base_ + g * options_.granularity;
        const std::size_t bytes = (end - g) * options_.granularity;
        ::madvise(p, bytes, MADV_DONTNEED);
        ::mprotect(p, bytes, PROT_NONE);
        committed_granules_ -= end - g;
        released += bytes;
        g = end;
      }
    }
    return released;
  }

  /// @brief bytes_reserved counts committed granules (commit on) or granules covered by live
  /// ranges (commit off).
  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use_;
    s.allocations = live_.size();
    // With commit on, every live granule is committed; with it off, none is.
    s.bytes_reserved =
        (options_.commit ? committed_granules_ : ranges_.allocated_units()) * options_.granularity;
    s.largest_free_block = ranges_.largest_free() * options_.granularity;
    s.peak_bytes_in_use = s.bytes_in_use;
    s.peak_bytes_reserved = s.bytes_reserved;
    return s;
  }

  std::size_t reserved_address_space() const noexcept { return size_; }
  std::size_t committed_bytes() const noexcept {
    return committed_granules_ * options_.granularity;
  }
  std::size_t granularity() const noexcept { return options_.granularity; }
  /// @brief True when `p` lies inside the reservation.
  bool contains(const void* p) const noexcept { return p >= base_ && p < base_ + size_; }
  const std::byte* base() const noexcept { return base_; }
  const virtual_options& options() const noexcept { return options_; }

  friend bool operator==(const virtual_resource& a, const virtual_resource& b) noexcept {
    return &a == &b;
  }
  friend constexpr void get_property(const virtual_resource&, host_accessible) noexcept {}

 private:
  struct live_range {
    std::size_t granules;
    std::size_t bytes;
  };

  std::size_t granules_for(std::size_t bytes) const noexcept {
    return bytes / options_.granularity + (bytes % options_.granularity != 0 ? 1 : 0);
  }

  /// Backs the granules of [offset, offset + granules) that are not backed yet; all or nothing.
  bool commit(std::size_t offset, std::size_t granules) noexcept {
    std::vector<std::pair<std::size_t, std::size_t>> done;  // runs committed by this call
    for (std::size_t g = offset; g < offset + granules;) {
      if (committed_[g]) {
        ++g;
        continue;
      }
      std::size_t end = g;
      while (end < offset + granules && !committed_[end]) ++end;
      void* p = base_ + g * options_.granularity;
      if (::mprotect(p, (end - g) * options_.granularity, PROT_READ | PROT_WRITE) != 0) {
        for (auto [from, to] : done)
          ::mprotect(base_ + from * options_.granularity, (to - from) * options_.granularity,
                     PROT_NONE);
        return false;
      }
      try {
        done.emplace_back(g, end);
      } catch (...) {
        ::mprotect(p, (end - g) * options_.granularity, PROT_NONE);
        for (auto [from, to] : done)
          ::mprotect(base_ + from * options_.granularity, (to - from) * options_.granularity,
                     PROT_NONE);
        return false;
      }
      g = end;
    }
    for (auto [from, to] : done) {
      for (std::size_t g = from; g < to; ++g) committed_[g] = true;
      committed_granules_ += to - from;
    }
    return true;
  }

  virtual_options options_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  detail::range_map ranges_;                          // free granules
  std::unordered_map<std::size_t, live_range> live_;  // first granule -> live range
  std::vector<bool> committed_;                       // per granule
  std::size_t committed_granules_ = 0;
  std::size_t bytes_in_use_ = 0;
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::virtual_resource, frugal::host_accessible>);
