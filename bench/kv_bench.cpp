// Paged KV cache benchmarks: frugal's page pool and cache against their peers, in one run.
//
//   BM_page_allocate_free: one page free + one page allocate in a live set of 1,000 pages (of
//     4,096); peers: std::pmr::unsynchronized_pool_resource at the page size, and frugal's cache
//     adding and releasing a 1-token sequence. Counter: time_per_pair.
//   BM_new_sequence: a 2,048-token prompt (page size 16) added with prefix lookup, then released:
//     a cold miss (every page new), a full hit on pages cached by an earlier, released sequence,
//     a full hit on pages a live sequence still holds, and prefix caching off. Counters:
//     time_per_sequence, cached_tokens.
//   BM_export: the page tables of 256 sequences of 256 pages: vLLM block tables and FlashInfer's
//     CSR, returned as vectors or written into caller buffers; peer: a naive
//     std::vector<std::vector<int>> built from each sequence's pages. Counter: time_per_export.
//   BM_metadata: host bookkeeping bytes per page (cache::metadata_bytes_per_page).
//   BM_memory_efficiency: a serving simulation on ShareGPT-like lengths in a fixed page budget,
//     static max-length reservation against frugal's cache (see simulate_* below).
//
// Pages are Llama-3-8B-shaped (32 layers, 8 KV heads, 128 dims, fp16, 16 tokens: 2 MiB) over
// reserved, never-backed address space: the cache never touches its pages, so 128 GiB of pages
// costs no memory here. The std::pmr peer writes its free list into the blocks, so it runs over
// ordinary heap memory.
#include <frugal/kv/cache.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/sim/workload.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory_resource>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

