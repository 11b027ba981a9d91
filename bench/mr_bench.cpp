// Allocator benchmarks: frugal's pool, arena and block allocators against their peers, in one run.
//
//   BM_random_allocations: RMM-style random allocate/free with a live set of ~1,000-10,000 blocks;
//     counters: ns_per_op (one allocate or one free) and, where the peer exposes what it holds,
//     reserved_over_in_use = peak bytes reserved from the upstream / peak bytes requested.
//   BM_arena_allocate: bump allocation of small blocks, released at once every 1,000.
//   BM_block_allocate_free: one allocate + one free of a fixed-size block in a live set of 1,000.
//
// Every allocation asks for 256-byte alignment (what cudaMalloc guarantees and device pools give).
#include "random_workload.hpp"

#include <frugal/mr/arena.hpp>
#include <frugal/mr/block.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/stream_pool.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <benchmark/benchmark.h>
#include <thrust/mr/disjoint_pool.h>
#include <thrust/mr/new.h>

#if FRUGAL_BENCH_MIMALLOC
#include <mimalloc.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <memory_resource>
#include <random>
#include <vector>

namespace {

constexpr std::size_t alignment = 256;

// ---- the workload: bench/random_workload.hpp ---------------------------------------------------

using frugal::bench::make_trace;
using frugal::bench::operation;
using frugal::bench::trace;

/// Replays `t` through allocate(size)/deallocate(p, size) callables; returns operations done.
template <class Allocate, class Deallocate>
std::size_t replay(const trace& t, std::vector<void*>& table, std::vector<std::uint32_t>& sizes,
                   Allocate&& allocate, Deallocate&& deallocate) {
  for (const operation& op : t.operations) {
    if (op.size != 0) {
      table[op.slot] = allocate(op.size);
      sizes[op.slot] = op.size;
    } else {
      deallocate(table[op.slot], sizes[op.slot]);
    }
  }
  return t.operations.size();
}

const trace& trace_for(std::size_t max_size) {
  // Live sets: 10,000 blocks up to 4 KiB, 4,000 up to 1 MiB, 1,000 up to 64 MiB (address space
  // only: no allocator here touches the blocks, so 64 GiB of live blocks costs no memory).
  static const trace small = make_trace(4 << 10, 10000, 400000);
  static const trace medium = make_trace(1 << 20, 4000, 200000);
  static const trace large = make_trace(64 << 20, 1000, 100000);
  return max_size <= (4 << 10) ? small : max_size <= (1 << 20) ? medium : large;
}

template <class Allocate, class Deallocate>
void run_trace(benchmark::State& state, Allocate&& allocate, Deallocate&& deallocate) {
  const trace& t = trace_for(static_cast<std::size_t>(state.range(0)));
  std::vector<void*> table(t.slots);
  std::vector<std::uint32_t> sizes(t.slots);
  std::size_t operations = 0;
  for (auto _ : state) operations += replay(t, table, sizes, allocate, deallocate);
  state.counters["time_per_op"] = benchmark::Counter(
      static_cast<double>(operations), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void report_ratio(benchmark::State& state, std::size_t peak_reserved) {
  const trace& t = trace_for(static_cast<std::size_t>(state.range(0)));
  state.counters["reserved_over_in_use"] =
      static_cast<double>(peak_reserved) / static_cast<double>(t.peak_bytes_in_use);
}

// ---- upstreams that count what peers hold
// ---------------------------------------------------------

/// Aligned new and delete that record the peak bytes held: the upstream of the peers' pools.
struct peak_counting_heap {
  std::size_t current = 0;
  std::size_t peak = 0;

  void* allocate(std::size_t bytes, std::size_t align) {
    current += bytes;
    peak = std::max(peak, current);
    return ::operator new (bytes, std::align_val_t{std::max(align, alignof(std::max_align_t))});
  }
  void deallocate(void* p, std::size_t bytes, std::size_t align) noexcept {
    current -= bytes;
    ::operator delete (p, std::align_val_t{std::max(align, alignof(std::max_align_t))});
  }
};

/// std::pmr's view of a peak_counting_heap.
class counting_pmr_upstream : public std::pmr::memory_resource {
 public:
  std::size_t peak() const { return heap_.peak; }

 private:
  peak_counting_heap heap_;
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    return heap_.allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    heap_.deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

/// thrust::mr's view of a peak_counting_heap (thrust's pools call do_allocate directly).
class counting_thrust_upstream : public thrust::mr::memory_resource<void*> {
 public:
  std::size_t peak() const { return heap_.peak; }
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    return heap_.allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    heap_.deallocate(p, bytes, align);
  }

 private:
  peak_counting_heap heap_;
};

// ---- BM_random_allocations
// -------------------------------------------------------------------------

void BM_random_allocations(benchmark::State& state, const char* peer) {
  const std::string_view name = peer;
  if (name == "frugal_pool") {
    // The documented default for engines: one segment growing in place over reserved address
    // space (never backed: no allocator here touches its blocks).
    frugal::virtual_resource space{{.reserve_bytes = std::size_t{1} << 40,
                                    .commit = false,
                                    .granularity = std::size_t{64} << 10}};
    frugal::pool_resource pool{frugal::ref(space)};
    run_trace(
        state, [&](std::size_t n) { return pool.allocate(n, alignment); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, alignment); });
    report_ratio(state, pool.stats().peak_bytes_reserved);
  } else if (name == "frugal_pool_host") {
    frugal::pool_resource pool{frugal::host_resource{}};
    run_trace(
        state, [&](std::size_t n) { return pool.allocate(n, alignment); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, alignment); });
    report_ratio(state, pool.stats().peak_bytes_reserved);
  } else if (name == "std_pmr_pool") {
    counting_pmr_upstream upstream;
    std::pmr::unsynchronized_pool_resource pool{&upstream};
    run_trace(
        state, [&](std::size_t n) { return pool.allocate(n, alignment); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, alignment); });
    report_ratio(state, upstream.peak());
  } else if (name == "thrust_disjoint_pool") {
    counting_thrust_upstream upstream;
    thrust::mr::new_delete_resource bookkeeper;
    auto options = thrust::mr::disjoint_unsynchronized_pool_resource<
        counting_thrust_upstream, thrust::mr::new_delete_resource>::get_default_options();
    options.alignment = alignment;
    options.smallest_block_size = alignment;
    thrust::mr::disjoint_unsynchronized_pool_resource pool{&upstream, &bookkeeper, options};
    run_trace(
        state, [&](std::size_t n) { return pool.allocate(n, alignment); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, alignment); });
    report_ratio(state, upstream.peak());
  } else if (name == "harness_floor") {
    // No allocator at all: a counter for allocate, nothing for free. What is left is the cost of
    // replaying the trace (reading operations, the random allocate-or-free branch).
    std::uintptr_t next = 4096;
    run_trace(
        state, [&](std::size_t n) { return reinterpret_cast<void*>(next += n); },
        [](void* p, std::size_t) { benchmark::DoNotOptimize(p); });
  } else if (name == "malloc") {
    run_trace(
        state,
        [](std::size_t n) {
          return std::aligned_alloc(alignment, frugal::detail::align_up(n, alignment));
        },
        [](void* p, std::size_t) { std::free(p); });
#if FRUGAL_BENCH_MIMALLOC
  } else if (name == "mimalloc") {
    run_trace(
        state, [](std::size_t n) { return mi_malloc_aligned(n, alignment); },
        [](void* p, std::size_t) { mi_free(p); });
#endif
  }
}

