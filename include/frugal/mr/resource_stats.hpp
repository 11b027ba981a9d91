// frugal/mr/resource_stats.hpp: the counters every frugal allocator reports through stats(), and
// their one-line description for out-of-memory messages and reports.
//   const frugal::resource_stats s = pool.stats();   std::puts(frugal::describe(s).c_str());
#pragma once

#include <frugal/error.hpp>

#include <cstddef>
#include <string>

namespace frugal {

/// @brief Counters every frugal allocator reports through stats().
/// Identity: bytes_in_use <= bytes_reserved (pool: block bytes in use + free bytes == reserved).
struct resource_stats {
  std::size_t bytes_in_use = 0;    ///< bytes handed out and not yet returned, as requested
  std::size_t bytes_reserved = 0;  ///< bytes obtained from the upstream and not returned
  std::size_t peak_bytes_in_use = 0;
  std::size_t peak_bytes_reserved = 0;
  std::size_t largest_free_block = 0;  ///< the largest request that fits without growing
  std::size_t allocations = 0;         ///< live allocations

  friend bool operator==(const resource_stats&, const resource_stats&) = default;
};

/// @brief "in use X, reserved Y, largest free block Z" for out-of-memory messages and reports.
inline std::string describe(const resource_stats& s) {
  return "in use " + format_bytes(s.bytes_in_use) + ", reserved " + format_bytes(s.bytes_reserved) +
         ", largest free block " + format_bytes(s.largest_free_block) + ", live allocations " +
         std::to_string(s.allocations);
}

}  // namespace frugal
