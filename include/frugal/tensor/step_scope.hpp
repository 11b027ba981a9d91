// frugal/tensor/step_scope.hpp: every tensor made inside a step is released at once when the
// step ends (one arena release), and the step's peak is recorded so the arena can be sized.
//   for (const auto& b : batches) {
//     frugal::step_scope step{arena};  auto h = frugal::make_tensor<float>(step, b.tokens);
//   }
#pragma once

#include <frugal/mr/arena.hpp>
#include <frugal/tensor/tensor.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>

namespace frugal {

/// @brief A scope over an arena_resource (see docs/tensor.md#step-scope). Construction marks the
/// arena; destruction releases everything allocated through the scope since (tensors made from it
/// do not free individually). A step_scope is itself a resource that allocates from the arena, so
/// anything that takes a resource can allocate step-scoped memory. Scopes nest like the arena's
/// markers: an inner scope must end before its outer one.
template <class Arena>
class step_scope : public detail::forward_properties<step_scope<Arena>, Arena> {
 public:
  explicit step_scope(Arena& arena)
      : arena_(&arena), start_(arena.mark()), start_bytes_(arena.bytes_in_use()) {
#if FRUGAL_DEBUG_LEVEL >= 1
    alive_ = std::make_shared<bool>(true);
#endif
  }
  step_scope(const step_scope&) = delete;
  step_scope& operator=(const step_scope&) = delete;

  /// Releases the step's memory and records its peak in the arena's history.
  ~step_scope() {
    if (alive_) *alive_ = false;
    arena_->release(start_);
  }

  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    return arena_->allocate(bytes, alignment);
  }
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    return arena_->try_allocate(bytes, alignment);
  }
  /// Reclaims the block if it is the most recent one (as the arena does); the rest goes at the
  /// end of the scope.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    arena_->deallocate(p, bytes, alignment);
  }

  /// @brief Bytes the step holds now, counted from the scope's start.
  std::size_t bytes_in_use() const noexcept { return arena_->bytes_in_use() - start_bytes_; }
  /// @brief The arena's high-water mark since its last reset: what a right-sized arena needs.
  std::size_t high_water_mark() const noexcept { return arena_->high_water_mark(); }

  Arena& arena() const noexcept { return *arena_; }
  /// @brief Shared flag, true while the scope lives (debug builds; null otherwise).
  std::shared_ptr<const bool> liveness() const noexcept { return alive_; }

  friend bool operator==(const step_scope& a, const step_scope& b) noexcept { return &a == &b; }

 private:
  Arena* arena_;
  arena_marker start_;
  std::size_t start_bytes_;
  std::shared_ptr<bool> alive_;
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::step_scope<frugal::arena_resource<frugal::host_resource>>,
                          frugal::host_accessible>);
