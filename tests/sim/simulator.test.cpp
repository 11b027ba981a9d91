#include <frugal/sim/simulator.hpp>

#include <catch2/catch.hpp>

#include <string>

using frugal::sim::config;
using frugal::sim::result;

namespace {

constexpr std::size_t gib = std::size_t{1} << 30;
constexpr std::size_t mib = std::size_t{1} << 20;

bool mentions(const std::exception& e, const std::string& text) {
  return std::string(e.what()).find(text) != std::string::npos;
}

/// What every run must satisfy: nothing lost, nothing leaked, nothing over budget.
void check_accounting(const config& c, const result& r) {
  CHECK(r.finished + r.rejected == c.num_requests);
  CHECK(r.rejections.size() == r.rejected);
  for (const auto& [id, reason] : r.rejections) CHECK_FALSE(reason.empty());
  CHECK(r.cache_valid);
  CHECK(r.leaked_pages == 0);
  CHECK(r.peak_kv_bytes <= r.kv_budget_bytes);
  CHECK(r.peak_workspace_bytes <= r.workspace_budget_bytes);
  CHECK(r.peak_memory_bytes <= c.gpu_memory);
}

/// gpu_memory that leaves `kv_bytes` for the KV after the weights and workspace of `c`.
std::size_t budget_with_kv(config c, std::size_t kv_bytes) {
  c.num_requests = 1;
  c.gpu_memory = 80 * gib;
  c.workload = frugal::sim::workload::fixed;
  c.fixed_prompt = 1;
  c.fixed_output = 1;
  const result probe = frugal::sim::run(c);
  const std::size_t weights = (probe.weight_bytes + 2 * mib - 1) / (2 * mib) * (2 * mib);
  return weights + probe.workspace_budget_bytes + kv_bytes;
}

}  // namespace

TEST_CASE("sim: model presets match their published parameter counts") {
  for (const auto& m : frugal::sim::model_presets) {
    INFO(m.name);
    CHECK(m.parameters_from_shape() == m.num_parameters);
  }
  const auto& llama3 = frugal::sim::find_model("llama-3-8b");
  CHECK(llama3.kv_bytes_per_token(frugal::kv::dtype::fp16) == 128 * 1024);  // 32 x 8 x 128 x 2 x 2
  CHECK(llama3.kv_bytes_per_token(frugal::kv::dtype::fp8_e4m3) == 64 * 1024);
  CHECK(llama3.kv_layout(frugal::kv::dtype::fp16).page_bytes() == 2 * mib);
  CHECK(frugal::sim::find_model("llama-2-13b").kv_bytes_per_token(frugal::kv::dtype::fp16) ==
        800 * 1024);  // no GQA: 40 x 40 x 128 x 2 x 2
  CHECK(frugal::sim::weight_bytes(llama3, frugal::sim::weight_format::fp16) ==
        2 * llama3.num_parameters);
  CHECK(frugal::sim::weight_bytes(llama3, frugal::sim::weight_format::bf16) ==
        2 * llama3.num_parameters);
  CHECK(frugal::sim::weight_bytes(llama3, frugal::sim::weight_format::fp8) ==
        llama3.num_parameters);
  CHECK(frugal::sim::weight_bytes(llama3, frugal::sim::weight_format::int8) ==
        llama3.num_parameters);
  CHECK(frugal::sim::weight_bytes(llama3, frugal::sim::weight_format::int4) ==
        llama3.num_parameters / 2);
}

TEST_CASE("sim: unknown names and impossible budgets are refused, listing what is known") {
  config c{.num_requests = 10};
  const auto refuses = [](config bad, const std::string& text) {
    try {
      (void)frugal::sim::run(bad);
      FAIL("accepted a bad config");
    } catch (const frugal::invalid_argument& e) {
      INFO(e.what());
      CHECK(mentions(e, text));
    }
  };
  config bad = c;
  bad.model = "gpt-5";
  refuses(bad, "\"llama-3-8b\", \"llama-2-13b\", \"mistral-7b\", \"qwen2.5-7b\"");
  bad = c;
  bad.model = "llama-2-13b";
  bad.max_len = 8192;
  refuses(bad, "context of 4096");
  bad = c;
  bad.gpu_memory = 16 * gib;  // 8B parameters in fp16 alone are 15 GiB
  refuses(bad, "does not hold");
  refuses(bad, "llama-3-8b's fp16 weights");
  bad.weights = frugal::sim::weight_format::bf16;
  refuses(bad, "llama-3-8b's bf16 weights");
  bad.weight_bytes_override = 15 * gib;
  bad.weights_label = "int4_g64";
  refuses(bad, "llama-3-8b's int4_g64 weights");
  bad = c;
  bad.num_requests = 0;
  refuses(bad, "num_requests");
  bad = c;
  bad.policy = frugal::sim::policy::static_batching;
  bad.max_batch = 1000;  // x 4,096 tokens x 128 KiB = 500 GiB
  refuses(bad, "does not fit");
}

