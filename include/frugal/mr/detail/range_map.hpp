// frugal/mr/detail/range_map.hpp: first-fit allocation of ranges inside [0, capacity), counted in
// abstract units, with the free ranges in an ordered map that coalesces on release. Host-only
// bookkeeping (cuda_virtual_resource uses it over a reserved device address range).
//   frugal::detail::range_map map{1024};                 // 1024 free units
//   std::optional<std::size_t> at = map.allocate(10, 4);  // offset 0, a multiple of 4
//   map.release(*at, 10);                                 // free again, coalesced
#pragma once

#include <cstddef>
#include <iterator>
#include <map>
#include <optional>
#include <utility>

namespace frugal::detail {

/// @brief Free-range map over [0, capacity) units: first-fit allocate, coalescing release.
///
/// Only the free ranges are stored (offset -> length); the caller remembers what it allocated.
/// Invariants (checked by is_valid()): free ranges lie inside [0, capacity), are non-empty, and
/// neither overlap nor touch (touching ranges are always merged);
/// `free_units() == sum of free lengths`, so `allocated units + free_units() == capacity()`.
/// Every operation either succeeds or changes nothing. Not thread-safe.
class range_map {
 public:
  /// @brief A map whose whole range [0, capacity) is free.
  explicit range_map(std::size_t capacity = 0) : capacity_(capacity), free_units_(capacity) {
    if (capacity != 0) free_.emplace(0, capacity);
  }

  /// @brief The lowest offset, a multiple of `alignment`, where `length` free units start.
  /// O(number of free ranges). Changes nothing.
  /// @param alignment a power of two (in units); anything else finds nothing
  /// @returns the offset, or nullopt when no free range fits (or length is 0)
  std::optional<std::size_t> find_first_fit(std::size_t length,
                                            std::size_t alignment = 1) const noexcept {
    if (length == 0 || length > free_units_ || alignment == 0 || (alignment & (alignment - 1)) != 0)
      return std::nullopt;
    for (const auto& [offset, free_length] : free_) {
      const std::size_t padding = (alignment - offset % alignment) % alignment;
      if (padding <= free_length && length <= free_length - padding) return offset + padding;
    }
    return std::nullopt;
  }

  /// @brief Marks [offset, offset + length) allocated. It must lie inside one free range.
  /// @returns false (changing nothing) when the range is empty or not entirely free
  /// @throws std::bad_alloc only when a split needs a map node and the host heap is exhausted;
  ///         nothing has changed then
  bool take(std::size_t offset, std::size_t length) {
    auto range = containing_free_range(offset, length);
    if (range == free_.end()) return false;
    const std::size_t range_end = range->first + range->second;
    const std::size_t end = offset + length;
    // The tail node is inserted first: it is the only step that can throw.
    if (end < range_end) free_.emplace_hint(std::next(range), end, range_end - end);
    if (offset == range->first) {
      free_.erase(range);
    } else {
      range->second = offset - range->first;
    }
    free_units_ -= length;
    return true;
  }

  /// @brief find_first_fit, then take. O(number of free ranges).
  /// @returns the offset of the allocated range, or nullopt (nothing changed) when none fits
  /// @throws std::bad_alloc as take()
  std::optional<std::size_t> allocate(std::size_t length, std::size_t alignment = 1) {
    const auto offset = find_first_fit(length, alignment);
    if (offset) take(*offset, length);
    return offset;
  }

  /// @brief Returns [offset, offset + length) to the free ranges, merging with its neighbours.
  /// O(log number of free ranges).
  /// @returns false (changing nothing) when the range is empty, leaves [0, capacity), or
  ///          overlaps a free range (a double free or a wrong length)
  /// @throws std::bad_alloc only when the range touches no free neighbour and the host heap is
  ///         exhausted; nothing has changed then
  bool release(std::size_t offset, std::size_t length) {
    if (length == 0 || offset > capacity_ || length > capacity_ - offset) return false;
    const std::size_t end = offset + length;
    auto next = free_.lower_bound(offset);  // first free range starting at or after offset
    if (next != free_.end() && next->first < end) return false;
    auto prev = next == free_.begin() ? free_.end() : std::prev(next);
    if (prev != free_.end() && prev->first + prev->second > offset) return false;

    const bool joins_prev = prev != free_.end() && prev->first + prev->second == offset;
    const bool joins_next = next != free_.end() && next->first == end;
    if (joins_prev && joins_next) {
      prev->second += length + next->second;
      free_.erase(next);
    } else if (joins_prev) {
      prev->second += length;
    } else if (joins_next) {
      // Re-key the neighbour's node in place: no allocation, so nothing can throw.
      auto node = free_.extract(next);
      node.key() = offset;
      node.mapped() += length;
      free_.insert(std::move(node));
    } else {
      free_.emplace_hint(next, offset, length);
    }
    free_units_ += length;
    return true;
  }

  /// @brief True when every unit of [offset, offset + length) is free.
  bool is_free(std::size_t offset, std::size_t length) const noexcept {
    return containing_free_range(offset, length) != free_.end();
  }

  /// @brief The length of the largest free range. O(number of free ranges).
  std::size_t largest_free() const noexcept {
    std::size_t largest = 0;
    for (const auto& [offset, length] : free_) largest = length > largest ? length : largest;
    return largest;
  }

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t free_units() const noexcept { return free_units_; }
  std::size_t allocated_units() const noexcept { return capacity_ - free_units_; }

  /// @brief The free ranges, offset -> length, in increasing offset order.
  const std::map<std::size_t, std::size_t>& free_ranges() const noexcept { return free_; }

  /// @brief Walks the free ranges and checks every invariant in the class comment.
  bool is_valid() const noexcept {
    std::size_t total = 0;
    std::size_t previous_end = 0;
    bool first = true;
    for (const auto& [offset, length] : free_) {
      if (length == 0 || offset > capacity_ || length > capacity_ - offset) return false;
      if (!first && offset <= previous_end) return false;  // overlapping or touching
      previous_end = offset + length;
      total += length;
      first = false;
    }
    return total == free_units_ && free_units_ <= capacity_;
  }

 private:
  using map_type = std::map<std::size_t, std::size_t>;

  /// The free range that contains all of [offset, offset + length), or end().
  map_type::const_iterator containing_free_range(std::size_t offset,
                                                 std::size_t length) const noexcept {
    if (length == 0 || offset > capacity_ || length > capacity_ - offset) return free_.end();
    auto range = free_.upper_bound(offset);  // first free range starting after offset
    if (range == free_.begin()) return free_.end();
    --range;
    if (offset + length > range->first + range->second) return free_.end();
    return range;
  }
  map_type::iterator containing_free_range(std::size_t offset, std::size_t length) noexcept {
    const auto found = std::as_const(*this).containing_free_range(offset, length);
    return free_.erase(found, found);  // erasing nothing turns the const_iterator mutable
  }

  std::size_t capacity_;
  std::size_t free_units_;  // sum of the lengths in free_
  map_type free_;           // offset -> length of each free range
};

}  // namespace frugal::detail
