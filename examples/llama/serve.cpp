// The serving loop: scheduler plans, the cache holds the pages, the workspace the activations.
#include "serve.hpp"

#include <frugal/batch/workspace.hpp>
#include <frugal/kv/attention.hpp>
#include <frugal/quant/format.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace llama {

namespace {

namespace kv = frugal::kv;
namespace batch = frugal::batch;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t workspace_granularity = 64 << 10;

/// splitmix64: a small, well-mixed generator whose whole state is one integer.
std::uint64_t next_random(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

kv::layout layout_for(const model& m, kv::dtype dtype, std::uint32_t page_size) {
  const config& c = m.config();
  return {.num_layers = c.n_layers,
          .num_kv_heads = c.n_kv_heads,
          .head_dim = c.head_dim(),
          .page_size = page_size,
          .dtype = dtype};
}

/// Largest code of an 8-bit KV type (value = code x scale).
float code_max(kv::dtype t) {
  return t == kv::dtype::fp8_e4m3 ? 448.0f : t == kv::dtype::fp8_e5m2 ? 57344.0f : 127.0f;
}

}  // namespace

std::uint64_t request_seed(std::uint64_t seed, std::size_t index) noexcept {
  std::uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (index + 1));
  return next_random(state);
}

std::size_t reserved_kv_bytes(const config& c, std::size_t element_bytes) {
  return std::size_t{c.seq_len} * 2 * c.n_layers * c.kv_dim() * element_bytes;
}

void finish_summary(serve_summary& summary, const model& m, std::size_t requests,
                    std::size_t kv_bytes_per_request) {
  summary.tokens_per_second =
      summary.seconds > 0 ? static_cast<double>(summary.generated_tokens) / summary.seconds : 0;
  summary.kv_bytes_static = requests * kv_bytes_per_request;
  summary.weight_bytes = m.weight_bytes();
  summary.weight_format = m.weight_format();
}

void check_prompts(const model& m, std::span<const prompt> prompts) {
  const config& c = m.config();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const prompt& p = prompts[i];
    const std::string which = "request " + std::to_string(i + 1);
    if (p.empty()) throw std::invalid_argument(which + ": the prompt is empty");
    if (p.size() >= c.seq_len)
      throw std::invalid_argument(which + ": the prompt has " + std::to_string(p.size()) +
                                  " tokens; the model's context is " + std::to_string(c.seq_len) +
                                  " and one must be left to generate");
    for (const std::int32_t t : p)
      if (t < 0 || static_cast<std::uint32_t>(t) >= c.vocab_size)
        throw std::invalid_argument(which + ": token " + std::to_string(t) +
                                    " is outside the vocabulary (0.." +
                                    std::to_string(c.vocab_size - 1) + ")");
  }
}

std::int32_t sample_token(std::span<const float> logits, const sampling& s,
                          std::uint64_t& rng_state) {
  if (s.temperature <= 0.0f) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<std::int32_t>(best);
  }
  std::vector<double> p(logits.size());
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    sum += (p[i] = std::exp((double{logits[i]} - max) / s.temperature));
  std::vector<std::size_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
  // The nucleus: the fewest most likely ids whose mass reaches top_p.
  std::size_t keep = order.size();
  if (s.top_p < 1.0f) {
    double mass = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      mass += p[order[i]] / sum;
      if (mass >= s.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (std::size_t i = 0; i < keep; ++i) kept += p[order[i]];
  const double u = static_cast<double>(next_random(rng_state) >> 11) * 0x1.0p-53 * kept;
  double acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += p[order[i]];
    if (u < acc) return static_cast<std::int32_t>(order[i]);
  }
  return static_cast<std::int32_t>(order[keep - 1]);
}

engine::engine(const model& m, frugal::any_resource_ref memory, serve_options options)
    : model_(&m), memory_(memory), options_(options) {
  if (options_.page_size == 0) throw std::invalid_argument("--page-size must be positive");
  const kv::layout l = layout_for(m, options_.kv_dtype, options_.page_size);
  if (options_.kv_memory > 0) {
    const std::size_t fit = kv::pages_that_fit(l, options_.kv_memory);
    if (fit == 0)
      throw std::invalid_argument("--kv-memory " + std::to_string(options_.kv_memory) +
                                  " bytes holds no page (a page is " +
                                  std::to_string(l.page_bytes()) + " bytes)");
    options_.pages = static_cast<std::uint32_t>(std::min<std::size_t>(fit, 1u << 30));
  } else if (options_.pages == 0) {
    options_.pages = 64 * ((m.config().seq_len + options_.page_size - 1) / options_.page_size);
  }
  if (options_.preemption == batch::preemption_mode::swap && options_.host_pages == 0)
    options_.host_pages = options_.pages;
  if (options_.max_num_seqs == 0 || options_.max_batched_tokens == 0)
    throw std::invalid_argument("--max-num-seqs and --max-batched-tokens must be positive");
}

