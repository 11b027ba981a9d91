// frugal/detail/pointer_map.hpp: an open-addressing hash map from a 64-bit key (a block address,
// a content hash) to a 32-bit index into the caller's records, which hold the key itself: the O(1)
// "which block is this pointer" lookup behind pool_resource's deallocate.
//   std::vector<std::uintptr_t> address_of = {0x1000, 0x2000};
//   auto key_of = [&](std::uint32_t i) { return address_of[i]; };
//   frugal::detail::pointer_map map;  map.insert(0x2000, 1, key_of);
//   std::uint32_t i = map.find(0x2000, key_of);  // 1
//   map.erase(0x2000, key_of);
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace frugal::detail {

/// Linear probing with backward-shift deletion (no tombstones). A slot is 8 bytes: 32 bits of the
/// key (its bits 8-39: addresses are aligned, so the low bits carry nothing) and the index. The
/// caller's records hold the whole key, and `key_of(index)` returns it, so two keys that share the
/// 32 bits (block addresses 1 TiB apart) are told apart by reading the record, which the caller
/// was about to read anyway. The load factor stays at most 1/2^sparseness: 1/2 by default (16 to
/// 32 host bytes a key); 1/8 where speed matters more than host memory (pool_resource: 64 to 128
/// bytes a live block), as shorter probe runs keep find and erase predictable. npos cannot be
/// stored as an index.
class pointer_map {
 public:
  static constexpr std::uint32_t npos = 0xFFFFFFFFu;

  /// @param sparseness the table holds at most capacity / 2^sparseness keys (1 to 4)
  explicit pointer_map(unsigned sparseness = 1) : sparseness_(sparseness) { rehash(64); }

  std::size_t size() const noexcept { return size_; }
  /// Host bytes the table occupies.
  std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(entry); }

  /// O(1) expected. Returns the index stored for `key`, or npos.
  template <class KeyOf>
  std::uint32_t find(std::uint64_t key, const KeyOf& key_of) const noexcept {
    const probe at = locate(key, key_of);
    return at.found ? slots_[at.slot].value : npos;
  }

  /// Inserts or overwrites. May allocate host memory when the table grows. `key_of(value)` must
  /// return `key` once the caller's record is written (insert itself never calls key_of(value)).
  template <class KeyOf>
  void insert(std::uint64_t key, std::uint32_t value, const KeyOf& key_of) {
    const probe at = locate(key, key_of);
    if (at.found) {
      slots_[at.slot].value = value;
    } else if (has_room_for(1)) {
      slots_[at.slot] = entry{tag_of(key), value};  // the first empty slot of the key's run
      ++size_;
    } else {
      rehash(slots_.size() * 2);
      place(tag_of(key), value);
    }
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
  template <class KeyOf>
  bool erase(std::uint64_t key, const KeyOf& key_of) noexcept {
    return take(key, key_of) != npos;
  }

  /// Removes `key` and returns its index, or npos (changing nothing) when absent: one probe
  /// sequence instead of find() then erase().
  template <class KeyOf>
  std::uint32_t take(std::uint64_t key, const KeyOf& key_of) noexcept {
    const probe at = locate(key, key_of);
    if (!at.found) return npos;
    const std::uint32_t value = slots_[at.slot].value;
    erase_slot(at.slot);
    return value;
  }

  /// Calls f(index) for every index stored.
  template <class F>
  void for_each(F&& f) const {
    for (const entry& e : slots_)
      if (e.value != npos) f(e.value);
  }

 private:
  struct entry {
    std::uint32_t tag = 0;
    std::uint32_t value = npos;  // npos: empty
  };
  /// Where a search for a key ended: its slot, or the empty slot that ends its probe run.
  struct probe {
    std::size_t slot;
    bool found;
  };

  static std::uint32_t tag_of(std::uint64_t key) noexcept {
    return static_cast<std::uint32_t>(key >> 8);
  }

  std::size_t slot_of(std::uint32_t tag) const noexcept {
    // Fibonacci hashing of the tag: the home slot follows from the slot's own contents, so
    // erase_slot never needs the whole key.
    return static_cast<std::size_t>((std::uint64_t{tag} * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  template <class KeyOf>
  probe locate(std::uint64_t key, const KeyOf& key_of) const noexcept {
    const std::uint32_t tag = tag_of(key);
    for (std::size_t i = slot_of(tag);; i = (i + 1) & mask_) {
      const entry& e = slots_[i];
      if (e.value == npos) return {i, false};
      if (e.tag == tag && key_of(e.value) == key) return {i, true};
    }
  }

  void erase_slot(std::size_t i) noexcept {
    // Backward shift: move later entries of the probe run into the hole when that keeps them
    // reachable from their home slot.
    std::size_t hole = i;
    for (std::size_t j = (hole + 1) & mask_; slots_[j].value != npos; j = (j + 1) & mask_) {
      const std::size_t home = slot_of(slots_[j].tag);
      if (((j - home) & mask_) >= ((j - hole) & mask_)) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = entry{};
    --size_;
  }

  /// Puts an absent key in the first empty slot of its probe run.
  void place(std::uint32_t tag, std::uint32_t value) noexcept {
    std::size_t i = slot_of(tag);
    while (slots_[i].value != npos) i = (i + 1) & mask_;
    slots_[i] = entry{tag, value};
    ++size_;
  }

  void rehash(std::size_t capacity) {
    std::vector<entry> old(capacity);
    old.swap(slots_);
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (const entry& e : old)
      if (e.value != npos) place(e.tag, e.value);
  }

  std::vector<entry> slots_;
  unsigned sparseness_ = 1;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace frugal::detail
