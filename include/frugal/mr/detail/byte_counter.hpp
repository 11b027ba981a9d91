// frugal/mr/detail/byte_counter.hpp: the live/peak byte and allocation counts that stats_adaptor
// and limit_adaptor keep, with the over-free check both apply before passing a free upstream.
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <cstddef>
#include <string>

namespace frugal::detail {

/// Counts as requested. Identities: bytes_in_use <= peak_bytes_in_use;
/// allocations <= total_allocations.
struct byte_counter {
  std::size_t bytes_in_use = 0;
  std::size_t peak_bytes_in_use = 0;
  std::size_t allocations = 0;  // live
  std::size_t total_allocations = 0;

  void count(std::size_t bytes) noexcept {
    bytes_in_use += bytes;
    peak_bytes_in_use = std::max(peak_bytes_in_use, bytes_in_use);
    ++allocations;
    ++total_allocations;
  }

  /// Uncounts a free of `bytes`, or reports it as misuse (more than is live) and returns false,
  /// in which case the caller must not pass it upstream.
  bool uncount(const void* p, std::size_t bytes, const char* who) noexcept {
    if (bytes > bytes_in_use || allocations == 0) [[unlikely]] {
      report_misuse(misuse_kind::other, who, p, bytes,
                    "deallocate of " + std::to_string(bytes) + " bytes, but only " +
                        std::to_string(bytes_in_use) + " bytes in " + std::to_string(allocations) +
                        " allocations are live: wrong size or a pointer not allocated here");
      return false;
    }
    bytes_in_use -= bytes;
    --allocations;
    return true;
  }

  /// The counts as resource_stats of an adaptor, which reserves nothing of its own:
  /// bytes_reserved == bytes_in_use and peak_bytes_reserved == peak_bytes_in_use.
  resource_stats stats(std::size_t largest_free_block) const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use;
    s.bytes_reserved = bytes_in_use;
    s.peak_bytes_in_use = peak_bytes_in_use;
    s.peak_bytes_reserved = peak_bytes_in_use;
    s.largest_free_block = largest_free_block;
    s.allocations = allocations;
    return s;
  }
};

}  // namespace frugal::detail
