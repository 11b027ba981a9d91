// frugal/mr/failure_callback_adaptor.hpp: on out-of-memory, call back (evict, trim), retry once.
//   frugal::failure_callback_adaptor r{frugal::ref(pool), [&](std::size_t n) { return evict(n); }};
//   void* p = r.allocate(1 << 20);   // a failure calls evict(1 << 20), then retries if it said so
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace frugal {

/// @brief Wraps resource `R` (held by value; use frugal::ref to share one). When the upstream
/// fails to allocate (any std::bad_alloc, frugal::out_of_memory included), calls
/// `callback(bytes)`; if that returns true (it freed something), retries exactly once.
///
/// The callback runs on the allocating thread, inside the failed allocate: it may free memory to
/// the upstream but must not allocate through this adaptor. Properties are those of the upstream;
/// an adaptor compares equal only to itself. Thread safety is that of the upstream and callback.
/// See docs/concepts.md#resource.
template <resource R>
class failure_callback_adaptor : public detail::forward_properties<failure_callback_adaptor<R>, R> {
 public:
  /// @brief Called with the size of the failed request; returns true to have it retried once.
  using callback_type = std::function<bool(std::size_t bytes)>;

  /// @param upstream the resource that provides the memory; moved in
  /// @param callback called after an upstream failure; must not be empty
  /// @throws invalid_argument if `callback` is empty
  failure_callback_adaptor(R upstream, callback_type callback)
      : upstream_(std::move(upstream)), callback_(std::move(callback)) {
    FRUGAL_EXPECTS(static_cast<bool>(callback_), "failure_callback_adaptor: callback is empty",
                   invalid_argument);
  }

  failure_callback_adaptor(failure_callback_adaptor&&) = default;

  /// @brief Allocates from the upstream; on failure calls the callback and maybe retries once.
  /// @param bytes size requested; 0 returns nullptr without calling the upstream
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two (the callback is not called);
  /// the upstream's error if the callback returns false, or the retry's error if the retry fails
  /// too; whatever the callback throws.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "failure_callback_adaptor");
    if (bytes == 0) return nullptr;
    try {
      return upstream_.allocate(bytes, alignment);
    } catch (const std::bad_alloc&) {
      if (!callback_(bytes)) throw;
    }
    return upstream_.allocate(bytes, alignment);  // the one retry; its error propagates
  }

  /// @brief Like allocate, but returns nullptr instead of throwing. A callback that throws counts
  /// as one that returned false.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    if (void* p = detail::try_allocate(upstream_, bytes, alignment)) return p;
    bool retry = false;
    try {
      retry = callback_(bytes);
    } catch (...) {
      retry = false;
    }
    return retry ? detail::try_allocate(upstream_, bytes, alignment) : nullptr;
  }

  /// @brief Returns `p` to the upstream. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    upstream_.deallocate(p, bytes, alignment);
  }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor equals only itself.
  friend bool operator==(const failure_callback_adaptor& a,
                         const failure_callback_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  R upstream_;
  callback_type callback_;  // never empty (unless moved from)
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::failure_callback_adaptor<frugal::host_resource>,
                                    frugal::host_accessible>);
