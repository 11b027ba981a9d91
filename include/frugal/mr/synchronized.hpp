// frugal/mr/synchronized.hpp: a mutex around every call of any resource, to share it by threads.
//   frugal::synchronized shared{frugal::stats_adaptor{frugal::host_resource{}}};
//   std::jthread worker([&] { shared.deallocate(shared.allocate(64), 64); });
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>

#include <cstddef>
#include <functional>
#include <mutex>
#include <type_traits>
#include <utility>

namespace frugal {

/// @brief Wraps resource `R` (held by value, or built in place) and holds one std::mutex around
/// every call into it: allocate, try_allocate, deallocate and, when `R` has it, stats(). Any
/// resource, including frugal's unsynchronized allocators and adaptors, can then be used from
/// several threads at once.
///
/// Not movable (it holds the mutex): build it in place, or share it with frugal::ref. Properties
/// are those of the upstream; an adaptor compares equal only to itself.
/// See docs/concepts.md#resource.
template <resource R>
class synchronized : public detail::forward_properties<synchronized<R>, R> {
 public:
  /// @param upstream the resource to protect; moved in
  explicit synchronized(R upstream) noexcept(std::is_nothrow_move_constructible_v<R>)
      : upstream_(std::move(upstream)) {}

  /// @brief Builds the upstream in place from `args`, for upstreams that cannot be moved.
  template <class... Args>
  requires std::is_constructible_v<R, Args&&...>
  explicit synchronized(std::in_place_t,
                        Args&&... args) noexcept(std::is_nothrow_constructible_v<R, Args&&...>)
      : upstream_(std::forward<Args>(args)...) {}

  synchronized(const synchronized&) = delete;
  synchronized& operator=(const synchronized&) = delete;

  /// @brief Allocates from the upstream under the lock.
  /// @param bytes size requested; 0 returns nullptr without calling the upstream
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two (checked before locking);
  /// whatever the upstream throws.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "synchronized");
    if (bytes == 0) return nullptr;
    std::lock_guard lock(mutex_);
    return upstream_.allocate(bytes, alignment);
  }

  /// @brief Like allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    std::lock_guard lock(mutex_);
    return detail::try_allocate(upstream_, bytes, alignment);
  }

  /// @brief Returns `p` to the upstream under the lock. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    upstream_.deallocate(p, bytes, alignment);
  }

  /// @brief The upstream's stats(), read under the lock (only when the upstream has stats()).
  auto stats() const requires requires(const R& r) { r.stats(); }
  {
    std::lock_guard lock(mutex_);
    return upstream_.stats();
  }

  /// @brief Calls `f(upstream)` under the lock and returns its result, for the upstream's other
  /// members: `shared.with_lock([](auto& tracker) { return tracker.report(); })`.
  template <class F>
  decltype(auto) with_lock(F&& f) {
    std::lock_guard lock(mutex_);
    return std::invoke(std::forward<F>(f), upstream_);
  }

  /// @brief Calls `f(upstream)` under the lock and returns its result (const version).
  template <class F>
  decltype(auto) with_lock(F&& f) const {
    std::lock_guard lock(mutex_);
    return std::invoke(std::forward<F>(f), upstream_);
  }

  /// @returns the wrapped resource, WITHOUT locking: for single-threaded phases (setup, teardown)
  /// only. Use with_lock while other threads may use the adaptor.
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource, without locking (see above)
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor equals only itself.
  friend bool operator==(const synchronized& a, const synchronized& b) noexcept { return &a == &b; }

 private:
  mutable std::mutex mutex_;  // guards every access to upstream_ after construction
  R upstream_;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::synchronized<frugal::host_resource>, frugal::host_accessible>);
