// frugal/mr/stats_adaptor.hpp: counts bytes and allocations through any resource, live and peak.
//   frugal::stats_adaptor counted{frugal::ref(pool)};
//   void* p = counted.allocate(1 << 20);   // counted.stats().bytes_in_use == 1 << 20
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/detail/byte_counter.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace frugal {

/// @brief Wraps resource `R` (held by value; use frugal::ref to share one) and counts the bytes
/// and allocations that pass through it, live and at peak. Bytes are counted as requested.
///
/// Zero-byte requests return nullptr and are not counted. Not thread safe: wrap it in
/// frugal::synchronized (`synchronized<stats_adaptor<R>>`) to share it between threads.
/// Properties (host_accessible, device_accessible) are those of the upstream. An adaptor compares
/// equal only to itself. See docs/concepts.md#resource.
template <resource R>
class stats_adaptor : public detail::forward_properties<stats_adaptor<R>, R> {
 public:
  /// @param upstream the resource that provides the memory; moved in
  explicit stats_adaptor(R upstream) noexcept(std::is_nothrow_move_constructible_v<R>)
      : upstream_(std::move(upstream)) {}

  stats_adaptor(stats_adaptor&&) = default;  // copying would count live allocations twice

  /// @brief Allocates from the upstream and counts the allocation.
  /// @param bytes size requested; 0 returns nullptr and counts nothing
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two; whatever the upstream throws
  /// (out_of_memory). After a throw the counters are unchanged.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "stats_adaptor");
    if (bytes == 0) return nullptr;
    void* p = upstream_.allocate(bytes, alignment);
    if (p != nullptr) counter_.count(bytes);
    return p;
  }

  /// @brief Like allocate, but returns nullptr instead of throwing (counters unchanged then).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    void* p = detail::try_allocate(upstream_, bytes, alignment);
    if (p != nullptr) counter_.count(bytes);
    return p;
  }

  /// @brief Returns `p` to the upstream and uncounts it. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  /// Freeing more bytes or allocations than are live is misuse: it is reported through the misuse
  /// handler and nothing is passed upstream.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr || !counter_.uncount(p, bytes, "stats_adaptor")) return;
    upstream_.deallocate(p, bytes, alignment);
  }

  /// @brief The counters as resource_stats. An adaptor reserves nothing of its own, so
  /// bytes_reserved == bytes_in_use, peak_bytes_reserved == peak_bytes_in_use, and
  /// largest_free_block == 0.
  resource_stats stats() const noexcept { return counter_.stats(0); }

  /// @returns every successful allocation since construction, freed or not
  std::size_t total_allocations() const noexcept { return counter_.total_allocations; }

  /// @brief Starts a new peak from the current bytes in use, e.g. at the start of a step.
  void reset_peak() noexcept { counter_.peak_bytes_in_use = counter_.bytes_in_use; }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor holds its own counters, so it equals only itself.
  friend bool operator==(const stats_adaptor& a, const stats_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  R upstream_;
  detail::byte_counter counter_;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::stats_adaptor<frugal::host_resource>, frugal::host_accessible>);
