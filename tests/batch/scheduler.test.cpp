#include <frugal/batch/scheduler.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <numeric>
#include <vector>

using frugal::batch::preemption_mode;
using frugal::batch::request;
using frugal::batch::scheduler;
using frugal::batch::step_plan;
using frugal::kv::token_id;

namespace {
frugal::kv::layout tiny_layout() {
  return {.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .page_size = 4};
}
std::vector<token_id> prompt_of(int first, int count) {
  std::vector<token_id> t(static_cast<std::size_t>(count));
  std::iota(t.begin(), t.end(), first);
  return t;
}
request make(std::uint64_t id, int prompt_len, std::uint32_t max_new, int priority = 0,
             int first = 0) {
  return {.id = id,
          .prompt = prompt_of(first == 0 ? static_cast<int>(id) * 1000 : first, prompt_len),
          .max_new_tokens = max_new,
          .priority = priority};
}
/// Completes a planned step, sampling token 7 for every sequence that samples.
void complete(scheduler& s, const step_plan& plan) {
  std::vector<std::pair<std::uint64_t, token_id>> sampled;
  for (const auto& seq : plan.sequences)
    if (seq.samples) sampled.emplace_back(seq.id, 7);
  s.complete_step(sampled);
}
/// Tokens each request computes in a plan, by id.
std::map<std::uint64_t, std::uint32_t> tokens_by_id(const step_plan& plan) {
  std::map<std::uint64_t, std::uint32_t> m;
  for (const auto& seq : plan.sequences) m[seq.id] = seq.num_tokens;
  return m;
}
}  // namespace

TEST_CASE("scheduler: bad requests are refused at submit and nothing is queued") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 16, host};
  scheduler s{kv, {.max_model_len = 40}};
  s.submit(make(1, 8, 4));
  CHECK_THROWS_AS(s.submit(make(1, 8, 4)), frugal::invalid_argument);  // duplicate id
  CHECK_THROWS_AS(s.submit(make(2, 0, 4)), frugal::invalid_argument);  // empty prompt
  CHECK_THROWS_AS(s.submit(make(3, 8, 0)), frugal::invalid_argument);  // nothing to generate
  try {
    s.submit(make(4, 30, 20));  // 50 > max_model_len
    FAIL("accepted a request beyond the context");
  } catch (const frugal::invalid_argument& e) {
    CHECK(std::string(e.what()).find("exceeds max_model_len 40") != std::string::npos);
  }
  CHECK(s.num_waiting() == 1);
}

TEST_CASE("scheduler: a request that can never fit is rejected with a reason, not left waiting") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 8, host};  // 32 token slots
  scheduler s{kv, {.watermark = 0.0}};
  s.submit(make(1, 20, 20));  // 40 tokens: 10 pages > 8
  CHECK(s.num_waiting() == 0);
  const auto plan = s.plan_step();
  REQUIRE(plan.rejected.size() == 1);
  CHECK(plan.rejected[0].first == 1);
  CHECK(plan.rejected[0].second.find("more pages than the cache can ever give") !=
        std::string::npos);
  CHECK_FALSE(s.has_unfinished());
}

TEST_CASE("scheduler: prefill, then one decode per step until max_new_tokens") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 16, host};
  scheduler s{kv, {.watermark = 0.0}};
  s.submit(make(1, 10, 3));
  auto plan = s.plan_step();
  REQUIRE(plan.sequences.size() == 1);
  CHECK(plan.sequences[0].prefill);
  CHECK(plan.sequences[0].num_tokens == 10);
  CHECK(plan.sequences[0].samples);
  CHECK(plan.slot_mapping.size() == 10);
  CHECK(plan.block_tables.seq_lens == std::vector<std::int32_t>{10});
  complete(s, plan);  // first output token
  for (int step = 0; step < 2; ++step) {
    plan = s.plan_step();
    REQUIRE(plan.sequences.size() == 1);
    CHECK_FALSE(plan.sequences[0].prefill);
    CHECK(plan.sequences[0].num_tokens == 1);
    CHECK(plan.sequences[0].context_len == 11u + static_cast<unsigned>(step));
    REQUIRE(plan.slot_mapping.size() == 1);
    // The decode's slot is the position of the token it appends, inside its last page.
    const auto pages = plan.block_tables.tables;
    const std::int64_t position = 10 + step;
    CHECK(plan.slot_mapping[0] == pages[static_cast<std::size_t>(position / 4)] * 4 + position % 4);
    complete(s, plan);
  }
  const auto done = s.take_finished();
  REQUIRE(done.size() == 1);
  CHECK(done[0].output == std::vector<token_id>{7, 7, 7});
  CHECK_FALSE(s.has_unfinished());
  CHECK(kv.stats().used_pages == 0);
  CHECK(kv.is_valid());
}

