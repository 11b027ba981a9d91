// The serving simulator: a request stream against a memory budget, static batching or frugal's
// scheduler, no model. See docs/batch.md#simulator for the step order and what is counted.
#include <frugal/batch/workspace.hpp>
#include <frugal/kv/cache.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/sim/simulator.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <string_view>

namespace frugal::sim {
namespace {

using batch::token_id;

/// Granule of the simulated GPU: every allocation is a multiple (CUDA's VMM granule).
constexpr std::size_t granule = vmm_granule;

std::size_t round_up(std::size_t bytes) { return (bytes + granule - 1) / granule * granule; }

/// The policies and their names, in the order help texts list them.
struct policy_spec {
  policy kind;
  std::string_view name;
};
constexpr std::array<policy_spec, 2> policy_specs{
    {{policy::static_batching, "static"}, {policy::dynamic, "dynamic"}}};

/// The drawn request stream: lengths and arrival steps, the same for both policies.
struct stream {
  std::vector<std::uint32_t> prompt, output;
  std::vector<double> arrival;
};

/// Lengths from the workload (frugal/sim/workload.hpp: lognormal ones clipped to max_len;
/// "fixed" exact, so a fixed request beyond max_len is rejected), Poisson arrivals: exponential
/// gaps.
stream draw(const config& c, length_sampler& lengths) {
  std::mt19937_64 rng(c.seed);
  stream s;
  s.prompt.resize(c.num_requests);
  s.output.resize(c.num_requests);
  s.arrival.resize(c.num_requests);
  std::exponential_distribution<double> gap(c.arrival_rate > 0 ? c.arrival_rate : 1.0);
  double now = 0;
  for (std::size_t i = 0; i < c.num_requests; ++i) {
    const request_lengths r = lengths(rng);
    s.prompt[i] = r.prompt;
    s.output[i] = r.output;
    if (c.arrival_rate > 0) now += gap(rng);
    s.arrival[i] = now;
  }
  return s;
}

using device_type = stats_adaptor<ref_t<virtual_resource>>;

/// One allocation of the simulated GPU held for the run (the weights, static reservations).
class held {
 public:
  held(device_type& device, std::size_t bytes)
      : device_(&device), bytes_(bytes), p_(bytes ? device.allocate(bytes) : nullptr) {}
  held(const held&) = delete;
  held& operator=(const held&) = delete;
  ~held() { device_->deallocate(p_, bytes_); }

