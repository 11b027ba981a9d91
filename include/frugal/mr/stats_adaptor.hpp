// frugal/mr/stats_adaptor.hpp: counts bytes and allocations through any resource, live and peak.
//   frugal::stats_adaptor counted{frugal::ref(pool)};
//   void* p = counted.allocate(1 << 20);   // counted.stats().bytes_in_use == 1 << 20
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>

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
    if (p != nullptr) count_allocation(bytes);
    return p;
  }

  /// @brief Like allocate, but returns nullptr instead of throwing (counters unchanged then).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    void* p = detail::try_allocate(upstream_, bytes, alignment);
    if (p != nullptr) count_allocation(bytes);
    return p;
  }

  /// @brief Returns `p` to the upstream and uncounts it. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  /// Freeing more bytes or allocations than are live is misuse: it is reported through the misuse
  /// handler and nothing is passed upstream.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    if (bytes > bytes_in_use_ || allocations_ == 0) [[unlikely]] {
      detail::report_misuse(
          misuse_kind::other, "stats_adaptor", p, bytes,
          "deallocate of " + std::to_string(bytes) + " bytes, but only " +
              std::to_string(bytes_in_use_) + " bytes in " + std::to_string(allocations_) +
              " allocations are live: wrong size or a pointer not allocated here");
      return;
    }
    upstream_.deallocate(p, bytes, alignment);
    bytes_in_use_ -= bytes;
    --allocations_;
  }

  /// @brief The counters as resource_stats. An adaptor reserves nothing of its own, so
  /// bytes_reserved == bytes_in_use, peak_bytes_reserved == peak_bytes_in_use, and
  /// largest_free_block == 0.
  resource_stats stats() const noexcept {
    resource_stats s;
    s.bytes_in_use = bytes_in_use_;
    s.bytes_reserved = bytes_in_use_;
    s.peak_bytes_in_use = peak_bytes_in_use_;
    s.peak_bytes_reserved = peak_bytes_in_use_;
    s.largest_free_block = 0;
    s.allocations = allocations_;
    return s;
  }

  /// @returns every successful allocation since construction, freed or not
  std::size_t total_allocations() const noexcept { return total_allocations_; }

  /// @brief Starts a new peak from the current bytes in use, e.g. at the start of a step.
  void reset_peak() noexcept { peak_bytes_in_use_ = bytes_in_use_; }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor holds its own counters, so it equals only itself.
  friend bool operator==(const stats_adaptor& a, const stats_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  void count_allocation(std::size_t bytes) noexcept {
    bytes_in_use_ += bytes;
    peak_bytes_in_use_ = std::max(peak_bytes_in_use_, bytes_in_use_);
    ++allocations_;
    ++total_allocations_;
  }

  R upstream_;
  std::size_t bytes_in_use_ = 0;       // sum of the sizes of live allocations
  std::size_t peak_bytes_in_use_ = 0;  // bytes_in_use_ <= peak_bytes_in_use_
  std::size_t allocations_ = 0;        // live allocations; allocations_ <= total_allocations_
  std::size_t total_allocations_ = 0;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::stats_adaptor<frugal::host_resource>, frugal::host_accessible>);
