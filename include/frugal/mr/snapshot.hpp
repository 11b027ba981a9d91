// frugal/mr/snapshot.hpp: a picture of a pool's memory — its segments and blocks (with tags from
// a tracking adaptor) and the tracker's timeline — written as JSON or as an SVG drawing.
//   auto snap = frugal::snapshot::capture(pool, tracker);
//   snap.write_json("memory.json");  snap.write_svg("memory.svg");   // open the SVG in a browser
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal {

namespace detail {
template <class R>
inline constexpr bool is_pool_v = false;
template <class U>
inline constexpr bool is_pool_v<pool_resource<U>> = true;

/// A pool_resource, or a frugal::ref to one: what snapshot::capture(tracker) can find a pool in.
template <class R>
concept pool_or_ref_to_pool = is_pool_v<R> ||
    (is_ref_v<R>&& is_pool_v<std::remove_cvref_t<decltype(std::declval<const R&>().get())>>);
}  // namespace detail

/// @brief One block of a snapshot segment: a pool block, used or free.
struct snapshot_block {
  std::size_t offset = 0;     ///< from the segment's base
  std::size_t size = 0;       ///< bytes the block spans (a multiple of the pool's granularity)
  std::size_t requested = 0;  ///< bytes asked for; 0 when free
  bool free = true;
  std::string tag;  ///< the tracker's tag of a used block; empty when untagged or free

  friend bool operator==(const snapshot_block&, const snapshot_block&) = default;
};

/// @brief One segment (a chunk the pool obtained from its upstream) and its blocks in address
/// order. Identity: the blocks tile the segment, so their sizes sum to `size`.
struct snapshot_segment {
  std::uintptr_t base = 0;  ///< the segment's address (only meaningful within the process)
  std::size_t size = 0;
  std::vector<snapshot_block> blocks;

  friend bool operator==(const snapshot_segment&, const snapshot_segment&) = default;
};

/// @brief A picture of a pool at one moment: its counters, every segment and block, and, when
/// captured with a tracking_adaptor, the tracker's timeline of allocations and frees. Plain data:
/// build one with capture(), or fill it by hand (tests, tools), then write it out.
///
/// The JSON schema (format "frugal.snapshot", version 1) is documented in docs/snapshots.md and
/// stays stable: fields may be added, none renamed or removed within a version.
struct snapshot {
  std::string title = "frugal memory snapshot";  ///< shown at the top of the SVG
  resource_stats stats;                          ///< the pool's stats() when captured
  std::vector<snapshot_segment> segments;        ///< in the order the pool obtained them
  std::vector<timeline_event> timeline;          ///< the tracker's events, oldest first
  std::size_t dropped_events = 0;                ///< events the tracker could not keep
  double captured_at = 0;  ///< seconds on the tracker's clock when captured; 0 without a tracker

  /// @brief Captures `pool`'s stats, segments and blocks (untagged). O(blocks).
  template <class U>
  static snapshot capture(const pool_resource<U>& pool) {
    snapshot s;
    s.stats = pool.stats();
    for (const pool_segment_info& info : pool.segments()) {
      snapshot_segment& segment = s.segments.emplace_back();
      segment.base = reinterpret_cast<std::uintptr_t>(info.base);
      segment.size = info.size;
      segment.blocks.reserve(info.blocks.size());
      for (const pool_block_info& b : info.blocks)
        segment.blocks.push_back(snapshot_block{b.offset, b.size, b.requested, b.free, {}});
    }
    return s;
  }

  /// @brief Captures `pool` with the tag of each used block taken from `tracker`'s records and
  /// the tracker's timeline. `tracker` must allocate from `pool` (directly, through frugal::ref or
  /// through other adaptors); blocks the tracker does not know stay untagged. O(blocks + events).
  template <class U, class R>
  static snapshot capture(const pool_resource<U>& pool, const tracking_adaptor<R>& tracker) {
    snapshot s = capture(pool);
    for (snapshot_segment& segment : s.segments) {
      for (snapshot_block& block : segment.blocks) {
        if (block.free) continue;
        const auto* record =
            tracker.find(reinterpret_cast<const void*>(segment.base + block.offset));
        if (record != nullptr) block.tag = record->tag;
      }
    }
    s.timeline = tracker.timeline();
    s.dropped_events = tracker.dropped_events();
    s.captured_at = tracker.elapsed_seconds();
    return s;
  }

  /// @brief Captures the pool a tracker wraps: `tracking_adaptor<pool_resource<U>>` or
  /// `tracking_adaptor<ref_t<pool_resource<U>>>`.
  template <detail::pool_or_ref_to_pool R>
  static snapshot capture(const tracking_adaptor<R>& tracker) {
    if constexpr (detail::is_ref_v<R>) {
      return capture(tracker.upstream().get(), tracker);
    } else {
      return capture(tracker.upstream(), tracker);
    }
  }

  /// @brief The snapshot as JSON (see docs/snapshots.md for the schema).
  /// @param indent spaces per level; negative for one line
  std::string to_json(int indent = 2) const;

  /// @brief Reads a snapshot written by to_json().
  /// @throws frugal::error if `json` is not JSON, or not a frugal.snapshot of version 1
  static snapshot from_json(std::string_view json);

  /// @brief A self-contained SVG: one bar per segment with its blocks drawn to scale (used blocks
  /// coloured by tag, with a legend; free blocks light grey), and, when there is a timeline, a
  /// chart of bytes reserved and in use over time. Every block is one `<rect class="block ...">`
  /// with a `<title>` (shown on hover) naming its tag, size, request and offset.
  std::string to_svg() const;

  /// @brief Writes to_json() to `path`. @throws frugal::error if the file cannot be written
  void write_json(const std::filesystem::path& path, int indent = 2) const;
  /// @brief Writes to_svg() to `path`. @throws frugal::error if the file cannot be written
  void write_svg(const std::filesystem::path& path) const;

  friend bool operator==(const snapshot&, const snapshot&) = default;
};

}  // namespace frugal