serve_result engine::serve(std::span<const prompt> prompts) {
  const model& m = *model_;
  const config& c = m.config();
  check_prompts(m, prompts);
  const kv::layout l = layout_for(m, options_.kv_dtype, options_.page_size);

  // 8-bit KV: per-layer scales from the prompts' own K and V (with room for later tokens).
  scales_.clear();
  if (l.scales_per_layer() > 0) {
    std::vector<std::pair<float, float>> amax(c.n_layers, {0.0f, 0.0f});
    for (const prompt& p : prompts) {
      const auto a = m.kv_amax(p, memory_);
      for (std::uint32_t i = 0; i < c.n_layers; ++i) {
        amax[i].first = std::max(amax[i].first, a[i].first);
        amax[i].second = std::max(amax[i].second, a[i].second);
      }
    }
    constexpr float headroom = 1.5f;
    for (const auto& [k, v] : amax) {
      scales_.push_back(std::max(k, 1e-6f) * headroom / code_max(l.dtype));
      scales_.push_back(std::max(v, 1e-6f) * headroom / code_max(l.dtype));
    }
  }

  serve_result result;
  serve_summary& summary = result.summary;
  {
    kv::cache cache{l,
                    options_.pages,
                    memory_,
                    {.enable_prefix_caching = options_.prefix_caching,
                     .watermark = 0.0,
                     .host_pages = options_.host_pages,
                     .host_memory = memory_}};
    batch::scheduler sched{cache,
                           {.max_num_seqs = options_.max_num_seqs,
                            .max_batched_tokens = options_.max_batched_tokens,
                            .watermark = 0.01,
                            .chunked_prefill = true,
                            .preemption = options_.preemption,
                            .max_model_len = c.seq_len,
                            .eos_token = c.eos_token}};
    batch::workspace ws{
        memory_,
        {.bytes_per_token = m.activation_bytes_per_token(), .granularity = workspace_granularity}};

    // Per request: its tokens so far (prompt + generated), generator, admission bookkeeping.
    struct live_request {
      std::vector<std::int32_t> tokens;
      std::uint64_t rng = 0;
      bool admitting = true;  // the next prefill chunk starts an admission
    };
    std::vector<live_request> live(prompts.size());
    result.requests.resize(prompts.size());
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      live[i].tokens = prompts[i];
      live[i].rng = request_seed(options_.sample.seed, i);
      result.requests[i].index = i;
      result.requests[i].prompt_tokens = prompts[i].size();
      const auto room = static_cast<std::uint32_t>(c.seq_len - prompts[i].size());
      sched.submit({.id = i,
                    .prompt = prompts[i],
                    .max_new_tokens = std::min(options_.max_new_tokens, room)});
    }

    std::vector<std::int32_t> tokens, qo_indptr;
    std::vector<std::size_t> logit_rows;
    std::vector<std::pair<batch::request_id, kv::token_id>> sampled;
    const auto start = clock_type::now();
    std::size_t idle_steps = 0;
    // Until every request is done; a request refused at submission shows in the first plan.
    for (bool first = true; first || sched.has_unfinished(); first = false) {
      const batch::step_plan& plan = sched.plan_step();
      for (const auto& [id, reason] : plan.rejected)
        throw std::invalid_argument("request " + std::to_string(id + 1) + " refused: " + reason);
      for (const batch::request_id id : plan.preempted) live[id].admitting = true;
      kv::perform_copies_host(cache, plan.copies);
      if (plan.sequences.empty()) {
        if (sched.has_unfinished() && ++idle_steps > 2)
          throw std::runtime_error("the scheduler makes no progress");
        continue;
      }
      idle_steps = 0;

      tokens.clear();
      qo_indptr.assign(1, 0);
      logit_rows.clear();
      for (const batch::scheduled_sequence& s : plan.sequences) {
        live_request& r = live[s.id];
        const std::size_t first = s.context_len - s.num_tokens;
        if (s.prefill && r.admitting) result.requests[s.id].cached_tokens = first;
        r.admitting = false;
        tokens.insert(tokens.end(), r.tokens.begin() + static_cast<std::ptrdiff_t>(first),
                      r.tokens.begin() + static_cast<std::ptrdiff_t>(s.context_len));
        qo_indptr.push_back(static_cast<std::int32_t>(tokens.size()));
        if (s.samples) logit_rows.push_back(tokens.size() - 1);
      }

      ws.begin_step(tokens.size(), m.step_extra_bytes(logit_rows.size()));
      auto* logits = static_cast<float*>(
          ws.allocate(std::max<std::size_t>(logit_rows.size(), 1) * c.vocab_size * sizeof(float)));
      const llama::batch b{tokens, plan.slot_mapping, qo_indptr, plan.page_table, logit_rows};
      m.forward(cache.pages(), scales_, b, ws, {logits, logit_rows.size() * c.vocab_size});
      sampled.clear();
      std::size_t row = 0;
      for (const batch::scheduled_sequence& s : plan.sequences) {
        if (!s.samples) continue;
        live_request& r = live[s.id];
        const std::span<const float> logit_row(logits + row++ * c.vocab_size, c.vocab_size);
        const std::int32_t token = sample_token(logit_row, options_.sample, r.rng);
        r.tokens.push_back(token);
        sampled.emplace_back(s.id, token);
      }
      ws.end_step();
      sched.complete_step(sampled);

      const kv::cache_stats stats = cache.stats();
      summary.pages_used_peak = std::max(summary.pages_used_peak, stats.used_pages);
      for (batch::finished_request& f : sched.take_finished()) {
        request_result& out = result.requests[f.id];
        out.output = std::move(f.output);
        out.hit_eos = f.hit_eos;
        out.preemptions = f.preemptions;
        summary.generated_tokens += out.output.size();
      }
    }
    summary.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    summary.steps = sched.stats().steps;
    summary.preemptions = sched.stats().preemptions;
    summary.prefix_hit_tokens = sched.stats().prefix_hit_tokens;
    summary.peak_workspace_bytes = ws.stats().peak_bytes_in_use;
    summary.pages_total = cache.num_pages();
    summary.kv_pool_bytes = cache.pages().memory().size() +
                            (cache.host_pages() ? cache.host_pages()->memory().size() : 0);
    summary.peak_kv_bytes = std::size_t{summary.pages_used_peak} * l.page_bytes();
  }
  finish_summary(summary, m, prompts.size(),
                 reserved_kv_bytes(c, kv::element_bytes(options_.kv_dtype)));
  return result;
}

