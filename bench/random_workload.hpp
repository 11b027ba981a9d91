// The RMM-style random allocation workload shared by the host and device allocator benchmarks
// (bench/mr_bench.cpp, bench/gpu_bench.cu): a seeded trace of allocations and frees that every
// peer replays identically.
//   const frugal::bench::trace t = frugal::bench::make_trace(1 << 20, 1000, 10000);
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace frugal::bench {

struct operation {
  std::uint32_t slot;  // index into the live table
  std::uint32_t size;  // bytes to allocate; 0 means free the slot
};

struct trace {
  std::vector<operation> operations;
  std::size_t slots = 0;
  std::size_t peak_bytes_in_use = 0;
};

/// Fills the live set to `live_target` blocks, then allocates or frees at random (equal odds)
/// while the live set stays between live_target/2 and 2*live_target, then frees everything.
/// Sizes are uniform in [1, max_size].
inline trace make_trace(std::size_t max_size, std::size_t live_target, std::size_t steps) {
  std::mt19937_64 rng(2026);
  std::uniform_int_distribution<std::size_t> size_of(1, max_size);
  trace t;
  std::vector<std::uint32_t> live, free_slots;
  std::vector<std::size_t> size_in(0);
  std::size_t in_use = 0;
  auto allocate = [&] {
    std::uint32_t slot;
    if (!free_slots.empty()) {
      slot = free_slots.back();
      free_slots.pop_back();
    } else {
      slot = static_cast<std::uint32_t>(t.slots++);
      size_in.push_back(0);
    }
    const auto size = static_cast<std::uint32_t>(size_of(rng));
    t.operations.push_back({slot, size});
    live.push_back(slot);
    size_in[slot] = size;
    in_use += size;
    t.peak_bytes_in_use = std::max(t.peak_bytes_in_use, in_use);
  };
  auto free_random = [&] {
    const std::size_t k = rng() % live.size();
    const std::uint32_t slot = live[k];
    live[k] = live.back();
    live.pop_back();
    t.operations.push_back({slot, 0});
    free_slots.push_back(slot);
    in_use -= size_in[slot];
  };
  while (live.size() < live_target) allocate();
  for (std::size_t i = 0; i < steps; ++i) {
    const bool grow =
        live.size() < live_target / 2 || (live.size() < 2 * live_target && (rng() & 1) != 0);
    grow ? allocate() : free_random();
  }
  while (!live.empty()) free_random();
  return t;
}

}  // namespace frugal::bench