TEST_CASE("scheduler: decodes go first, then prefill chunks that are page multiples") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 64, host};
  scheduler s{kv, {.max_batched_tokens = 10, .watermark = 0.0}};
  s.submit(make(1, 4, 10));
  complete(s, s.plan_step());  // request 1 prefilled, now decoding
  s.submit(make(2, 22, 2));
  auto plan = s.plan_step();
  REQUIRE(plan.sequences.size() == 2);
  CHECK(plan.sequences[0].id == 1);  // the decode first
  CHECK_FALSE(plan.sequences[0].prefill);
  CHECK(plan.sequences[1].id == 2);
  CHECK(plan.sequences[1].num_tokens == 8);  // 9 left in the budget, rounded down to pages
  CHECK_FALSE(plan.sequences[1].samples);
  CHECK(plan.num_batched_tokens == 9);
  complete(s, plan);
  plan = s.plan_step();
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{1, 1}, {2, 8}});
  complete(s, plan);
  plan = s.plan_step();
  CHECK(tokens_by_id(plan) ==
        std::map<std::uint64_t, std::uint32_t>{{1, 1}, {2, 6}});  // last chunk
  CHECK(plan.sequences[1].samples);
  complete(s, plan);
}

TEST_CASE("scheduler: max_num_seqs and the token budget bound a step") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 64, host};
  scheduler s{kv, {.max_num_seqs = 2, .max_batched_tokens = 64, .watermark = 0.0}};
  for (std::uint64_t id = 1; id <= 3; ++id) s.submit(make(id, 4, 2));
  auto plan = s.plan_step();
  CHECK(plan.sequences.size() == 2);
  CHECK(s.num_running() == 2);
  CHECK(s.num_waiting() == 1);
  complete(s, plan);
  complete(s, s.plan_step());  // both finish (2 tokens each)
  plan = s.plan_step();
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{3, 4}});
}

TEST_CASE("scheduler: admission waits for pages, keeping the watermark free") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 10, host};
  scheduler s{kv, {.watermark = 0.2}};  // 2 pages kept free for running sequences
  s.submit(make(1, 24, 2));             // 6 pages
  s.submit(make(2, 12, 2));             // 3 pages: 6 + 3 > 10 - 2
  auto plan = s.plan_step();
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{1, 24}});
  CHECK(s.num_waiting() == 1);
  complete(s, plan);
  complete(s, s.plan_step());  // request 1 finishes, its pages come back
  plan = s.plan_step();
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{2, 12}});
}

TEST_CASE("scheduler: out of pages, the most recently admitted sequence is recomputed later") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 4, host, {.enable_prefix_caching = false}};  // 16 slots
  scheduler s{kv, {.watermark = 0.0}};
  s.submit(make(1, 4, 8));  // one full page each, then growing
  s.submit(make(2, 4, 8));
  complete(s, s.plan_step());                              // both prefilled: 2 pages used
  for (int i = 0; i < 4; ++i) complete(s, s.plan_step());  // tokens 5-8: 4 pages used, all full
  auto plan = s.plan_step();  // both need a fifth page: request 2 (admitted last) yields
  REQUIRE(plan.preempted == std::vector<std::uint64_t>{2});
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{1, 1}});
  CHECK(s.num_waiting() == 1);
  complete(s, plan);
  while (s.has_unfinished()) complete(s, s.plan_step());
  auto done = s.take_finished();
  REQUIRE(done.size() == 2);
  CHECK(done[0].id == 1);
  CHECK(done[1].id == 2);
  CHECK(done[1].output.size() == 8);  // its tokens survived the recompute
  CHECK(done[1].preemptions == 1);
  CHECK(s.stats().preemptions == 1);
  CHECK(kv.stats().used_pages == 0);
  CHECK(kv.is_valid());
}

TEST_CASE("scheduler: the lowest priority is preempted first, even if admitted earlier") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 4, host, {.enable_prefix_caching = false}};
  scheduler s{kv, {.watermark = 0.0}};
  s.submit(make(1, 4, 8, /*priority=*/0));
  s.submit(make(2, 4, 8, /*priority=*/5));
  for (int i = 0; i < 5; ++i) complete(s, s.plan_step());
  const auto plan = s.plan_step();
  CHECK(plan.preempted == std::vector<std::uint64_t>{1});
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{2, 1}});
  complete(s, plan);
}

TEST_CASE("scheduler: swap preemption moves pages to the host tier and back") {
  frugal::host_resource host;
  frugal::kv::cache kv{
      tiny_layout(), 4, host, {.enable_prefix_caching = false, .watermark = 0.0, .host_pages = 8}};
  scheduler s{kv, {.watermark = 0.0, .preemption = preemption_mode::swap}};
  s.submit(make(1, 4, 6));
  s.submit(make(2, 4, 6));
  for (int i = 0; i < 5; ++i) complete(s, s.plan_step());
  auto plan = s.plan_step();
  REQUIRE(plan.preempted == std::vector<std::uint64_t>{2});
  CHECK(s.num_swapped() == 1);
  REQUIRE_FALSE(plan.copies.empty());
  CHECK(plan.copies.back().kind == frugal::kv::copy_kind::device_to_host);
  frugal::kv::perform_copies_host(kv, plan.copies);
  complete(s, plan);
  bool swapped_back = false;
  while (s.has_unfinished()) {
    plan = s.plan_step();
    for (const auto& op : plan.copies)
      swapped_back |= op.kind == frugal::kv::copy_kind::host_to_device;
    frugal::kv::perform_copies_host(kv, plan.copies);
    complete(s, plan);
  }
  CHECK(swapped_back);
  const auto done = s.take_finished();
  REQUIRE(done.size() == 2);
  CHECK(done[1].output.size() == 6);
  CHECK(s.stats().swaps_out == 1);
  CHECK(s.stats().swaps_in == 1);
  CHECK(kv.stats().used_pages == 0);
  CHECK(kv.host_pages()->num_free() == 8);
}