 private:
  device_type* device_;
  std::size_t bytes_;
  void* p_;
};

/// What both policies share: the model, the budget split and the drawn stream.
struct setup {
  const model_shape* model;
  std::size_t weights_exact;     // parameters x bits / 8, or the override
  std::size_t weights;           // rounded to the granule
  std::size_t workspace_budget;  // rounded to the granule
  std::size_t kv_budget;
  std::size_t usable;  // gpu_memory rounded down to the granule
  std::size_t kv_bytes_per_token;
  std::size_t kv_bytes_per_sequence;  // of one max_len sequence, per layer (windows capped)
  std::size_t static_sequence_bytes;  // the same, reserved token by token (static batching)
  stream requests;
};

setup prepare(const config& c, bool draw_requests = true) {
  setup s;
  s.model = c.model_override ? &*c.model_override : &find_model(c.model);
  const std::size_t weight_bytes_exact =
      c.weight_bytes_override != 0 ? c.weight_bytes_override : weight_bytes(*s.model, c.weights);
  s.weights_exact = weight_bytes_exact;
  FRUGAL_EXPECTS(c.num_requests > 0, "frugal::sim: num_requests is zero", invalid_argument);
  FRUGAL_EXPECTS(c.max_len > 1, "frugal::sim: max_len must be at least 2", invalid_argument);
  FRUGAL_EXPECTS(c.max_len <= s.model->max_context,
                 "frugal::sim: max_len " + std::to_string(c.max_len) + " exceeds " +
                     std::string(s.model->name) + "'s context of " +
                     std::to_string(s.model->max_context),
                 invalid_argument);
  length_sampler lengths{{.kind = c.workload,
                          .sigma = c.length_sigma,
                          .max_len = c.max_len,
                          .fixed_prompt = c.fixed_prompt,
                          .fixed_output = c.fixed_output}};
  FRUGAL_EXPECTS(c.arrival_rate >= 0 && std::isfinite(c.arrival_rate),
                 "frugal::sim: arrival_rate must be finite and not negative", invalid_argument);
  FRUGAL_EXPECTS(c.max_batched_tokens > 0 && c.max_num_seqs > 0 && c.page_size > 0,
                 "frugal::sim: max_batched_tokens, max_num_seqs and page_size must be positive",
                 invalid_argument);
  FRUGAL_EXPECTS(c.watermark >= 0 && c.watermark < 1, "frugal::sim: watermark must be in [0, 1)",
                 invalid_argument);

  // The worst step: max_batched_tokens tokens of activations plus the logits of every sequence
  // that can sample in one step. Both policies set it aside, so both see the same KV budget.
  const std::size_t samplers =
      std::min<std::size_t>(std::max(c.max_num_seqs, c.max_batch), c.max_batched_tokens);
  s.workspace_budget =
      round_up(std::size_t{c.max_batched_tokens} * s.model->activation_bytes_per_token() +
               samplers * s.model->logits_bytes());
  s.weights = round_up(weight_bytes_exact);
  s.usable = c.gpu_memory / granule * granule;
  s.kv_bytes_per_token = s.model->kv_bytes_per_token(c.kv_dtype);
  // Per layer: a sliding-window layer holds at most its window (plus a page) of a sequence.
  s.kv_bytes_per_sequence = s.model->kv_bytes_per_sequence(c.kv_dtype, c.max_len, c.page_size);
  s.static_sequence_bytes = s.model->kv_bytes_per_sequence(c.kv_dtype, c.max_len, 1);
  const std::size_t one_sequence =
      c.policy == policy::static_batching ? s.static_sequence_bytes : s.kv_bytes_per_sequence;
  const std::string weights_name = c.weight_bytes_override != 0 && !c.weights_label.empty()
                                       ? c.weights_label
                                       : std::string(to_string(c.weights));
  FRUGAL_EXPECTS(s.usable > s.weights + s.workspace_budget &&
                     s.usable - s.weights - s.workspace_budget >= one_sequence,
                 "frugal::sim: gpu_memory " + format_bytes(c.gpu_memory) + " does not hold " +
                     std::string(s.model->name) + "'s " + weights_name + " weights (" +
                     format_bytes(s.weights) + "), the workspace (" +
                     format_bytes(s.workspace_budget) + ") and one " + std::to_string(c.max_len) +
                     "-token sequence of KV (" + format_bytes(one_sequence) + ")",
                 invalid_argument);
  s.kv_budget = s.usable - s.weights - s.workspace_budget;
  if (draw_requests) s.requests = draw(c, lengths);
  return s;
}

/// What one step did, as the meter counts it.
struct step_figures {
  std::size_t computed = 0;         // tokens computed
  std::size_t sampled = 0;          // tokens sampled
  std::size_t running = 0;          // sequences in the step
  double slots_held = 0;            // KV slots held
  double slots_filled = 0;          // KV slots holding a token
  std::size_t workspace_bytes = 0;  // workspace bytes held
  bool saturated = false;           // arrived requests were left waiting
};

/// Accumulates the per-step figures.
struct meter {
  result& r;
  double concurrency = 0, slots_held = 0, slots_empty = 0, workspace = 0;
  double saturated_concurrency = 0;
  std::size_t saturated_steps = 0;

