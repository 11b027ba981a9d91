// frugal/mr/limit_adaptor.hpp: a hard cap on the bytes any resource may hand out through it.
//   frugal::limit_adaptor capped{frugal::ref(gpu), std::size_t{8} << 30};   // at most 8 GiB
//   capped.allocate(std::size_t{9} << 30);   // throws frugal::out_of_memory, nothing changed
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

/// @brief Wraps resource `R` (held by value; use frugal::ref to share one) and refuses any
/// allocation that would take the bytes in use through it above a fixed limit.
///
/// Bytes are counted as requested (not rounded to the alignment, and not counting what the
/// upstream itself adds). Zero-byte requests return nullptr and are not counted. Not thread safe:
/// wrap it in frugal::synchronized to share it. Properties are those of the upstream; an adaptor
/// compares equal only to itself. See docs/concepts.md#resource.
template <resource R>
class limit_adaptor : public detail::forward_properties<limit_adaptor<R>, R> {
 public:
  /// @param upstream the resource that provides the memory; moved in
  /// @param limit the most bytes that may be in use through this adaptor at any time
  limit_adaptor(R upstream, std::size_t limit) noexcept(std::is_nothrow_move_constructible_v<R>)
      : upstream_(std::move(upstream)), limit_(limit) {}

  limit_adaptor(limit_adaptor&&) = default;  // copying would count live allocations twice

  /// @brief Allocates from the upstream if the result stays within the limit.
  /// @param bytes size requested; 0 returns nullptr and counts nothing
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two; out_of_memory if
  /// bytes in use + `bytes` would exceed the limit (what() reads "... could not allocate N bytes
  /// (...); in use X, reserved X, largest free block L, live allocations K, limit Y"); whatever the
  /// upstream throws. After a throw the adaptor is unchanged.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "limit_adaptor");
    if (bytes == 0) return nullptr;
    if (!fits(bytes)) FRUGAL_OUT_OF_MEMORY(bytes, describe_state(), "limit_adaptor");
    void* p = upstream_.allocate(bytes, alignment);
    if (p != nullptr) counter_.count(bytes);
    return p;
  }

  /// @brief Like allocate, but returns nullptr instead of throwing (nothing changed then).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment) || !fits(bytes)) return nullptr;
    void* p = detail::try_allocate(upstream_, bytes, alignment);
    if (p != nullptr) counter_.count(bytes);
    return p;
  }

  /// @brief Returns `p` to the upstream, making room under the limit. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  /// Freeing more bytes or allocations than are live is misuse: it is reported through the misuse
  /// handler and nothing is passed upstream.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr || !counter_.uncount(p, bytes, "limit_adaptor")) return;
    upstream_.deallocate(p, bytes, alignment);
  }

  /// @returns the bytes in use through this adaptor, as requested
  std::size_t bytes_in_use() const noexcept { return counter_.bytes_in_use; }
  /// @returns the cap given at construction
  std::size_t limit() const noexcept { return limit_; }

  /// @brief The counters as resource_stats: bytes_reserved == bytes_in_use (an adaptor reserves
  /// nothing of its own) and largest_free_block == limit - bytes_in_use (the largest request the
  /// cap still allows).
  resource_stats stats() const noexcept { return counter_.stats(limit_ - counter_.bytes_in_use); }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor holds its own count, so it equals only itself.
  friend bool operator==(const limit_adaptor& a, const limit_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  // bytes in use <= limit_, so the subtraction cannot wrap.
  bool fits(std::size_t bytes) const noexcept { return bytes <= limit_ - counter_.bytes_in_use; }

  std::string describe_state() const {
    return describe(stats()) + ", limit " + format_bytes(limit_);
  }

  R upstream_;
  std::size_t limit_;
  detail::byte_counter counter_;  // counter_.bytes_in_use <= limit_
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::limit_adaptor<frugal::host_resource>, frugal::host_accessible>);