TEST_CASE("scheduler: swap preemption needs a host tier") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 4, host};
  CHECK_THROWS_AS((scheduler{kv, {.preemption = preemption_mode::swap}}), frugal::invalid_argument);
  CHECK_THROWS_AS((scheduler{kv, {.max_num_seqs = 0}}), frugal::invalid_argument);
}

TEST_CASE("scheduler: prefix hits shorten the prefill") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 32, host};
  scheduler s{kv, {.watermark = 0.0}};
  s.submit(make(1, 13, 1, 0, /*first=*/500));
  complete(s, s.plan_step());  // finishes after its first token; its full pages stay cached
  s.submit(make(2, 13, 1, 0, /*first=*/500));
  const auto plan = s.plan_step();
  CHECK(tokens_by_id(plan) == std::map<std::uint64_t, std::uint32_t>{{2, 1}});  // 12 from cache
  CHECK(s.stats().prefix_hit_tokens == 12);
  complete(s, plan);
}

TEST_CASE("scheduler: complete_step refuses tokens for sequences that did not sample") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 32, host};
  scheduler s{kv, {.max_batched_tokens = 8, .watermark = 0.0}};
  s.submit(make(1, 4, 4));
  s.submit(make(2, 12, 4));  // only a first chunk fits: it does not sample
  const auto plan = s.plan_step();
  const std::vector<std::pair<std::uint64_t, token_id>> wrong{{1, 7}, {2, 7}};
  CHECK_THROWS_AS(s.complete_step(wrong), frugal::invalid_argument);
  const std::vector<std::pair<std::uint64_t, token_id>> twice{{1, 7}, {1, 7}};
  CHECK_THROWS_AS(s.complete_step(twice), frugal::invalid_argument);
  CHECK_THROWS_AS(s.complete_step({}), frugal::invalid_argument);  // 1 sampled, none given
  complete(s, plan);  // the right list is still accepted: nothing was recorded before
  CHECK(s.take_finished().empty());
}

TEST_CASE("scheduler: a chunked prompt's page tables cover only what attention reads") {
  frugal::host_resource host;
  frugal::kv::cache kv{tiny_layout(), 32, host, {.enable_prefix_caching = true, .watermark = 0}};
  scheduler s{kv, {.max_batched_tokens = 6, .watermark = 0}};
  s.submit(make(1, 14, 2));
  // Step 1: 4 of 14 prompt tokens (chunks are whole pages): one page, 4 tokens, although all
  // four of the prompt's pages are allocated.
  const step_plan& first = s.plan_step();
  REQUIRE(first.sequences.size() == 1);
  CHECK(first.sequences[0].context_len == 4);
  CHECK(first.page_table.indptr == std::vector<std::int32_t>{0, 1});
  CHECK(first.page_table.indices.size() == 1);
  CHECK(first.page_table.last_page_len == std::vector<std::int32_t>{4});
  CHECK(first.block_tables.seq_lens == std::vector<std::int32_t>{4});
  CHECK(first.slot_mapping.size() == 4);
  complete(s, first);
  // Step 2: tokens 4..7; the table grows to two pages.
  const step_plan& second = s.plan_step();
  CHECK(second.sequences[0].context_len == 8);
  CHECK(second.page_table.indptr == std::vector<std::int32_t>{0, 2});
  CHECK(second.block_tables.seq_lens == std::vector<std::int32_t>{8});
  complete(s, second);
  // An equal prompt submitted now reuses only pages whose tokens were scheduled before it (8
  // by the end of step 2, 12 by step 3, when it is admitted), never the prompt's later pages.
  s.submit(make(2, 14, 2, 0, 1000));
  std::int64_t first_computed = -1;
  std::uint32_t request_one_context = 0;
  for (int step = 0; step < 4 && first_computed < 0; ++step) {
    const step_plan& plan = s.plan_step();
    for (const auto& seq : plan.sequences) {
      if (seq.id == 1) request_one_context = seq.context_len;
      if (seq.id == 2) first_computed = seq.context_len - seq.num_tokens;
    }
    complete(s, plan);
  }
  CHECK(first_computed >= 8);
  CHECK(first_computed <= static_cast<std::int64_t>(request_one_context));
  CHECK(first_computed % 4 == 0);
}
