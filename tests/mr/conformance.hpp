// The shared conformance suite: every resource and adaptor joins it by adding one fixture to the
// list in fixtures.hpp. A fixture owns its resource as member `r` and says what to
// expect of it.
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace frugal::testing {

/// Default expectations; fixtures derive from this and override what differs.
struct fixture_defaults {
  static constexpr std::size_t max_bytes = std::size_t{1} << 30;  ///< largest size to try
  static constexpr std::size_t max_alignment = 4096;
  static constexpr bool stateless = false;           ///< two separate instances compare equal
  static constexpr bool host = true;                 ///< declares host_accessible
  static constexpr bool device = false;              ///< declares device_accessible
  static constexpr bool writable = true;             ///< the test may write into the memory
  static constexpr bool reclaims_every_free = true;  ///< bytes_in_use drops on every deallocate
};

/// stats() of resources that have it, nothing otherwise: failure atomicity compares these.
template <class R>
std::optional<resource_stats> stats_of(R& r) {
  if constexpr (requires { r.stats(); }) {
    return r.stats();
  } else {
    return std::nullopt;
  }
}

inline bool aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

}  // namespace frugal::testing