// ---- BM_stream_pool: the stream-ordered pool's host overhead
// ---------------------------------------

/// The same trace through stream_pool_resource with events that complete at once: one stream,
/// or two (each block allocated and freed on the stream its slot picks). Peer: the plain pool
/// over the same upstream.
void BM_stream_pool(benchmark::State& state, const char* peer) {
  const std::string_view name = peer;
  frugal::virtual_resource space{{.reserve_bytes = std::size_t{1} << 40,
                                  .commit = false,
                                  .granularity = std::size_t{64} << 10}};
  if (name == "frugal_pool") {
    frugal::pool_resource pool{frugal::ref(space)};
    run_trace(
        state, [&](std::size_t n) { return pool.allocate(n, alignment); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, alignment); });
    report_ratio(state, pool.stats().peak_bytes_reserved);
    return;
  }
  frugal::stream_pool_resource pool{frugal::ref(space), frugal::synchronous_stream_policy{}};
  const int streams = name == "stream_pool_2_streams" ? 2 : 1;
  int turn = 0;
  run_trace(
      state,
      [&](std::size_t n) { return pool.allocate_async(n, alignment, 1 + (turn++ % streams)); },
      [&](void* p, std::size_t n) {
        pool.deallocate_async(p, n, alignment,
                              1 + (reinterpret_cast<std::uintptr_t>(p) >> 8) % streams);
      });
  report_ratio(state, pool.stats().peak_bytes_reserved);
}

