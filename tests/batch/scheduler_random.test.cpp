// Random request streams through the scheduler: after every step the cache is consistent, the
// plan respects every limit, and in the end every request finishes and every page is free.
#include <frugal/batch/scheduler.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

using frugal::batch::preemption_mode;
using frugal::batch::request;
using frugal::batch::scheduler;
using frugal::kv::token_id;

namespace {
struct scenario {
  std::uint64_t seed;
  preemption_mode mode;
  bool chunked;
  bool prefix_caching;
  int requests;
};

void run(const scenario& sc) {
  INFO("seed " << sc.seed << " mode " << static_cast<int>(sc.mode) << " chunked " << sc.chunked);
  std::mt19937_64 rng(sc.seed);
  frugal::host_resource host;
  const frugal::kv::layout layout{
      .num_layers = 1, .num_kv_heads = 1, .head_dim = 2, .page_size = 4};
  frugal::kv::cache kv{
      layout,
      48,
      host,
      {.enable_prefix_caching = sc.prefix_caching, .watermark = 0.0, .host_pages = 32}};
  const std::uint32_t budget = 24;
  scheduler s{kv,
              {.max_num_seqs = 8,
               .max_batched_tokens = budget,
               .watermark = 0.05,
               .chunked_prefill = sc.chunked,
               .preemption = sc.mode,
               .eos_token = 0}};
  std::map<std::uint64_t, std::uint32_t> max_new;  // submitted, not finished or rejected
  std::set<std::uint64_t> done;
  std::uint64_t next_id = 1;
  int submitted = 0;
  const std::vector<token_id> system{11, 12, 13, 14, 15, 16, 17, 18};
  for (int step = 0; step < 200000 && (submitted < sc.requests || s.has_unfinished()); ++step) {
    // Arrivals: a few per step, some sharing a system prompt.
    while (submitted < sc.requests && rng() % 3 == 0) {
      request r;
      r.id = next_id++;
      if (rng() % 2 == 0) r.prompt = system;
      const int extra = 1 + static_cast<int>(rng() % 20);
      for (int i = 0; i < extra; ++i) r.prompt.push_back(1 + static_cast<token_id>(rng() % 50));
      r.max_new_tokens = 1 + static_cast<std::uint32_t>(rng() % 40);
      r.priority = static_cast<int>(rng() % 3);
      max_new[r.id] = r.max_new_tokens;
      s.submit(std::move(r));
      ++submitted;
    }
    const auto plan = s.plan_step();
    for (const auto& [id, reason] : plan.rejected) {
      REQUIRE_FALSE(reason.empty());
      max_new.erase(id);
    }
    REQUIRE(plan.num_batched_tokens <= budget);
    REQUIRE(plan.sequences.size() <= 8);
    REQUIRE(s.num_running() <= 8);
    std::size_t tokens = 0;
    std::set<std::uint64_t> ids;
    bool decodes_done = false;
    for (const auto& seq : plan.sequences) {
      REQUIRE(ids.insert(seq.id).second);  // a sequence appears once per step
      if (seq.prefill)
        decodes_done = true;
      else
        REQUIRE_FALSE(decodes_done);  // decodes come before prefills
      tokens += seq.num_tokens;
    }
    REQUIRE(tokens == plan.num_batched_tokens);
    REQUIRE(plan.slot_mapping.size() == tokens);
    REQUIRE(std::set<std::int64_t>(plan.slot_mapping.begin(), plan.slot_mapping.end()).size() ==
            tokens);  // no two tokens share a slot
    REQUIRE(kv.is_valid());
    frugal::kv::perform_copies_host(kv, plan.copies);
    std::vector<std::pair<std::uint64_t, token_id>> sampled;
    for (const auto& seq : plan.sequences)
      if (seq.samples)
        sampled.emplace_back(seq.id, rng() % 25 == 0 ? 0 : 1 + static_cast<token_id>(rng() % 50));
    s.complete_step(sampled);
    for (auto& f : s.take_finished()) {
      REQUIRE(max_new.contains(f.id));
      REQUIRE(f.output.size() <= max_new[f.id]);
      REQUIRE((f.hit_eos || f.output.size() == max_new[f.id]));
      max_new.erase(f.id);
      done.insert(f.id);
    }
  }
  CHECK(submitted == sc.requests);
  CHECK(max_new.empty());  // no starvation: everything finished or was rejected
  CHECK_FALSE(s.has_unfinished());
  CHECK(kv.stats().used_pages == 0);
  CHECK(kv.host_pages()->num_free() == 32);
  CHECK(kv.is_valid());
}
}  // namespace

TEST_CASE("scheduler: random request streams finish with every page accounted for") {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    run({seed, preemption_mode::recompute, true, true, 400});
    run({seed, preemption_mode::swap, true, true, 400});
    run({seed, preemption_mode::recompute, false, false, 400});
  }
}

TEST_CASE("scheduler: long random request streams", "[long]") {
  for (std::uint64_t seed = 10; seed < 20; ++seed) {
    run({seed, preemption_mode::recompute, true, true, 20000});
    run({seed, preemption_mode::swap, seed % 2 == 0, true, 20000});
  }
}
