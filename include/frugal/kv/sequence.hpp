// frugal/kv/sequence.hpp: the move-only handle of one sequence in a kv::cache. Destroying it
// releases the sequence's pages (shared ones stay with their other holders).
//   frugal::kv::sequence seq = cache.add_sequence(prompt);   auto pages = seq.pages();
#pragma once

#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace frugal::kv {

class cache;

/// @brief A handle to one sequence of a cache (see docs/concepts.md#handle). Move-only; a
/// moved-from or released handle is empty, and using it with the cache is an error.
class sequence {
 public:
  sequence() = default;
  sequence(const sequence&) = delete;
  sequence& operator=(const sequence&) = delete;
  sequence(sequence&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)),
        slot_(other.slot_),
        generation_(other.generation_) {}
  sequence& operator=(sequence&& other) noexcept {
    if (this != &other) {
      release();
      owner_ = std::exchange(other.owner_, nullptr);
      slot_ = other.slot_;
      generation_ = other.generation_;
    }
    return *this;
  }
  ~sequence() { release(); }

  /// @brief Releases the sequence's pages now; the handle becomes empty. Idempotent.
  void release() noexcept;

  /// @brief The sequence's page ids in order (valid until the cache changes this sequence);
  /// empty while swapped out.
  std::span<const page_id> pages() const noexcept;
  std::size_t num_tokens() const noexcept;
  /// @brief Prompt tokens whose pages came from the prefix cache when the sequence was added.
  std::size_t cached_tokens() const noexcept;
  bool swapped_out() const noexcept;
  bool empty() const noexcept { return owner_ == nullptr; }
  const kv::cache* owner() const noexcept { return owner_; }

 private:
  friend class cache;
  sequence(cache* owner, std::uint32_t slot, std::uint32_t generation) noexcept
      : owner_(owner), slot_(slot), generation_(generation) {}

  cache* owner_ = nullptr;
  std::uint32_t slot_ = 0;
  std::uint32_t generation_ = 0;
};

}  // namespace frugal::kv