serve_result serve_static(const model& m, frugal::any_resource_ref memory,
                          std::span<const prompt> prompts, std::uint32_t max_new_tokens,
                          const sampling& s) {
  const config& c = m.config();
  check_prompts(m, prompts);
  const std::size_t kv_dim = c.kv_dim(), hd = c.head_dim(), group = c.n_heads / c.n_kv_heads;
  const std::size_t layer_floats = std::size_t{c.seq_len} * kv_dim;
  const std::size_t kv_bytes = reserved_kv_bytes(c, sizeof(float));  // contiguous fp32 K and V
  serve_result result;
  result.requests.resize(prompts.size());
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    // llama2.c's reservation: seq_len tokens of K and V for every layer, before the first token.
    auto* cache = static_cast<float*>(memory.allocate(kv_bytes, 256, "kv:static"));
    float* key_cache = cache;
    float* value_cache = cache + c.n_layers * layer_floats;
    std::size_t position = 0;
    const model::attend_fn dense = [&](std::uint32_t l, const float* q, const float* k,
                                       const float* v, std::size_t, float* out) {
      float* kc = key_cache + l * layer_floats;
      float* vc = value_cache + l * layer_floats;
      std::memcpy(kc + position * kv_dim, k, kv_dim * sizeof(float));
      std::memcpy(vc + position * kv_dim, v, kv_dim * sizeof(float));
      std::vector<float> att(position + 1);
      for (std::size_t h = 0; h < c.n_heads; ++h) {
        const float* qh = q + h * hd;
        const std::size_t kvh = h / group;
        float max = -INFINITY;
        for (std::size_t t = 0; t <= position; ++t) {
          float score = 0.0f;
          for (std::size_t d = 0; d < hd; ++d) score += qh[d] * kc[t * kv_dim + kvh * hd + d];
          att[t] = score / std::sqrt(static_cast<float>(hd));
          max = std::max(max, att[t]);
        }
        float sum = 0.0f;
        for (std::size_t t = 0; t <= position; ++t) sum += (att[t] = std::exp(att[t] - max));
        float* o = out + h * hd;
        std::fill(o, o + hd, 0.0f);
        for (std::size_t t = 0; t <= position; ++t)
          for (std::size_t d = 0; d < hd; ++d) o[d] += att[t] / sum * vc[t * kv_dim + kvh * hd + d];
      }
    };
    std::vector<std::int32_t> tokens = prompts[i];
    std::uint64_t rng = request_seed(s.seed, i);
    std::vector<float> logits(c.vocab_size);
    const std::size_t max_new = std::min<std::size_t>(max_new_tokens, c.seq_len - tokens.size());
    request_result& out = result.requests[i];
    out.index = i;
    out.prompt_tokens = tokens.size();
    // One token per forward pass, prompt included; logits only for the last known token.
    const std::size_t logit_row = 0;
    for (position = 0;; ++position) {
      const bool last = position + 1 == tokens.size();
      const std::int32_t token = tokens[position];
      m.forward_rows(
          {&token, 1}, {&position, 1}, dense, memory,
          last ? std::span<const std::size_t>(&logit_row, 1) : std::span<const std::size_t>{},
          last ? std::span<float>(logits) : std::span<float>{});
      if (!last) continue;
      const std::int32_t next = sample_token(logits, s, rng);
      tokens.push_back(next);
      out.output.push_back(next);
      out.hit_eos = next == c.eos_token;
      if (out.hit_eos || out.output.size() >= max_new) break;
    }
    result.summary.generated_tokens += out.output.size();
    memory.deallocate(cache, kv_bytes, 256);
  }
  serve_summary& summary = result.summary;
  summary.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  summary.peak_kv_bytes = kv_bytes;
  finish_summary(summary, m, prompts.size(), kv_bytes);
  return result;
}

