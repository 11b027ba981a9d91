// frugal/detail/pointer_map.hpp: an open-addressing hash map from block address to a 32-bit
// index, the O(1) "which block is this pointer" lookup behind pool_resource's deallocate.
//   frugal::detail::pointer_map map;  map.insert(address, 7);  auto i = map.find(address);
//   map.erase(address);
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace frugal::detail {

/// Linear probing with backward-shift deletion (no tombstones). The load factor stays at most
/// 1/2^sparseness: 1/2 by default (16-byte slots, 32 to 64 bytes a key); 1/4 where speed matters
/// more than host memory (pool_resource), as shorter probe runs keep find and erase predictable.
/// Key 0 marks an empty slot, so address 0 cannot be stored (no allocator hands it out).
class pointer_map {
 public:
  static constexpr std::uint32_t npos = 0xFFFFFFFFu;

  /// @param sparseness the table holds at most capacity / 2^sparseness keys (1 to 4)
  explicit pointer_map(unsigned sparseness = 1) : sparseness_(sparseness) { rehash(64); }

  std::size_t size() const noexcept { return size_; }
  /// Host bytes the table occupies.
  std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(entry); }

  /// O(1) expected. Returns the index stored for `key`, or npos.
  std::uint32_t find(std::uintptr_t key) const noexcept {
    for (std::size_t i = slot_of(key);; i = (i + 1) & mask_) {
      const entry& e = slots_[i];
      if (e.key == key) return e.value;
      if (e.key == 0) return npos;
    }
  }

  /// Inserts or overwrites. May allocate host memory when the table grows.
  void insert(std::uintptr_t key, std::uint32_t value) {
    if (((size_ + 1) << sparseness_) > slots_.size()) rehash(slots_.size() * 2);
    place(key, value);
  }

  /// Whether `count` more keys fit without rehashing.
  bool has_room_for(std::size_t count) const noexcept {
    return ((size_ + count) << sparseness_) <= slots_.size();
  }

  /// Host memory is reserved so that `count` keys fit without rehashing.
  void reserve(std::size_t count) {
    std::size_t capacity = slots_.size();
    while ((count << sparseness_) > capacity) capacity *= 2;
    if (capacity != slots_.size()) rehash(capacity);
  }

  /// Removes `key` if present; returns whether it was.
  bool erase(std::uintptr_t key) noexcept {
    std::size_t i = slot_of(key);
    while (slots_[i].key != key) {
      if (slots_[i].key == 0) return false;
      i = (i + 1) & mask_;
    }
    erase_slot(i);
    return true;
  }

  /// Removes `key` and returns its value, or npos (changing nothing) when absent: one probe
  /// sequence instead of find() then erase().
  std::uint32_t take(std::uintptr_t key) noexcept {
    std::size_t i = slot_of(key);
    while (slots_[i].key != key) {
      if (slots_[i].key == 0) return npos;
      i = (i + 1) & mask_;
    }
    const std::uint32_t value = slots_[i].value;
    erase_slot(i);
    return value;
  }

  template <class F>
  void for_each(F&& f) const {
    for (const entry& e : slots_)
      if (e.key != 0) f(e.key, e.value);
  }

 private:
  struct entry {
    std::uintptr_t key = 0;
    std::uint32_t value = 0;
  };

  void erase_slot(std::size_t i) noexcept {
    // Backward shift: move later entries of the probe run into the hole when that keeps them
    // reachable from their home slot.
    std::size_t hole = i;
    for (std::size_t j = (hole + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
      const std::size_t home = slot_of(slots_[j].key);
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = entry{};
    --size_;
  }

  std::size_t slot_of(std::uintptr_t key) const noexcept {
    // Fibonacci hashing; addresses are aligned, so the low bits carry no information.
    return static_cast<std::size_t>(((key >> 8) * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  void place(std::uintptr_t key, std::uint32_t value) noexcept {
    std::size_t i = slot_of(key);
    while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & mask_;
    if (slots_[i].key == 0) ++size_;
    slots_[i] = entry{key, value};
  }

  void rehash(std::size_t capacity) {
    std::vector<entry> old(capacity);
    old.swap(slots_);
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (const entry& e : old)
      if (e.key != 0) place(e.key, e.value);
  }

  std::vector<entry> slots_;
  unsigned sparseness_ = 1;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace frugal::detail