#define FRUGAL_STREAM_POOL(peer)                 \
  BENCHMARK_CAPTURE(BM_stream_pool, peer, #peer) \
      ->ArgName("max_size")                      \
      ->Arg(4 << 10)                             \
      ->Arg(1 << 20)                             \
      ->Arg(64 << 20)                            \
      ->Unit(benchmark::kMillisecond)
FRUGAL_STREAM_POOL(frugal_pool);
FRUGAL_STREAM_POOL(stream_pool_1_stream);
FRUGAL_STREAM_POOL(stream_pool_2_streams);

#define FRUGAL_RANDOM_ALLOCATIONS(peer)                 \
  BENCHMARK_CAPTURE(BM_random_allocations, peer, #peer) \
      ->ArgName("max_size")                             \
      ->Arg(4 << 10)                                    \
      ->Arg(1 << 20)                                    \
      ->Arg(64 << 20)                                   \
      ->Unit(benchmark::kMillisecond)

FRUGAL_RANDOM_ALLOCATIONS(harness_floor);
FRUGAL_RANDOM_ALLOCATIONS(frugal_pool);
FRUGAL_RANDOM_ALLOCATIONS(frugal_pool_host);
FRUGAL_RANDOM_ALLOCATIONS(std_pmr_pool);
FRUGAL_RANDOM_ALLOCATIONS(thrust_disjoint_pool);
FRUGAL_RANDOM_ALLOCATIONS(malloc);
#if FRUGAL_BENCH_MIMALLOC
FRUGAL_RANDOM_ALLOCATIONS(mimalloc);
#endif

// ---- BM_arena_allocate
// -------------------------------------------------------------------------------

constexpr int arena_batch = 1000;

std::vector<std::size_t> arena_sizes() {
  std::mt19937_64 rng(5);
  std::vector<std::size_t> sizes(arena_batch);
  for (auto& s : sizes) s = 1 + rng() % 4096;
  return sizes;
}

void BM_arena_allocate(benchmark::State& state, const char* peer) {
  const auto sizes = arena_sizes();
  const std::string_view name = peer;
  std::size_t allocations = 0;
  if (name == "frugal_arena") {
    frugal::arena_resource arena{frugal::host_resource{}};
    const auto start = arena.mark();
    for (auto _ : state) {
      for (std::size_t n : sizes) benchmark::DoNotOptimize(arena.allocate(n, alignment));
      arena.release(start);
      allocations += sizes.size();
    }
  } else {
    std::pmr::monotonic_buffer_resource arena;
    for (auto _ : state) {
      for (std::size_t n : sizes) benchmark::DoNotOptimize(arena.allocate(n, alignment));
      arena.release();
      allocations += sizes.size();
    }
  }
  state.counters["time_per_allocation"] = benchmark::Counter(
      static_cast<double>(allocations), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_arena_allocate, frugal_arena, "frugal_arena");
BENCHMARK_CAPTURE(BM_arena_allocate, std_pmr_monotonic, "std_pmr_monotonic");

// ---- BM_block_allocate_free
// ---------------------------------------------------------------------------

constexpr std::size_t block_bytes = 16 << 10;
constexpr int block_live = 1000;

void BM_block_allocate_free(benchmark::State& state, const char* peer) {
  std::mt19937_64 rng(11);
  std::vector<std::uint32_t> victims(1 << 16);
  for (auto& v : victims) v = static_cast<std::uint32_t>(rng() % block_live);
  std::vector<void*> live(block_live);
  std::size_t pairs = 0, k = 0;
  const std::string_view name = peer;
  auto run = [&](auto& r) {
    for (auto& p : live) p = r.allocate(block_bytes, alignment);
    for (auto _ : state) {
      void*& slot = live[victims[k++ & (victims.size() - 1)]];
      r.deallocate(slot, block_bytes, alignment);
      slot = r.allocate(block_bytes, alignment);
      ++pairs;
    }
    for (void* p : live) r.deallocate(p, block_bytes, alignment);
  };
  if (name == "frugal_block") {
    frugal::block_resource blocks{frugal::host_resource{}, block_bytes, {.initial_blocks = 1024}};
    run(blocks);
  } else {
    std::pmr::unsynchronized_pool_resource pool{std::pmr::pool_options{
        .max_blocks_per_chunk = 1024, .largest_required_pool_block = block_bytes}};
    run(pool);
  }
  state.counters["time_per_pair"] = benchmark::Counter(
      static_cast<double>(pairs), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_block_allocate_free, frugal_block, "frugal_block");
BENCHMARK_CAPTURE(BM_block_allocate_free, std_pmr_pool, "std_pmr_pool");

}  // namespace

BENCHMARK_MAIN();