  void step(const step_figures& f) {
    ++r.steps;
    workspace += static_cast<double>(f.workspace_bytes);
    if (f.saturated) {
      ++saturated_steps;
      saturated_concurrency += static_cast<double>(f.running);
    }
    r.computed_tokens += f.computed;
    r.output_tokens += f.sampled;
    r.max_concurrent = std::max(r.max_concurrent, f.running);
    concurrency += static_cast<double>(f.running);
    slots_held += f.slots_held;
    slots_empty += f.slots_held - f.slots_filled;
  }
  void finish() {
    const double steps = static_cast<double>(r.steps);
    r.tokens_per_step = r.steps ? static_cast<double>(r.computed_tokens) / steps : 0;
    r.output_tokens_per_step = r.steps ? static_cast<double>(r.output_tokens) / steps : 0;
    r.mean_concurrent = r.steps ? concurrency / steps : 0;
    r.mean_concurrent_saturated =
        saturated_steps ? saturated_concurrency / static_cast<double>(saturated_steps) : 0;
    r.mean_workspace_bytes = r.steps ? workspace / steps : 0;
    r.waste = slots_held > 0 ? slots_empty / slots_held : 0;
  }
};

// ---- static batching -------------------------------------------------------------------------
//
// A batch of up to max_batch requests reserves max_batch x max_len tokens of KV and runs until
// its longest request finishes. Its prompts are computed first, in steps of max_batched_tokens
// (the last one samples every sequence's first token); then each decode step computes one token
// for every unfinished sequence, while finished ones ride along as padding. The next batch forms
// from the requests that have arrived when this one ends.
result run_static(const config& c, setup& s, device_type& device) {
  result r;
  std::size_t fits = s.kv_budget / s.static_sequence_bytes;
  fits = std::min<std::size_t>(fits, c.max_batched_tokens);
  FRUGAL_EXPECTS(c.max_batch <= fits,
                 "frugal::sim: max_batch " + std::to_string(c.max_batch) + " x max_len " +
                     std::to_string(c.max_len) + " does not fit the KV budget of " +
                     format_bytes(s.kv_budget) + " (at most " + std::to_string(fits) +
                     " sequences, and at most max_batched_tokens)",
                 invalid_argument);
  const std::size_t max_batch = c.max_batch != 0 ? c.max_batch : fits;
  r.max_batch = static_cast<std::uint32_t>(max_batch);
  const std::size_t reserved_slots = max_batch * c.max_len;
  const std::size_t reserved_bytes = max_batch * s.static_sequence_bytes;
  held weights(device, s.weights);
  held kv(device, round_up(reserved_bytes));
  held workspace(device, s.workspace_budget);  // reserved up front for the worst step
  r.peak_kv_bytes = reserved_bytes;
  r.peak_workspace_bytes = s.workspace_budget;

  const stream& q = s.requests;
  meter m{r};
  std::deque<std::size_t> waiting;
  std::size_t next = 0;
  double now = 0;
  std::vector<std::uint32_t> outputs;
  while (next < c.num_requests || !waiting.empty()) {
    if (waiting.empty() && q.arrival[next] > now) now = q.arrival[next];  // idle until then
    for (; next < c.num_requests && q.arrival[next] <= now; ++next) {
      if (q.prompt[next] + std::size_t{q.output[next]} > c.max_len) {
        r.rejections.emplace_back(next, "prompt (" + std::to_string(q.prompt[next]) +
                                            ") + output (" + std::to_string(q.output[next]) +
                                            ") exceeds max_len " + std::to_string(c.max_len));
        continue;
      }
      waiting.push_back(next);
    }
    if (waiting.empty()) continue;

    const std::size_t size = std::min(max_batch, waiting.size());
    outputs.clear();
    std::size_t prompt_tokens = 0;
    for (std::size_t i = 0; i < size; ++i) {
      prompt_tokens += q.prompt[waiting.front()];
      outputs.push_back(q.output[waiting.front()]);
      waiting.pop_front();
    }
    std::sort(outputs.begin(), outputs.end());
    // Requests that arrive while the batch runs wait for the next one.
    const auto saturated = [&] {
      return !waiting.empty() || (next < c.num_requests && q.arrival[next] <= now);
    };
    // Prefill, in chunks of the token budget.
    std::size_t kv_tokens = 0;
    for (std::size_t left = prompt_tokens; left > 0;) {
      const std::size_t chunk = std::min<std::size_t>(left, c.max_batched_tokens);
      left -= chunk;
      kv_tokens += chunk;
      m.step({.computed = chunk,
              .sampled = left == 0 ? size : 0,
              .running = size,
              .slots_held = static_cast<double>(reserved_slots),
              .slots_filled = static_cast<double>(kv_tokens),
              .workspace_bytes = s.workspace_budget,
              .saturated = saturated()});
      now += 1;
    }
    // Decode: step d samples token d of every sequence whose output has at least d tokens.
    std::size_t done = 0;  // outputs[0 .. done) have finished
    for (std::uint32_t d = 2; d <= outputs.back(); ++d) {
      while (done < size && outputs[done] < d) ++done;
      const std::size_t active = size - done;
      kv_tokens += active;  // each appends the token it sampled last step
      r.padding_tokens += done;
      m.step({.computed = active,
              .sampled = active,
              .running = active,
              .slots_held = static_cast<double>(reserved_slots),
              .slots_filled = static_cast<double>(kv_tokens),
              .workspace_bytes = s.workspace_budget,
              .saturated = saturated()});
      now += 1;
    }
    r.finished += size;
  }
  r.rejected = r.rejections.size();
  r.kv_budget_bytes = reserved_bytes;
  m.finish();
  return r;
}

// ---- dynamic: frugal's scheduler ---------------------------------------------------------------
//
// Each step: requests that have arrived are submitted (keeping at most 2 x max_num_seqs waiting,
// which the first-come-first-served queue makes equivalent to submitting all of them), the
// scheduler plans the step, the workspace is sized to the step's tokens and its activations and
// logits allocated, every sampling sequence draws a random token (never an end token: a request
// finishes when it reaches its drawn output length, its max_new_tokens), and the step completes.
result run_dynamic(const config& c, setup& s, device_type& device) {
  result r;
  const model_shape& model = *s.model;
  const kv::layout layout = model.kv_layout(c.kv_dtype, c.page_size);
  const std::size_t pages = std::min<std::size_t>(kv::pages_that_fit(layout, s.kv_budget),
                                                  std::numeric_limits<std::uint32_t>::max() - 2);
  r.kv_pages = static_cast<std::uint32_t>(pages);
  r.kv_budget_bytes = pages * layout.page_bytes();

  held weights(device, s.weights);
  kv::cache cache{
      layout, r.kv_pages, device,
      kv::cache_options{.enable_prefix_caching = c.prefix_caching, .watermark = c.watermark}};
  batch::scheduler sched{cache,
                         {.max_num_seqs = c.max_num_seqs,
                          .max_batched_tokens = c.max_batched_tokens,
                          .watermark = c.watermark,
                          .chunked_prefill = true,
                          .preemption = batch::preemption_mode::recompute,
                          .max_model_len = c.max_len}};
  batch::workspace ws{device,
                      {.bytes_per_token = model.activation_bytes_per_token(),
                       .shrink_after_steps = c.shrink_after_steps,
                       .granularity = granule,
                       .max_bytes = s.workspace_budget}};

  const stream& q = s.requests;
  std::mt19937_64 tokens(c.seed ^ 0x9E3779B97F4A7C15ull);
  const auto random_token = [&] { return static_cast<token_id>(tokens() % model.vocab_size); };
  const auto shared_token = [&](std::size_t i) {
    return static_cast<token_id>((i * 7919 + 13) % model.vocab_size);
  };
  meter m{r};
  const std::size_t window = 2 * std::size_t{c.max_num_seqs};
  std::size_t next = 0, scheduler_rejections = 0, empty_plans = 0, peak_pages = 0;
  double now = 0;
  std::vector<std::pair<batch::request_id, token_id>> sampled;
  const auto rejections_pending = [&] { return sched.stats().rejected > scheduler_rejections; };
  const auto check = [&](const char* when) {
    if (!cache.is_valid()) {
      r.cache_valid = false;
      FRUGAL_FAIL(std::string("frugal::sim: kv::cache::is_valid() failed ") + when + " (step " +
                      std::to_string(r.steps) + ")",
                  error);
    }
  };

  while (next < c.num_requests || sched.has_unfinished() || rejections_pending()) {
    if (!sched.has_unfinished() && !rejections_pending() && q.arrival[next] > now)
      now = q.arrival[next];  // idle until the next arrival
    for (; next < c.num_requests && q.arrival[next] <= now && sched.num_waiting() < window;
         ++next) {
      batch::request req{
          .id = next, .max_new_tokens = q.output[next], .arrival_time = q.arrival[next]};
      req.prompt.resize(q.prompt[next]);
      for (std::size_t i = 0; i < req.prompt.size(); ++i)
        req.prompt[i] = i < c.shared_prefix ? shared_token(i) : random_token();
      try {
        sched.submit(std::move(req));
      } catch (const invalid_argument& e) {
        r.rejections.emplace_back(next, e.what());
      }
    }

    const batch::step_plan& plan = sched.plan_step();
    scheduler_rejections += plan.rejected.size();
    for (auto& rejection : plan.rejected) r.rejections.push_back(std::move(rejection));
    if (plan.sequences.empty()) {
      // Nothing computed: not a step. With work queued that cannot start, the run is stuck.
      if (sched.has_unfinished() && ++empty_plans > 2)
        FRUGAL_FAIL("frugal::sim: no progress: " + std::to_string(sched.num_waiting()) +
                        " waiting, " + std::to_string(sched.num_running()) + " running, " +
                        std::to_string(cache.num_free_pages()) + " of " +
                        std::to_string(cache.num_pages()) + " pages free",
                    error);
      continue;
    }
    empty_plans = 0;

    std::size_t samplers = 0;
    for (const batch::scheduled_sequence& seq : plan.sequences) samplers += seq.samples ? 1 : 0;
    std::size_t workspace_held = 0;
    {
      // Activations for the step's tokens and logits for its samplers, released at end_step.
      auto step = ws.scoped_step(plan.num_batched_tokens, samplers * model.logits_bytes());
      ws.allocate(ws.bytes_for(plan.num_batched_tokens));
      if (samplers > 0) ws.allocate(samplers * model.logits_bytes());
      workspace_held = ws.capacity();
    }

    const kv::cache_stats st = cache.stats();
    peak_pages = std::max<std::size_t>(peak_pages, st.used_pages);
    const bool saturated =
        sched.num_waiting() > 0 || (next < c.num_requests && q.arrival[next] <= now);
    m.step({.computed = plan.num_batched_tokens,
            .sampled = samplers,
            .running = sched.num_running(),
            .slots_held = static_cast<double>(st.slots_allocated),
            .slots_filled = static_cast<double>(st.slots_used),
            .workspace_bytes = workspace_held,
            .saturated = saturated});

    sampled.clear();
    for (const batch::scheduled_sequence& seq : plan.sequences)
      if (seq.samples) sampled.emplace_back(seq.id, random_token());
    sched.complete_step(sampled);
    r.finished += sched.take_finished().size();
    now += 1;
    if (c.validate_every != 0 && r.steps % c.validate_every == 0) check("during the run");
  }
  check("at the end");
  r.leaked_pages = cache.stats().used_pages;
  r.rejected = r.rejections.size();
  r.preemptions = sched.stats().preemptions;
  r.prefix_hit_tokens = sched.stats().prefix_hit_tokens;
  r.peak_kv_bytes = peak_pages * layout.page_bytes();
  r.peak_workspace_bytes = ws.stats().peak_bytes_reserved;
  m.finish();
  return r;
}

}  // namespace

std::string_view to_string(policy p) noexcept { return detail::entry_of(policy_specs, p).name; }

policy parse_policy(std::string_view name) {
  return detail::kind_named(policy_specs, name, "policy");
}

std::vector<std::string> policies() { return detail::names_of(policy_specs); }

memory_budget budget(const config& c) {
  const setup s = prepare(c, false);
  const kv::layout layout = s.model->kv_layout(c.kv_dtype, c.page_size);
  const std::size_t pages = std::min<std::size_t>(kv::pages_that_fit(layout, s.kv_budget),
                                                  std::numeric_limits<std::uint32_t>::max() - 2);
  memory_budget b;
  b.gpu_memory = c.gpu_memory;
  b.weight_bytes = s.weights_exact;
  b.weights_held_bytes = s.weights;
  b.workspace_bytes = s.workspace_budget;
  b.page_bytes = layout.page_bytes();
  b.page_size = c.page_size;
  b.kv_pages = static_cast<std::uint32_t>(pages);
  b.kv_bytes = pages * b.page_bytes;
  b.kv_bytes_per_token = s.kv_bytes_per_token;
  b.kv_bytes_per_sequence = s.kv_bytes_per_sequence;
  b.headroom_bytes = c.gpu_memory - b.weights_held_bytes - b.workspace_bytes - b.kv_bytes;
  return b;
}

result run(const config& c) {
  setup s = prepare(c);
  virtual_resource gpu{{.reserve_bytes = s.usable, .commit = false, .granularity = granule}};
  device_type device{ref(gpu)};
  result r =
      c.policy == policy::static_batching ? run_static(c, s, device) : run_dynamic(c, s, device);
  r.weight_bytes = s.weights_exact;
  r.workspace_budget_bytes = s.workspace_budget;
  r.kv_bytes_per_token = s.kv_bytes_per_token;
  r.kv_bytes_per_sequence =
      c.policy == policy::static_batching ? s.static_sequence_bytes : s.kv_bytes_per_sequence;
  r.peak_memory_bytes = device.stats().peak_bytes_in_use;
  double prompt = 0, output = 0;
  for (std::size_t i = 0; i < c.num_requests; ++i) {
    prompt += s.requests.prompt[i];
    output += s.requests.output[i];
  }
  r.mean_prompt = prompt / static_cast<double>(c.num_requests);
  r.mean_output = output / static_cast<double>(c.num_requests);
  return r;
}

}  // namespace frugal::sim
