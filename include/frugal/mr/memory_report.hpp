// frugal/mr/memory_report.hpp: a text table of where a resource's memory is — in use, reserved,
// peaks, the largest free block, fragmentation and, through a tracking adaptor, the top tags.
//   std::fputs(frugal::memory_report(tracker).c_str(), stderr);   // tracker over a pool: both
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/resource_stats.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal {

namespace detail {

template <class R>
inline constexpr bool is_tracking_adaptor_v = false;
template <class R>
inline constexpr bool is_tracking_adaptor_v<tracking_adaptor<R>> = true;

/// A resource memory_report reads directly: one with stats(), or a tracking adaptor.
template <class R>
concept report_target = has_stats<R> || is_tracking_adaptor_v<R>;

/// What memory_report can say something about: a report_target or a frugal::ref to one.
template <class R>
concept reportable = report_target<R> ||
    (is_ref_v<R>&& report_target<std::remove_cvref_t<decltype(std::declval<const R&>().get())>>);

inline std::string report_row(std::string_view label, std::string_view value,
                              std::string_view detail = {}) {
  char line[192];
  const int length =
      std::snprintf(line, sizeof line, "  %-26.*s %14.*s  %.*s", static_cast<int>(label.size()),
                    label.data(), static_cast<int>(value.size()), value.data(),
                    static_cast<int>(std::min<std::size_t>(detail.size(), 120)), detail.data());
  std::string text(line, static_cast<std::size_t>(std::clamp(length, 0, 191)));
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text + "\n";
}

inline std::string bytes_row(std::string_view label, std::size_t bytes) {
  return report_row(label, format_bytes(bytes), std::to_string(bytes) + " bytes");
}

/// The table of memory_report from its parts: the counters (when the resource has them) and the
/// tracked tags (when there is a tracker: `tags` non-null).
inline std::string format_memory_report(std::string_view title,
                                        const std::optional<resource_stats>& stats,
                                        const std::vector<tag_usage>* tags,
                                        std::size_t tracked_bytes, std::size_t tracked_count,
                                        std::size_t max_tags) {
  std::string text = title.empty() ? std::string("memory report\n")
                                   : "memory report: " + std::string(title) + "\n";
  if (stats) {
    const resource_stats& s = *stats;
    text += bytes_row("in use", s.bytes_in_use);
    text += bytes_row("peak in use", s.peak_bytes_in_use);
    text += bytes_row("reserved", s.bytes_reserved);
    text += bytes_row("peak reserved", s.peak_bytes_reserved);
    const std::size_t free_bytes =
        s.bytes_reserved > s.bytes_in_use ? s.bytes_reserved - s.bytes_in_use : 0;
    text += bytes_row("free (reserved - in use)", free_bytes);
    text += bytes_row("largest free block", s.largest_free_block);
    if (free_bytes > 0 && s.largest_free_block <= free_bytes) {
      char percent[32];
      std::snprintf(percent, sizeof percent, "%.1f%%",
                    100.0 * (1.0 - static_cast<double>(s.largest_free_block) /
                                       static_cast<double>(free_bytes)));
      text += report_row("fragmentation", percent, "1 - largest free block / free");
    } else {
      text += report_row("fragmentation", "n/a", "no free bytes");
    }
    text += report_row("live allocations", std::to_string(s.allocations));
  }
  if (tags != nullptr) {
    text += "outstanding through tracking_adaptor: " + std::to_string(tracked_count) +
            " allocation" + (tracked_count == 1 ? "" : "s") + ", " + std::to_string(tracked_bytes) +
            " bytes (" + format_bytes(tracked_bytes) + ")\n";
    if (!tags->empty()) {
      if (tags->size() <= max_tags) {
        text += tag_table(*tags);
      } else {
        std::vector<tag_usage> top(tags->begin(), tags->begin() + static_cast<long>(max_tags));
        tag_usage rest;
        rest.tag = "(" + std::to_string(tags->size() - max_tags) + " more tags)";
        rest.oldest = ~std::uint64_t{0};
        for (std::size_t i = max_tags; i < tags->size(); ++i) {
          rest.count += (*tags)[i].count;
          rest.bytes += (*tags)[i].bytes;
          rest.oldest = std::min(rest.oldest, (*tags)[i].oldest);
        }
        top.push_back(std::move(rest));
        text += tag_table(top);
      }
    }
  }
  return text;
}

}  // namespace detail

/// @brief A text table of `resource`'s memory, for logs and for the moment after an
/// out_of_memory:
///
///     memory report: kv pool
///       in use                          96.00 MiB  100663296 bytes
///       ...
///       fragmentation                       37.5%  1 - largest free block / free
///       live allocations                       12
///     outstanding through tracking_adaptor: 12 allocations, 100663296 bytes (96.00 MiB)
///     tag                         count           bytes          oldest
///     kv                              8        67108864 (64.00 MiB)       #3
///
/// Rows: bytes in use (as requested), its peak, bytes reserved, its peak, free bytes (reserved -
/// in use, so rounding slack counts as free), the largest free block, fragmentation (1 - largest
/// free block / free bytes; "n/a" without free bytes) and live allocations. For a
/// tracking_adaptor the counters are those of its upstream (looking through frugal::ref; left out
/// when the upstream has no stats()), followed by the outstanding allocations grouped by tag
/// (count, bytes, oldest sequence number), largest first.
/// @param resource any resource with stats(), a tracking_adaptor, or a frugal::ref to either
/// @param title names the resource in the first line; empty for none
/// @param max_tags tag rows shown at most; the rest are summed into one "(N more tags)" row
/// @returns the table, one row per line, each ending in '\n'
template <class R>
requires detail::reportable<R> std::string memory_report(const R& resource,
                                                         std::string_view title = {},
                                                         std::size_t max_tags = 10) {
  if constexpr (detail::is_tracking_adaptor_v<R>) {
    const std::vector<tag_usage> tags = resource.usage_by_tag();
    return detail::format_memory_report(title, detail::stats_of(resource.upstream()), &tags,
                                        resource.outstanding_bytes(), resource.outstanding_count(),
                                        max_tags);
  } else if constexpr (detail::has_stats<R>) {
    return detail::format_memory_report(title, resource_stats(resource.stats()), nullptr, 0, 0,
                                        max_tags);
  } else {
    return memory_report(resource.get(), title, max_tags);
  }
}

}  // namespace frugal
