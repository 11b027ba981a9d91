// examples/llama/serve.hpp: the serving loop of the example engine. Requests go through
// frugal::batch::scheduler (continuous batching, chunked prefill, preemption, prefix caching),
// their KV lives in a frugal::kv::cache, every step's activations in a batch::workspace sized to
// that step. Also: the llama2.c-style loop it is measured against, and the model-level
// comparison of weight formats.
//   llama::engine e{model, memory, {.max_num_seqs = 64}};
//   llama::serve_result r = e.serve(prompts);
#pragma once

#include "llama.hpp"

#include <frugal/batch/scheduler.hpp>
#include <frugal/kv/cache.hpp>
#include <frugal/quant/compare.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace llama {

using prompt = std::vector<std::int32_t>;

/// @brief Sampling: temperature 0 is greedy argmax (lowest id on an exact tie); otherwise
/// softmax(logits / temperature) cut to the smallest set of ids whose mass reaches top_p. Each
/// request draws from its own generator seeded by (seed, request index), so its tokens do not
/// depend on what else is in the batch.
struct sampling {
  float temperature = 0.0f;
  float top_p = 1.0f;
  std::uint64_t seed = 0;
};

/// @brief The engine's knobs (the program's options of the same names).
struct serve_options {
  frugal::kv::dtype kv_dtype = frugal::kv::dtype::fp32;
  std::size_t kv_memory = 0;  ///< bytes of KV pages; 0: use `pages`
  std::uint32_t pages = 0;    ///< pages when kv_memory is 0; both 0: 64 x seq_len tokens
  std::uint32_t page_size = 16;
  std::uint32_t max_num_seqs = 64;
  std::uint32_t max_batched_tokens = 512;
  std::uint32_t max_new_tokens = 128;
  frugal::batch::preemption_mode preemption = frugal::batch::preemption_mode::recompute;
  std::uint32_t host_pages = 0;  ///< host tier for swap preemption; 0 with swap: = pages
  bool prefix_caching = true;
  sampling sample{};
};

/// @brief One request's outcome, in input order.
struct request_result {
  std::size_t index = 0;
  std::size_t prompt_tokens = 0;
  std::vector<std::int32_t> output;
  std::size_t cached_tokens = 0;  ///< prompt tokens served from the prefix cache at admission
  std::size_t preemptions = 0;
  bool hit_eos = false;
};

/// @brief What a run measured.
struct serve_summary {
  double seconds = 0;
  double tokens_per_second = 0;  ///< generated tokens / seconds
  std::size_t generated_tokens = 0;
  std::size_t steps = 0;
  std::size_t peak_kv_bytes = 0;    ///< pages held by sequences at the peak x page bytes
  std::size_t kv_bytes_static = 0;  ///< requests x seq_len tokens of KV (llama2.c's reservation)
  std::size_t kv_pool_bytes = 0;    ///< the cache's whole pool
  std::size_t peak_workspace_bytes = 0;
  std::size_t weight_bytes = 0;
  std::string weight_format;
  std::uint32_t pages_used_peak = 0;
  std::uint32_t pages_total = 0;
  std::size_t preemptions = 0;
  std::size_t prefix_hit_tokens = 0;
  /// Bytes still allocated through the engine's memory after the run, beyond the weights and
  /// the cache's pools (0 unless something leaked).
  std::size_t other_outstanding_bytes = 0;
};

struct serve_result {
  std::vector<request_result> requests;
  serve_summary summary;
};

/// @brief The serving engine over a loaded model. Memory for the cache and the workspace comes
/// from `memory` (the same tracked resource as the weights, in the example).
class engine {
 public:
  /// @throws std::invalid_argument for options that cannot work (zero pages or page size, a KV
  ///   budget that holds no page)
  engine(const model& m, frugal::any_resource_ref memory, serve_options options);

  /// @brief Serves every prompt to completion (max_new_tokens, the end token, or seq_len).
  /// @throws std::invalid_argument for an empty prompt, an id outside the vocabulary or a prompt
  ///   of seq_len tokens or more (nothing is run then)
  serve_result serve(std::span<const prompt> prompts);

  /// @brief The 8-bit KV scales in use (per layer, K then V), empty for 16/32-bit KV.
  const std::vector<float>& kv_scales() const noexcept { return scales_; }
  const serve_options& options() const noexcept { return options_; }

 private:
  const model* model_;
  frugal::any_resource_ref memory_;
  serve_options options_;
  std::vector<float> scales_;
};

/// @brief Checks prompts against the model. @throws std::invalid_argument naming the request
void check_prompts(const model& m, std::span<const prompt> prompts);

/// @brief KV bytes of one request reserved for seq_len tokens up front, as llama2.c does, with
/// `element_bytes` per value.
std::size_t reserved_kv_bytes(const config& c, std::size_t element_bytes);

/// @brief The end of every run's summary, once `summary.seconds` and `generated_tokens` are
/// known: tokens per second, the weights, and `kv_bytes_static` (`requests` x
/// `kv_bytes_per_request`, the reservation the run is compared with).
void finish_summary(serve_summary& summary, const model& m, std::size_t requests,
                    std::size_t kv_bytes_per_request);

/// @brief llama2.c's design, the baseline: one request at a time, KV reserved for seq_len tokens
/// up front (contiguous, fp32), one token per forward pass. Greedy or sampled as `s` says.
serve_result serve_static(const model& m, frugal::any_resource_ref memory,
                          std::span<const prompt> prompts, std::uint32_t max_new_tokens,
                          const sampling& s);

/// @brief The generator state request `index` starts from under `seed`.
std::uint64_t request_seed(std::uint64_t seed, std::size_t index) noexcept;

/// @brief Picks the next token from one row of logits (see sampling); `rng_state` is the
/// request's generator state.
std::int32_t sample_token(std::span<const float> logits, const sampling& s,
                          std::uint64_t& rng_state);

/// @brief Teacher-forced logits of `tokens` (one sequence) through a fp32 paged cache: row t
/// predicts token t + 1. Used by compare().
std::vector<float> teacher_forced_logits(const model& m, frugal::any_resource_ref memory,
                                         std::span<const std::int32_t> tokens);

/// @brief A weight format's model-level accuracy: statistics of compare_logits and the bytes.
struct format_comparison {
  std::string format;
  frugal::quant::logit_comparison stats;
  std::size_t weight_bytes = 0;
  std::vector<std::string> kept_float;
};

/// @brief For each prompt, its greedy continuation under `reference` (up to max_new_tokens),
/// then every position of prompt + continuation scored, the reference model's logits against a
/// model loaded from `path` with each format; the token that follows each position is the target.
std::vector<format_comparison> compare(const model& reference, const std::string& path,
                                       frugal::any_resource_ref memory,
                                       std::span<const prompt> prompts,
                                       std::span<const std::string> formats,
                                       std::uint32_t max_new_tokens);

}  // namespace llama