namespace {

using frugal::kv::token_id;

constexpr std::size_t alignment = 256;

frugal::kv::layout model_layout() {
  return {.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
}

/// 1 TiB of address space, never backed: the "device" every cache here lives in.
frugal::virtual_resource& device_memory() {
  static frugal::virtual_resource memory{{.reserve_bytes = std::size_t{1} << 40, .commit = false}};
  return memory;
}

std::vector<token_id> random_tokens(std::size_t n, std::mt19937_64& rng) {
  std::vector<token_id> tokens(n);
  for (token_id& t : tokens) t = static_cast<token_id>(rng() % 128000);
  return tokens;
}

benchmark::Counter per_item(std::size_t items) {
  return benchmark::Counter(static_cast<double>(items),
                            benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---- BM_page_allocate_free ---------------------------------------------------------------------

constexpr std::uint32_t pool_pages = 4096;
constexpr int live_pages = 1000;

std::vector<std::uint32_t> victims() {
  std::mt19937_64 rng(11);
  std::vector<std::uint32_t> v(1 << 16);
  for (auto& x : v) x = static_cast<std::uint32_t>(rng() % live_pages);
  return v;
}

void BM_page_allocate_free(benchmark::State& state, const char* peer) {
  const auto victim = victims();
  std::size_t pairs = 0, k = 0;
  const std::string_view name = peer;
  const std::size_t page_bytes = model_layout().page_bytes();
  if (name == "frugal_page_pool") {
    frugal::kv::page_pool pages{model_layout(), pool_pages, device_memory()};
    std::vector<frugal::kv::page_id> live(live_pages);
    for (auto& id : live) id = pages.allocate();
    for (auto _ : state) {
      frugal::kv::page_id& id = live[victim[k++ & (victim.size() - 1)]];
      pages.release(id);  // the last holder goes ...
      pages.free(id);     // ... and the page returns to the free pages
      id = *pages.try_allocate();
      ++pairs;
    }
    for (auto id : live) pages.release(id), pages.free(id);
  } else if (name == "std_pmr_pool") {
    std::pmr::unsynchronized_pool_resource pool{std::pmr::pool_options{
        .max_blocks_per_chunk = pool_pages, .largest_required_pool_block = page_bytes}};
    std::vector<void*> live(live_pages);
    for (auto& p : live) p = pool.allocate(page_bytes, alignment);
    for (auto _ : state) {
      void*& p = live[victim[k++ & (victim.size() - 1)]];
      pool.deallocate(p, page_bytes, alignment);
      p = pool.allocate(page_bytes, alignment);
      ++pairs;
    }
    for (void* p : live) pool.deallocate(p, page_bytes, alignment);
  } else if (name == "frugal_cache_sequence") {
    // A 1-token sequence holds one page: add_sequence + release, the cache's own path.
    frugal::kv::cache kv{model_layout(), pool_pages, device_memory(), {.watermark = 0}};
    const std::vector<token_id> one_token{42};
    std::vector<std::optional<frugal::kv::sequence>> live(live_pages);
    for (auto& s : live) s = kv.try_add_sequence(one_token);
    for (auto _ : state) {
      auto& s = live[victim[k++ & (victim.size() - 1)]];
      s->release();
      s = kv.try_add_sequence(one_token);
      ++pairs;
    }
  }
  state.counters["time_per_pair"] = per_item(pairs);
}
BENCHMARK_CAPTURE(BM_page_allocate_free, frugal_page_pool, "frugal_page_pool");
BENCHMARK_CAPTURE(BM_page_allocate_free, std_pmr_pool, "std_pmr_pool");
BENCHMARK_CAPTURE(BM_page_allocate_free, frugal_cache_sequence, "frugal_cache_sequence");

// ---- BM_new_sequence ---------------------------------------------------------------------------

constexpr std::size_t prompt_tokens = 2048;

void BM_new_sequence(benchmark::State& state, const char* mode) {
  const std::string_view name = mode;
  std::mt19937_64 rng(3);
  const auto prompt = random_tokens(prompt_tokens, rng);
  frugal::kv::cache kv{model_layout(),
                       pool_pages,
                       device_memory(),
                       {.enable_prefix_caching = name != "prefix_caching_off", .watermark = 0}};
  // Fill the cache with other prompts' pages first, so misses evict as in steady state.
  for (int i = 0; i < 32; ++i) kv.add_sequence(random_tokens(prompt_tokens, rng));
  std::optional<frugal::kv::sequence> holder;
  if (name == "full_hit_cached") kv.add_sequence(prompt);  // released at once: pages cached
  if (name == "full_hit_live") holder = kv.add_sequence(prompt);
  std::uint64_t salt = 0;
  std::size_t sequences = 0, cached = 0;
  for (auto _ : state) {
    // A cold miss: the same tokens under a new extra key (salt) hash to pages never seen.
    const std::uint64_t key = name == "cold_miss" ? ++salt : 0;
    frugal::kv::sequence seq = kv.add_sequence(prompt, key);
    benchmark::DoNotOptimize(seq.pages().data());
    cached += seq.cached_tokens();
    ++sequences;
  }  // seq released at the end of each iteration
  state.counters["time_per_sequence"] = per_item(sequences);
  state.counters["cached_tokens"] =
      static_cast<double>(cached) / static_cast<double>(std::max<std::size_t>(sequences, 1));
}
#define FRUGAL_NEW_SEQUENCE(mode) \
  BENCHMARK_CAPTURE(BM_new_sequence, mode, #mode)->Unit(benchmark::kMicrosecond)
FRUGAL_NEW_SEQUENCE(cold_miss);
FRUGAL_NEW_SEQUENCE(full_hit_cached);
FRUGAL_NEW_SEQUENCE(full_hit_live);
FRUGAL_NEW_SEQUENCE(prefix_caching_off);

// ---- BM_export ---------------------------------------------------------------------------------

constexpr std::size_t batch_sequences = 256;
constexpr std::size_t pages_per_sequence = 256;

/// 256 sequences of 256 pages each (4,081-4,096 tokens, so last page lengths vary).
struct export_fixture {
  frugal::kv::cache kv{model_layout(),
                       static_cast<std::uint32_t>(batch_sequences* pages_per_sequence + 64),
                       device_memory(),
                       {.enable_prefix_caching = false, .watermark = 0}};
  std::vector<frugal::kv::sequence> sequences;
  std::vector<const frugal::kv::sequence*> batch;

  export_fixture() {
    std::mt19937_64 rng(17);
    const std::size_t page_size = model_layout().page_size;
    for (std::size_t i = 0; i < batch_sequences; ++i)
      sequences.push_back(
          kv.add_sequence(random_tokens(pages_per_sequence * page_size - i % page_size, rng)));
    for (const auto& s : sequences) batch.push_back(&s);
  }
};

void BM_export(benchmark::State& state, const char* format) {
  static export_fixture fixture;  // built once: 65,536 pages in use
  const std::string_view name = format;
  const auto& kv = fixture.kv;
  const std::span<const frugal::kv::sequence* const> batch = fixture.batch;
  const std::size_t total_pages = batch_sequences * pages_per_sequence;
  // Caller buffers, sized once as an engine would (its pinned staging buffers).
  std::vector<std::int32_t> tables(batch_sequences * pages_per_sequence), lens(batch_sequences);
  std::vector<std::int32_t> indptr(batch_sequences + 1), indices(total_pages),
      last_page_len(batch_sequences);
  std::size_t exports = 0;
  for (auto _ : state) {
    if (name == "block_tables") {
      auto t = kv.export_block_tables(batch);
      benchmark::DoNotOptimize(t.tables.data());
    } else if (name == "block_tables_into") {
      kv.export_block_tables(batch, pages_per_sequence, tables, lens);
      benchmark::DoNotOptimize(tables.data());
    } else if (name == "flashinfer") {
      auto t = kv.export_flashinfer(batch);
      benchmark::DoNotOptimize(t.indices.data());
    } else if (name == "flashinfer_into") {
      kv.export_flashinfer(batch, indptr, indices, last_page_len);
      benchmark::DoNotOptimize(indices.data());
    } else if (name == "naive_vector_of_vectors") {
      std::vector<std::vector<int>> rows;
      std::vector<int> seq_lens;
      for (const frugal::kv::sequence* s : batch) {
        rows.emplace_back(s->pages().begin(), s->pages().end());
        seq_lens.push_back(static_cast<int>(s->num_tokens()));
      }
      benchmark::DoNotOptimize(rows.data());
      benchmark::DoNotOptimize(seq_lens.data());
    }
    benchmark::ClobberMemory();
    ++exports;
  }
  state.counters["time_per_export"] = per_item(exports);
  state.counters["pages"] = static_cast<double>(total_pages);
}
#define FRUGAL_EXPORT(format) \
  BENCHMARK_CAPTURE(BM_export, format, #format)->Unit(benchmark::kMicrosecond)
FRUGAL_EXPORT(block_tables);
FRUGAL_EXPORT(block_tables_into);
FRUGAL_EXPORT(flashinfer);
FRUGAL_EXPORT(flashinfer_into);
FRUGAL_EXPORT(naive_vector_of_vectors);

// ---- BM_metadata -------------------------------------------------------------------------------

/// Host bookkeeping per page, everything counted (cache::metadata_bytes_per_page): on an empty
/// cache, and on one filled with sequences of `tokens_per_sequence` tokens (their page tables and
/// partial-page tokens included).
void BM_metadata(benchmark::State& state, bool prefix_caching, std::size_t tokens_per_sequence) {
  const auto num_pages = static_cast<std::uint32_t>(state.range(0));
  frugal::kv::cache kv{model_layout(),
                       num_pages,
                       device_memory(),
                       {.enable_prefix_caching = prefix_caching, .watermark = 0.0}};
  std::vector<frugal::kv::sequence> live;
  std::vector<frugal::kv::token_id> prompt(tokens_per_sequence);
  for (int first = 0; tokens_per_sequence > 0; first += 1'000'000) {
    std::iota(prompt.begin(), prompt.end(), first);  // distinct prompts: no sharing
    auto seq = kv.try_add_sequence(prompt);
    if (!seq) break;
    live.push_back(std::move(*seq));
  }
  for (auto _ : state) benchmark::DoNotOptimize(kv.metadata_bytes_per_page());
  state.counters["metadata_bytes_per_page"] = kv.metadata_bytes_per_page();
  state.counters["sequences"] = static_cast<double>(live.size());
}
BENCHMARK_CAPTURE(BM_metadata, empty, true, 0)
    ->ArgName("num_pages")
    ->Arg(4096)
    ->Arg(65536)
    ->Arg(262144)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_metadata, full_of_256_token_sequences, true, 256)
    ->ArgName("num_pages")
    ->Arg(65536)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_metadata, full_of_2048_token_sequences, true, 2048)
    ->ArgName("num_pages")
    ->Arg(65536)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_metadata, prefix_caching_off_full_2048, false, 2048)
    ->ArgName("num_pages")
    ->Arg(65536)
    ->Iterations(1);

// ---- BM_memory_efficiency ----------------------------------------------------------------------
//
// A saturated server: every request is queued at step 0 and admitted first come, first served.
// Each step admits from the head of the queue while the policy has room, then every running
// sequence gains one output token (decode), and a sequence that reached its output length is
// released at once. Waste is time-averaged over all steps: the sum of allocated-but-empty token
// slots divided by the sum of allocated slots. Concurrency is the running count after admission;
// max_concurrent is its maximum, mean_concurrent its mean over the steps in which requests were
// still waiting (the saturated phase, before the queue drains). utilization is, over the same
// steps, the share of the budget's token slots that hold a token (free pages count against it,
// where waste only looks at allocated ones).

constexpr std::size_t max_length = 4096;
constexpr std::size_t budget_pages = 8192;  // 131,072 token slots: 16 GiB of 2 MiB pages
constexpr std::size_t num_requests = 4000;

struct request {
  std::vector<token_id> prompt;
  std::size_t output = 0;
};

/// ShareGPT-like lengths: the simulator's ShareGPT workload (frugal/sim/workload.hpp: lognormal,
/// sigma 1, means 161.31 and 337.99 tokens, clipped to max_length in total).
const std::vector<request>& sharegpt_like() {
  static const std::vector<request> requests = [] {
    std::mt19937_64 rng(2026);
    frugal::sim::length_sampler lengths{{.kind = frugal::sim::workload::sharegpt,
                                         .max_len = static_cast<std::uint32_t>(max_length)}};
    std::vector<request> r(num_requests);
    for (request& q : r) {
      const frugal::sim::request_lengths l = lengths(rng);
      q.prompt = random_tokens(l.prompt, rng);
      q.output = l.output;
    }
    return r;
  }();
  return requests;
}

struct sim_result {
  double waste = 0;
  double utilization = 0;
  std::size_t max_concurrent = 0;
  double mean_concurrent = 0;
  std::size_t steps = 0;
  std::size_t preemptions = 0;
};

/// Tracks the time-averaged counters of a simulation.
struct sim_meter {
  double allocated = 0, empty = 0, used = 0, concurrency_sum = 0;
  std::size_t saturated_steps = 0, max_concurrent = 0, steps = 0;
  void step(std::size_t running, bool queue_waiting, double slots_allocated, double slots_used) {
    ++steps;
    max_concurrent = std::max(max_concurrent, running);
    if (queue_waiting) {
      concurrency_sum += static_cast<double>(running);
      used += slots_used;
      ++saturated_steps;
    }
    allocated += slots_allocated;
    empty += slots_allocated - slots_used;
  }
  sim_result result(std::size_t preemptions) const {
    const double budget_slots = static_cast<double>(budget_pages * model_layout().page_size);
    return {allocated == 0 ? 0 : empty / allocated,
            saturated_steps == 0 ? 0 : used / (budget_slots * static_cast<double>(saturated_steps)),
            max_concurrent,
            saturated_steps == 0 ? 0 : concurrency_sum / saturated_steps,
            steps,
            preemptions};
  }
};

/// The baseline: every admitted sequence reserves max_length token slots up front (a
/// contiguous per-request KV buffer, as engines without paging allocate).
sim_result simulate_static_reservation() {
  const auto& requests = sharegpt_like();
  const std::size_t budget_slots = budget_pages * model_layout().page_size;
  struct running {
    std::size_t tokens, left;
  };
  std::vector<running> live;
  std::size_t next = 0;
  sim_meter meter;
  while (next < requests.size() || !live.empty()) {
    while (next < requests.size() && (live.size() + 1) * max_length <= budget_slots) {
      live.push_back({requests[next].prompt.size(), requests[next].output});
      ++next;
    }
    std::size_t tokens = 0;
    for (const running& r : live) tokens += r.tokens;
    meter.step(live.size(), next < requests.size(), static_cast<double>(live.size() * max_length),
               static_cast<double>(tokens));
    for (running& r : live) ++r.tokens, --r.left;
    std::erase_if(live, [](const running& r) { return r.left == 0; });
  }
  return meter.result(0);
}

/// frugal: admit while the prompt's pages fit (try_add_sequence, default watermark), append one
/// token per step (try_append allocates a page only when one fills), release on finish. When an
/// append finds no free page, the most recently admitted sequence is preempted (released and put
/// back at the head of the queue to be recomputed), vLLM's recompute policy.
sim_result simulate_frugal_cache() {
  const auto& requests = sharegpt_like();
  frugal::kv::cache kv{model_layout(), static_cast<std::uint32_t>(budget_pages), device_memory()};
  struct running {
    std::size_t request;
    std::size_t left;
    frugal::kv::sequence seq;
  };
  std::deque<running> live;  // in admission order
  std::deque<std::size_t> queue(requests.size());
  std::iota(queue.begin(), queue.end(), std::size_t{0});
  std::size_t preemptions = 0;
  token_id next_token = 1;
  sim_meter meter;
  while (!queue.empty() || !live.empty()) {
    while (!queue.empty()) {
      const request& r = requests[queue.front()];
      auto seq = kv.try_add_sequence(r.prompt);
      if (!seq) break;
      live.push_back({queue.front(), r.output, std::move(*seq)});
      queue.pop_front();
    }
    const auto st = kv.stats();
    meter.step(live.size(), !queue.empty(), static_cast<double>(st.slots_allocated),
               static_cast<double>(st.slots_used));
    for (std::size_t i = 0; i < live.size();) {
      const token_id generated[] = {next_token++};
      bool preempted_self = false;
      while (!kv.try_append(live[i].seq, generated)) {
        // Out of pages: recompute the newest sequence later.
        running& victim = live.back();
        victim.seq.release();
        queue.push_front(victim.request);
        ++preemptions;
        preempted_self = (live.size() - 1 == i);
        live.pop_back();
        if (preempted_self) break;
      }
      if (preempted_self) break;  // i was the newest: nothing after it runs this step
      if (--live[i].left == 0) {
        live[i].seq.release();
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }
  return meter.result(preemptions);
}

void BM_memory_efficiency(benchmark::State& state, const char* policy) {
  const std::string_view name = policy;
  sim_result r;
  for (auto _ : state)
    r = name == "static_reservation" ? simulate_static_reservation() : simulate_frugal_cache();
  const auto& requests = sharegpt_like();
  double prompt_sum = 0, output_sum = 0;
  for (const request& q : requests) {
    prompt_sum += static_cast<double>(q.prompt.size());
    output_sum += static_cast<double>(q.output);
  }
  state.counters["waste"] = r.waste;
  state.counters["utilization"] = r.utilization;
  state.counters["max_concurrent"] = static_cast<double>(r.max_concurrent);
  state.counters["mean_concurrent"] = r.mean_concurrent;
  state.counters["decode_steps"] = static_cast<double>(r.steps);
  state.counters["preemptions"] = static_cast<double>(r.preemptions);
  state.counters["requests"] = static_cast<double>(requests.size());
  state.counters["mean_prompt"] = prompt_sum / static_cast<double>(requests.size());
  state.counters["mean_output"] = output_sum / static_cast<double>(requests.size());
  state.counters["budget_pages"] = static_cast<double>(budget_pages);
}
BENCHMARK_CAPTURE(BM_memory_efficiency, static_reservation, "static_reservation")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_memory_efficiency, frugal_cache, "frugal_cache")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
