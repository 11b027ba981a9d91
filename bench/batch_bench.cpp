// Continuous batching benchmarks: the scheduler's step planning, and the serving simulator's
// static against dynamic batching at the same budget, in one run.
//
//   BM_plan_step: 256 (and 1,024) running sequences, all decoding: 512-token prompts are
//     submitted and prefilled, then each iteration is one plan_step (timed: the manual time)
//     and one complete_step sampling a token for every sequence (reported apart, as
//     complete_step_time), after 64 untimed decode steps. Contexts grow from 577 to 2,576 tokens
//     over the 2,000 timed iterations.
//     Counters: plan_step_time, complete_step_time, tokens_per_step, mean_context.
//   BM_simulation: frugal::sim::run on the Llama-3-8B shape, an 80 GiB budget, fp16 weights and
//     KV, ShareGPT-like lengths, max length 4,096, 10,000 requests all queued at step 0; static
//     batching (max_batch x max_len reserved per batch) against frugal's scheduler. Counters:
//     the fields of frugal::sim::result.
//
// KV pages live in reserved, never-backed address space (virtual_resource with commit = false).
#include <frugal/batch/scheduler.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/sim/simulator.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <numeric>
#include <random>
#include <string_view>
#include <vector>

namespace {

using frugal::batch::request_id;
using frugal::kv::token_id;

// ---- BM_plan_step ------------------------------------------------------------------------------

constexpr std::uint32_t prompt_tokens = 512;
constexpr std::int64_t decode_iterations = 2000;
constexpr int warmup_steps = 64;

void BM_plan_step(benchmark::State& state, std::uint32_t num_seqs) {
  const frugal::kv::layout layout{
      .num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
  // Room for every sequence's prompt and all its decode steps, so nothing is preempted.
  const std::uint32_t pages_per_seq = (prompt_tokens + 4096) / layout.page_size;
  const std::uint32_t num_pages = num_seqs * pages_per_seq + 64;
  frugal::virtual_resource gpu{
      {.reserve_bytes = std::size_t{num_pages + 1} * layout.page_bytes(), .commit = false}};
  frugal::kv::cache cache{layout, num_pages, gpu};
  frugal::batch::scheduler sched{cache, {.max_num_seqs = num_seqs, .max_batched_tokens = 8192}};
  std::mt19937_64 rng(5);
  for (request_id id = 0; id < num_seqs; ++id) {
    frugal::batch::request r{.id = id, .max_new_tokens = 4096};
    r.prompt.resize(prompt_tokens);
    for (token_id& t : r.prompt) t = static_cast<token_id>(rng() % 128000);
    sched.submit(std::move(r));
  }
  std::vector<std::pair<request_id, token_id>> sampled;
  sampled.reserve(num_seqs);
  const auto complete = [&](const frugal::batch::step_plan& plan) {
    sampled.clear();
    for (const auto& s : plan.sequences)
      if (s.samples) sampled.emplace_back(s.id, static_cast<token_id>(rng() % 128000));
    sched.complete_step(sampled);
  };
  // Prefill until every sequence decodes.
  for (;;) {
    const auto& plan = sched.plan_step();
    const bool all_decoding =
        plan.sequences.size() == num_seqs && plan.num_batched_tokens == num_seqs;
    complete(plan);
    if (all_decoding) break;
  }
  // A few untimed decode steps: the heap settles at the sizes the plans need.
  for (int i = 0; i < warmup_steps; ++i) complete(sched.plan_step());

  using clock = std::chrono::steady_clock;
  double complete_seconds = 0, context = 0;
  std::size_t tokens = 0, steps = 0;
  for (auto _ : state) {
    const auto t0 = clock::now();
    const auto& plan = sched.plan_step();
    const auto t1 = clock::now();
    complete(plan);
    const auto t2 = clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    complete_seconds += std::chrono::duration<double>(t2 - t1).count();
    tokens += plan.num_batched_tokens;
    for (const auto& s : plan.sequences) context += s.context_len;
    ++steps;
    benchmark::DoNotOptimize(plan.slot_mapping.data());
  }
  if (sched.stats().preemptions != 0) state.SkipWithError("a sequence was preempted");
  state.counters["plan_step_time"] = benchmark::Counter(
      static_cast<double>(steps), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["complete_step_time"] = complete_seconds / static_cast<double>(steps);
  state.counters["tokens_per_step"] = static_cast<double>(tokens) / static_cast<double>(steps);
  state.counters["mean_context"] = context / static_cast<double>(tokens);
  state.counters["sequences"] = num_seqs;
}
BENCHMARK_CAPTURE(BM_plan_step, 256_decoding, 256)
    ->UseManualTime()
    ->Iterations(decode_iterations)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_plan_step, 1024_decoding, 1024)
    ->UseManualTime()
    ->Iterations(decode_iterations)
    ->Unit(benchmark::kMicrosecond);

// ---- BM_simulation -----------------------------------------------------------------------------

frugal::sim::config simulation(frugal::sim::policy policy) {
  return {.model = "llama-3-8b",
          .gpu_memory = std::size_t{80} << 30,
          .weights = frugal::sim::weight_format::fp16,
          .kv_dtype = frugal::kv::dtype::fp16,
          .workload = frugal::sim::workload::sharegpt,
          .num_requests = 10000,
          .max_len = 4096,
          .seed = 2026,
          .policy = policy};
}

void BM_simulation(benchmark::State& state, frugal::sim::policy policy) {
  const frugal::sim::config c = simulation(policy);
  frugal::sim::result r;
  for (auto _ : state) r = frugal::sim::run(c);
  constexpr double gib = 1 << 30, mib = 1 << 20;
  state.counters["tokens_per_step"] = r.tokens_per_step;
  state.counters["output_tokens_per_step"] = r.output_tokens_per_step;
  state.counters["max_concurrent"] = static_cast<double>(r.max_concurrent);
  state.counters["mean_concurrent"] = r.mean_concurrent;
  state.counters["mean_concurrent_saturated"] = r.mean_concurrent_saturated;
  state.counters["peak_kv_gib"] = static_cast<double>(r.peak_kv_bytes) / gib;
  state.counters["kv_budget_gib"] = static_cast<double>(r.kv_budget_bytes) / gib;
  state.counters["peak_workspace_mib"] = static_cast<double>(r.peak_workspace_bytes) / mib;
  state.counters["mean_workspace_mib"] = r.mean_workspace_bytes / mib;
  state.counters["workspace_budget_mib"] = static_cast<double>(r.workspace_budget_bytes) / mib;
  state.counters["weights_gib"] = static_cast<double>(r.weight_bytes) / gib;
  state.counters["waste"] = r.waste;
  state.counters["preemptions"] = static_cast<double>(r.preemptions);
  state.counters["steps"] = static_cast<double>(r.steps);
  state.counters["finished"] = static_cast<double>(r.finished);
  state.counters["rejected"] = static_cast<double>(r.rejected);
  state.counters["max_batch"] = r.max_batch;
  state.counters["kv_pages"] = r.kv_pages;
  state.counters["requests"] = static_cast<double>(c.num_requests);
  state.counters["mean_prompt"] = r.mean_prompt;
  state.counters["mean_output"] = r.mean_output;
}
BENCHMARK_CAPTURE(BM_simulation, static_batching, frugal::sim::policy::static_batching)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_simulation, frugal_dynamic, frugal::sim::policy::dynamic)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
