// The live allocations of a randomised test against a resource, by address: what the fuzzers of
// pool.test.cpp and pool_growth.test.cpp check every new block against (aligned, overlapping no
// live block) and draw their frees from.
//   live_ranges live;   live.add(p, size, alignment);   auto r = live.take_random(rng);
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace frugal::testing {

class live_ranges {
 public:
  struct range {
    std::uintptr_t address = 0;
    std::size_t size = 0, alignment = 0;
    void* pointer() const noexcept { return reinterpret_cast<void*>(address); }
  };

  bool empty() const noexcept { return ranges_.empty(); }
  std::size_t count() const noexcept { return ranges_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }  // sum of the live sizes

  /// Records a block the resource just handed out; REQUIREs that it is aligned to `alignment`
  /// and overlaps no live block.
  void add(void* p, std::size_t size, std::size_t alignment) {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    REQUIRE(address % alignment == 0);
    auto next = ranges_.lower_bound(address);
    if (next != ranges_.end()) REQUIRE(address + size <= next->first);
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      REQUIRE(prev->first + prev->second.size <= address);
    }
    ranges_.emplace(address, range{address, size, alignment});
    order_.push_back(address);
    bytes_ += size;
  }

  /// Forgets a live block chosen with one draw of `rng` (uniform over the live ones) and returns
  /// it, for the caller to free. Not empty().
  template <class Rng>
  range take_random(Rng& rng) {
    const std::size_t k = rng() % order_.size();
    const std::uintptr_t address = order_[k];
    order_[k] = order_.back();
    order_.pop_back();
    const auto it = ranges_.find(address);
    const range r = it->second;
    ranges_.erase(it);
    bytes_ -= r.size;
    return r;
  }

  /// Every live block, lowest address first.
  std::vector<range> all() const {
    std::vector<range> out;
    out.reserve(ranges_.size());
    for (const auto& [address, r] : ranges_) out.push_back(r);
    return out;
  }

 private:
  std::map<std::uintptr_t, range> ranges_;
  std::vector<std::uintptr_t> order_;  // the same blocks in the order take_random draws from
  std::size_t bytes_ = 0;
};

}  // namespace frugal::testing