TEST_CASE("sim: the names of policies, workloads and weight formats parse and print back") {
  using frugal::sim::parse_policy;
  using frugal::sim::parse_weight_format;
  using frugal::sim::parse_workload;
  CHECK(frugal::sim::workloads() == std::vector<std::string>{"sharegpt", "alpaca", "fixed"});
  CHECK(frugal::sim::policies() == std::vector<std::string>{"static", "dynamic"});
  for (const std::string& name : frugal::sim::policies())
    CHECK(frugal::sim::to_string(parse_policy(name)) == name);
  CHECK(parse_policy("static") == frugal::sim::policy::static_batching);
  CHECK(parse_policy("dynamic") == frugal::sim::policy::dynamic);
  for (const auto& f : frugal::sim::weight_formats) {
    CHECK(parse_weight_format(f.name) == f.kind);
    CHECK(frugal::sim::to_string(f.kind) == f.name);
    CHECK(frugal::sim::weight_bits(f.kind) == f.bits);
  }
  CHECK(parse_workload("alpaca") == frugal::sim::workload::alpaca);

  // An unknown name: invalid_argument listing the known ones, and the config keeps its value.
  const auto refuses = [](auto parse, const std::string& name, const std::string& known) {
    try {
      (void)parse(name);
      FAIL("accepted \"" + name + "\"");
    } catch (const frugal::invalid_argument& e) {
      INFO(e.what());
      CHECK(mentions(e, "\"" + name + "\""));
      CHECK(mentions(e, known));
    }
  };
  config c;
  const config before = c;
  refuses([&](const std::string& n) { return c.workload = parse_workload(n); }, "lmsys",
          "known: \"sharegpt\", \"alpaca\", \"fixed\"");
  refuses([&](const std::string& n) { return c.policy = parse_policy(n); }, "greedy",
          "known: \"static\", \"dynamic\"");
  refuses([&](const std::string& n) { return c.policy = parse_policy(n); }, "Static",
          "known: \"static\", \"dynamic\"");
  refuses([&](const std::string& n) { return c.weights = parse_weight_format(n); }, "fp4",
          "known: \"fp16\", \"bf16\", \"fp8\", \"int8\", \"int4\"");
  refuses([&](const std::string& n) { return c.weights = parse_weight_format(n); }, "",
          "known: \"fp16\"");
  CHECK(c.workload == before.workload);
  CHECK(c.policy == before.policy);
  CHECK(c.weights == before.weights);
}

TEST_CASE("sim: static batching, fixed lengths, counted by hand") {
  // 10 requests of 100 + 10 tokens in batches of 4: 4, 4, 2. A batch of 4 prefills 400 tokens in
  // two steps (256 + 144; the second samples each first token), then 9 decode steps of 4
  // tokens; the batch of 2 prefills in one step, then 9 steps of 2.
  const config c{.model = "llama-3-8b",
                 .gpu_memory = 20 * gib,
                 .workload = frugal::sim::workload::fixed,
                 .num_requests = 10,
                 .max_len = 128,
                 .fixed_prompt = 100,
                 .fixed_output = 10,
                 .policy = frugal::sim::policy::static_batching,
                 .max_batched_tokens = 256,
                 .max_batch = 4};
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.max_batch == 4);
  CHECK(r.steps == 11 + 11 + 10);
  CHECK(r.computed_tokens == 2 * (400 + 9 * 4) + (200 + 9 * 2));
  CHECK(r.output_tokens == 100);
  CHECK(r.tokens_per_step == Approx(1090.0 / 32));
  CHECK(r.max_concurrent == 4);
  CHECK(r.finished == 10);
  CHECK(r.rejected == 0);
  CHECK(r.preemptions == 0);
  CHECK(r.padding_tokens == 0);
  CHECK(r.peak_kv_bytes == 4 * 128 * 128 * 1024);             // max_batch x max_len x 128 KiB
  CHECK(r.peak_workspace_bytes == r.workspace_budget_bytes);  // reserved up front
  // Held: 512 slots every step. Filled, batch of 4: 256, 400, then 404 .. 436; batch of 2: 200,
  // then 202 .. 218.
  const double filled = 2 * (256 + 400 + 9 * 400 + 4 * 45) + (200 + 9 * 200 + 2 * 45);
  CHECK(r.waste == Approx(1 - filled / (32 * 512.0)));
  CHECK(r.mean_prompt == 100);
  CHECK(r.mean_output == 10);
}

