// Serving allocation traces replayed through frugal's pool and its peers, in one run.
//
//   BM_replay/<allocator>/<trace>: the synthetic serving trace of frugal::sim::serving_trace
//     (weights once, per-step activations that follow the batch, KV extents, request state) for
//     several devices, seeds and batch dynamics. Counters: reserved_over_in_use = peak bytes
//     reserved / peak bytes in use, ns_per_event, and over_first_fit = peak reserved / the
//     first-fit heap's peak reserved on the same trace.
//
// Allocators: pool (frugal::pool_resource growing in place over a virtual range, uncapped: the
// documented default), pool_preallocated (the device's memory reserved up front), first_fit (a
// naive address-ordered heap over one range, uncapped), malloc. Address space only: nothing is
// touched, so an 80 GiB trace replays on a small host.
#include <frugal/sim/trace.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

using frugal::sim::allocator_kind;

struct trace_shape {
  const char* name;
  double gib;
  std::uint64_t seed;
  double arrival_rate;
  double mean_prompt, mean_output;  // lognormal means in tokens; 0: ShareGPT's
  std::uint32_t max_batched_tokens;
};

// The synthetic trace of `frugal replay --synthetic` (80 GiB, seed 1) and traces shaped like it
// with other devices, seeds and batch dynamics.
const trace_shape shapes[] = {
    {"synthetic_80GiB", 80, 1, 10, 0, 0, 8192},
    {"synthetic_80GiB_seed2", 80, 2, 10, 0, 0, 8192},
    {"synthetic_24GiB", 24, 1, 10, 0, 0, 8192},
    {"quiet_40GiB", 40, 3, 4, 0, 0, 8192},
    {"busy_long_prompts_40GiB", 40, 4, 20, 500, 200, 8192},
    {"few_long_requests_80GiB", 80, 5, 2, 1000, 1000, 16384},
    {"many_short_requests_24GiB", 24, 6, 30, 100, 50, 2048},
    {"small_prefill_budget_80GiB", 80, 7, 10, 0, 0, 4096},
};

const std::vector<frugal::sim::trace_event>& events_of(int shape) {
  static std::map<int, std::vector<frugal::sim::trace_event>> cache;
  auto it = cache.find(shape);
  if (it != cache.end()) return it->second;
  const trace_shape& s = shapes[shape];
  frugal::sim::serving_trace_options o;
  o.gpu_memory = static_cast<std::size_t>(s.gib * double(std::size_t{1} << 30));
  o.seed = s.seed;
  o.arrival_rate = s.arrival_rate;
  o.lengths.mean_prompt = s.mean_prompt;  // 0: ShareGPT's (frugal/sim/workload.hpp)
  o.lengths.mean_output = s.mean_output;
  o.max_batched_tokens = s.max_batched_tokens;
  return cache.emplace(shape, frugal::sim::serving_trace(o)).first->second;
}

std::size_t first_fit_peak(int shape) {
  static std::map<int, std::size_t> cache;
  auto it = cache.find(shape);
  if (it != cache.end()) return it->second;
  frugal::sim::replay_options o;
  o.timeline_points = 0;
  const auto r =
      frugal::sim::replay(events_of(shape), allocator_kind::first_fit, frugal::sim::no_cap, o);
  return cache.emplace(shape, r.peak_bytes_reserved).first->second;
}

void BM_replay(benchmark::State& state, const char* allocator) {
  const int shape = static_cast<int>(state.range(0));
  const auto& events = events_of(shape);
  const std::string name = allocator;
  frugal::sim::replay_options o;
  o.timeline_points = 0;
  std::size_t cap = frugal::sim::no_cap;
  allocator_kind kind = allocator_kind::pool;
  if (name == "pool_preallocated") {
    cap = static_cast<std::size_t>(shapes[shape].gib * double(std::size_t{1} << 30));
    o.pool_preallocate = true;
  } else if (name == "first_fit") {
    kind = allocator_kind::first_fit;
  } else if (name == "malloc") {
    kind = allocator_kind::malloc;
  }
  // The process's first replay also pays its first page faults (the replay's tables): one
  // untimed replay first, so that no allocator's figure carries them.
  static const bool warmed_up = [&] {
    (void)frugal::sim::replay(events_of(0), allocator_kind::pool, frugal::sim::no_cap, o);
    return true;
  }();
  (void)warmed_up;
  frugal::sim::replay_result r;
  double seconds = 0;
  for (auto _ : state) {
    r = frugal::sim::replay(events, kind, cap, o);
    seconds += r.seconds;
  }
  state.SetLabel(shapes[shape].name);
  state.counters["reserved_over_in_use"] =
      double(r.peak_bytes_reserved) / double(r.peak_bytes_in_use);
  state.counters["over_first_fit"] = double(r.peak_bytes_reserved) / double(first_fit_peak(shape));
  state.counters["ns_per_event"] = 1e9 * seconds / double(state.iterations()) / double(r.events);
  state.counters["failed_allocations"] = double(r.failed_allocations);
}

void shapes_args(benchmark::internal::Benchmark* b) {
  b->ArgName("trace");
  for (int i = 0; i < static_cast<int>(std::size(shapes)); ++i) b->Arg(i);
  b->Iterations(1)->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_replay, pool, "pool")->Apply(shapes_args);
BENCHMARK_CAPTURE(BM_replay, pool_preallocated, "pool_preallocated")->Apply(shapes_args);
BENCHMARK_CAPTURE(BM_replay, first_fit, "first_fit")->Apply(shapes_args);
BENCHMARK_CAPTURE(BM_replay, malloc, "malloc")->Apply(shapes_args);

}  // namespace

BENCHMARK_MAIN();