std::vector<float> teacher_forced_logits(const model& m, frugal::any_resource_ref memory,
                                         std::span<const std::int32_t> tokens) {
  std::vector<std::size_t> rows(tokens.size());
  std::iota(rows.begin(), rows.end(), 0);
  std::vector<float> logits(tokens.size() * m.config().vocab_size);
  m.forward_sequence(tokens, memory, rows, logits);
  return logits;
}

std::vector<format_comparison> compare(const model& reference, const std::string& path,
                                       frugal::any_resource_ref memory,
                                       std::span<const prompt> prompts,
                                       std::span<const std::string> formats,
                                       std::uint32_t max_new_tokens) {
  const config& c = reference.config();
  // The sequences scored: each prompt and its greedy FP32 continuation.
  engine greedy{reference, memory, {.max_new_tokens = max_new_tokens}};
  const serve_result continuations = greedy.serve(prompts);
  std::vector<std::vector<std::int32_t>> sequences;
  std::vector<std::vector<float>> reference_logits;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    std::vector<std::int32_t> s = prompts[i];
    s.insert(s.end(), continuations.requests[i].output.begin(),
             continuations.requests[i].output.end());
    if (s.size() < 2) continue;  // no position with a following token to score
    sequences.push_back(s);
    reference_logits.push_back(teacher_forced_logits(reference, memory, {s.data(), s.size() - 1}));
  }
  std::vector<format_comparison> out;
  for (const std::string& f : formats) {
    const model candidate = load(path, memory, {.format = f});
    frugal::quant::logit_comparer comparer(c.vocab_size);
    for (std::size_t i = 0; i < sequences.size(); ++i) {
      const auto& s = sequences[i];
      const std::vector<float> logits =
          teacher_forced_logits(candidate, memory, {s.data(), s.size() - 1});
      for (std::size_t t = 0; t + 1 < s.size(); ++t)
        comparer.add({reference_logits[i].data() + t * c.vocab_size, c.vocab_size},
                     {logits.data() + t * c.vocab_size, c.vocab_size}, s[t + 1]);
    }
    out.push_back({candidate.weight_format(), comparer.result(), candidate.weight_bytes(),
                   candidate.kept_float()});
  }
  return out;
}

}  // namespace llama