TEST_CASE("sim: static batching pads finished sequences and rejects what cannot fit") {
  config c{.gpu_memory = 40 * gib,
           .workload = frugal::sim::workload::fixed,
           .num_requests = 3,
           .max_len = 64,
           .fixed_prompt = 60,
           .fixed_output = 10,
           .policy = frugal::sim::policy::static_batching,
           .max_batch = 2};
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.rejected == 3);  // 60 + 10 > 64
  CHECK(r.finished == 0);
  CHECK(mentions(std::runtime_error(r.rejections.at(0).second), "exceeds max_len 64"));

  // Uneven outputs: the batch runs to its longest request, the others ride along as padding.
  c.workload = frugal::sim::workload::sharegpt;
  c.max_len = 4096;
  c.num_requests = 200;
  c.max_batch = 16;
  const result s = frugal::sim::run(c);
  check_accounting(c, s);
  CHECK(s.finished == 200);
  CHECK(s.padding_tokens > s.output_tokens);  // most decode slots of a static batch are padding
  CHECK(s.max_concurrent == 16);
}

TEST_CASE("sim: dynamic batching, fixed lengths, counted by hand") {
  // 4 requests of 16 + 4 tokens, everything fits: step 1 prefills all four prompts (64 tokens,
  // each sampling its first token), steps 2-4 decode 4 tokens each.
  const config c{.model = "llama-3-8b",
                 .gpu_memory = 20 * gib,
                 .workload = frugal::sim::workload::fixed,
                 .num_requests = 4,
                 .max_len = 64,
                 .fixed_prompt = 16,
                 .fixed_output = 4,
                 .policy = frugal::sim::policy::dynamic,
                 .max_batched_tokens = 2048,
                 .max_num_seqs = 8};
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.steps == 4);
  CHECK(r.computed_tokens == 64 + 3 * 4);
  CHECK(r.tokens_per_step == Approx(76.0 / 4));
  CHECK(r.output_tokens == 16);
  CHECK(r.max_concurrent == 4);
  CHECK(r.finished == 4);
  CHECK(r.preemptions == 0);
  // Each sequence ends with 16 + 3 tokens in KV: two 16-token pages of 2 MiB.
  CHECK(r.peak_kv_bytes == 8 * 2 * mib);
  // The workspace follows the step: 64 tokens x 100 KiB of activations + 4 x 501 KiB of logits
  // = 8.2 MiB, rounded to 10 MiB in 2 MiB granules; the decode steps need 4 MiB.
  const auto& m = frugal::sim::find_model("llama-3-8b");
  CHECK(m.activation_bytes_per_token() == 102400);
  CHECK(m.logits_bytes() == 513024);
  CHECK(r.peak_workspace_bytes == 10 * mib);
  CHECK(r.mean_workspace_bytes == Approx((10.0 + 3 * 10) / 4 * mib));  // shrinks after 8 steps
  CHECK(r.peak_workspace_bytes < r.workspace_budget_bytes);
}

TEST_CASE("sim: dynamic batching serves a shared prompt prefix from the cache") {
  // 48-token prompts whose first 32 tokens are the same: the first request computes them, the
  // other three find its two full pages (they are registered as they fill, at admission).
  const config c{.gpu_memory = 20 * gib,
                 .workload = frugal::sim::workload::fixed,
                 .num_requests = 4,
                 .max_len = 64,
                 .fixed_prompt = 48,
                 .fixed_output = 2,
                 .shared_prefix = 32,
                 .max_batched_tokens = 2048,
                 .max_num_seqs = 8};
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.prefix_hit_tokens == 3 * 32);
  CHECK(r.computed_tokens == 48 + 3 * 16 + 4);
}

TEST_CASE("sim: dynamic batching preempts when pages run out and still finishes everything") {
  config c{.gpu_memory = 0,
           .workload = frugal::sim::workload::sharegpt,
           .num_requests = 400,
           .max_len = 2048,
           .max_batched_tokens = 2048,
           .max_num_seqs = 128,
           .validate_every = 50};
  c.gpu_memory = budget_with_kv(c, 256 * 2 * mib);  // 256 pages: 4,096 token slots
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.kv_pages == 256);
  CHECK(r.finished == 400);
  CHECK(r.preemptions > 0);
  CHECK(r.peak_kv_bytes <= 256 * 2 * mib);
  CHECK(r.waste < 0.05);
}

TEST_CASE("sim: runs are deterministic, and Poisson arrivals spread the load") {
  const config c{
      .gpu_memory = 20 * gib, .num_requests = 300, .seed = 7, .arrival_rate = 0.5, .page_size = 32};
  const result a = frugal::sim::run(c);
  const result b = frugal::sim::run(c);
  check_accounting(c, a);
  CHECK(a.steps == b.steps);
  CHECK(a.computed_tokens == b.computed_tokens);
  CHECK(a.max_concurrent == b.max_concurrent);
  CHECK(a.waste == b.waste);
  // One request every two steps: the last arrives near step 600, and fewer run at once than
  // when all 300 are there at step 0.
  CHECK(a.steps > 550);
  config saturated = c;
  saturated.arrival_rate = 0;
  const result all_at_once = frugal::sim::run(saturated);
  check_accounting(saturated, all_at_once);
  CHECK(a.max_concurrent < all_at_once.max_concurrent);
  CHECK(all_at_once.steps < a.steps);
}

TEST_CASE("sim: at the same budget, dynamic batching runs 3x the sequences of static batching") {
  // Llama-2-13B keeps 800 KiB of KV per token (no grouped-query attention): 40 GiB leaves room
  // for 4 static sequences of 4,096 tokens, while short ShareGPT-like requests need far less.
  config c{.model = "llama-2-13b", .gpu_memory = 40 * gib, .num_requests = 1000, .max_len = 4096};
  c.policy = frugal::sim::policy::static_batching;
  const result s = frugal::sim::run(c);
  c.policy = frugal::sim::policy::dynamic;
  const result d = frugal::sim::run(c);
  check_accounting(c, s);
  check_accounting(c, d);
  CHECK(s.max_batch == 4);
  CHECK(d.kv_budget_bytes >= s.kv_budget_bytes);  // static reserves whole max_len sequences
  CHECK(d.kv_budget_bytes - s.kv_budget_bytes < std::size_t{4096} * 800 * 1024);
  CHECK(d.max_concurrent >= 3 * s.max_concurrent);
  CHECK(d.mean_concurrent_saturated >= 3 * s.mean_concurrent_saturated);
  CHECK(d.tokens_per_step >= 2 * s.tokens_per_step);
  CHECK(d.waste < 0.05);
  CHECK(s.waste > 0.5);
}

// The expensive-check build (FRUGAL_DEBUG_LEVEL 2: the asan preset) validates the whole cache
// after every add and append, which makes the long runs take minutes there: they carry [long]
// in that build (ctest --preset long runs them), and a 2,000-request run takes their place.
#if FRUGAL_DEBUG_LEVEL >= 2
#define FRUGAL_SIM_LONG "[long]"
#else
#define FRUGAL_SIM_LONG ""
#endif

namespace {
/// Many requests with random lengths through a tight budget: preemptions, page churn, prefix
/// hits on recomputation. Every request must finish; the cache is checked every 1,000 steps.
result long_run(frugal::sim::workload workload, std::size_t num_requests, std::uint32_t max_len,
                std::size_t pages) {
  config c{.gpu_memory = 0,
           .workload = workload,
           .num_requests = num_requests,
           .max_len = max_len,
           .seed = 2026,
           .max_batched_tokens = 2048,
           .max_num_seqs = 256,
           .validate_every = 1000};
  c.gpu_memory = budget_with_kv(c, pages * 2 * mib);
  const result r = frugal::sim::run(c);
  check_accounting(c, r);
  CHECK(r.kv_pages == pages);
  CHECK(r.finished == num_requests);
  CHECK(r.rejected == 0);
  CHECK(r.preemptions > 0);
  return r;
}
}  // namespace

TEST_CASE("sim: 2,000 ShareGPT-like requests finish with no leaked pages") {
  const result r = long_run(frugal::sim::workload::sharegpt, 2000, 2048, 256);  // 4,096 token slots
  CHECK(r.mean_prompt == Approx(161.31).epsilon(0.1));
}

TEST_CASE("sim: 20,000 ShareGPT-like requests finish with no leaked pages", FRUGAL_SIM_LONG) {
  const result r =
      long_run(frugal::sim::workload::sharegpt, 20000, 4096, 1024);  // 16,384 token slots
  // The lognormal draws keep the published means (clipping to 4,096 tokens moves them < 1%).
  CHECK(r.mean_prompt == Approx(161.31).epsilon(0.03));
  CHECK(r.mean_output == Approx(337.99).epsilon(0.03));
}

TEST_CASE("sim: 100,000 Alpaca-like requests finish with no leaked pages", FRUGAL_SIM_LONG) {
  const result r = long_run(frugal::sim::workload::alpaca, 100000, 1024, 512);  // 8,192 token slots
  CHECK(r.mean_prompt == Approx(19.31).epsilon(0.02));
  CHECK(r.mean_output == Approx(58.45).epsilon(0.02));
}
