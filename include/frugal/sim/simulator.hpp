// frugal/sim/simulator.hpp: a serving simulator. It plays a request stream against a GPU memory
// budget under static batching or frugal's scheduler, stepping without running a model, and
// reports what the memory policy costs: tokens per step, concurrency, peak KV and workspace bytes.
//   frugal::sim::result r =
//       frugal::sim::run({.model = "llama-3-8b", .policy = frugal::sim::policy::dynamic});
//   std::printf("%.1f tokens per step, %zu at once\n", r.tokens_per_step, r.max_concurrent);
#pragma once

#include <frugal/batch/scheduler.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/sim/models.hpp>
#include <frugal/sim/workload.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal::sim {

/// @brief How requests share the GPU (see docs/batch.md#simulator).
enum class policy : std::uint8_t {
  static_batching,  ///< "static": batches reserve max_len tokens of KV per sequence
  dynamic,          ///< "dynamic": frugal's scheduler over a paged KV cache
};

/// @brief "static" or "dynamic".
std::string_view to_string(policy p) noexcept;

/// @brief The policy called `name` (as to_string writes it).
/// @throws invalid_argument for an unknown name, listing the known ones
policy parse_policy(std::string_view name);

/// @brief Known policy names, for help texts (workloads(): frugal/sim/workload.hpp).
std::vector<std::string> policies();

/// @brief One simulation: the model and its memory, the request stream and the policy.
/// The model is named (a preset, checked by run(), which lists the known ones); the weight
/// format, workload and policy are typed: parse_weight_format, parse_workload and parse_policy
/// read their names.
struct config {
  // ---- model and memory -------------------------------------------------------------------
  std::string model = "llama-3-8b";  ///< a preset of models.hpp
  /// When set, the model simulated instead of the preset named `model` (e.g. a shape read from
  /// a Hugging Face config.json by read_hf_config()).
  std::optional<model_shape> model_override{};
  std::size_t gpu_memory = std::size_t{80} << 30;         ///< bytes: weights + workspace + KV
  sim::weight_format weights = sim::weight_format::fp16;  ///< priced by bits per parameter
  kv::dtype kv_dtype = kv::dtype::fp16;
  /// When nonzero, the weights' size in bytes instead of parameters x bits of `weights` (a
  /// mixed-precision plan, say, whose size is no whole number of bits per parameter).
  std::size_t weight_bytes_override = 0;
  /// Names the weights in messages when weight_bytes_override is set (e.g. "int4_g64"); empty:
  /// to_string(weights).
  std::string weights_label{};

  // ---- request stream ---------------------------------------------------------------------
  /// "sharegpt" (mean prompt 161.31, output 337.99 tokens), "alpaca" (19.31 and 58.45), both
  /// lognormal with length_sigma; or "fixed" (fixed_prompt and fixed_output exactly): see
  /// frugal/sim/workload.hpp
  sim::workload workload = sim::workload::sharegpt;
  std::size_t num_requests = 1000;
  /// Longest prompt + output a request may have: drawn lengths are clipped to it, and it is the
  /// static policy's per-sequence reservation and the scheduler's max_model_len.
  std::uint32_t max_len = 4096;
  std::uint64_t seed = 1;
  /// Mean requests arriving per step (Poisson arrivals: exponential gaps, in steps); 0: every
  /// request is there at step 0 (a saturated server).
  double arrival_rate = 0;
  double length_sigma = length_options{}.sigma;                ///< of the lognormal draws
  std::uint32_t fixed_prompt = length_options{}.fixed_prompt;  ///< "fixed": prompt tokens
  std::uint32_t fixed_output = length_options{}.fixed_output;  ///< "fixed": output tokens
  /// Tokens every prompt starts with (a shared system prompt): prefix-cache hits.
  std::uint32_t shared_prefix = 0;

  // ---- policy -----------------------------------------------------------------------------
  sim::policy policy = sim::policy::dynamic;
  /// Token budget per step: chunks of prefill (both policies) and the workspace's worst case.
  std::uint32_t max_batched_tokens = 8192;
  /// static: sequences per batch, each reserving max_len tokens of KV; 0: as many as fit
  std::uint32_t max_batch = 0;
  std::uint32_t max_num_seqs = 1024;     ///< dynamic: scheduler_options::max_num_seqs
  std::uint32_t page_size = 16;          ///< dynamic: tokens per KV page
  double watermark = 0.01;               ///< dynamic: scheduler_options::watermark
  bool prefix_caching = true;            ///< dynamic: kv::cache_options
  std::uint32_t shrink_after_steps = 8;  ///< dynamic: the workspace's
  /// dynamic: check cache.is_valid() every this many steps as well as at the end (0: at the
  /// end only); a failed check stops the run with frugal::error.
  std::size_t validate_every = 0;
};

/// @brief What a run measured. Per-step figures are averaged over steps that computed tokens
/// (idle gaps between Poisson arrivals are skipped, not counted).
struct result {
  double tokens_per_step = 0;         ///< tokens computed per step (static: padding excluded)
  double output_tokens_per_step = 0;  ///< tokens sampled per step (the throughput)
  std::size_t max_concurrent = 0;     ///< most sequences in one step
  double mean_concurrent = 0;         ///< sequences per step, averaged over the steps
  /// sequences per step, averaged over the steps in which requests that had arrived were kept
  /// waiting (the saturated phase: the drain at the end and idle gaps are left out)
  double mean_concurrent_saturated = 0;
  /// static: the KV reservation (max_batch x max_len); dynamic: most pages held by sequences
  std::size_t peak_kv_bytes = 0;
  std::size_t peak_workspace_bytes = 0;  ///< most bytes the workspace held
  double mean_workspace_bytes = 0;       ///< bytes the workspace held, averaged over the steps
  std::size_t preemptions = 0;
  /// Time-averaged share of KV slots held but holding no token: sum over steps of the empty
  /// slots / sum of the held slots (static: of the reservation).
  double waste = 0;
  std::size_t finished = 0;
  std::size_t rejected = 0;
  std::vector<std::pair<batch::request_id, std::string>> rejections;  ///< id, reason
  std::size_t steps = 0;
  std::size_t computed_tokens = 0;  ///< over all steps (dynamic: recomputation included)
  std::size_t output_tokens = 0;
  std::size_t padding_tokens = 0;     ///< static: decode slots of finished sequences
  std::size_t prefix_hit_tokens = 0;  ///< prompt tokens served from the prefix cache
  double mean_prompt = 0;             ///< of the drawn requests
  double mean_output = 0;

  // ---- the budget -------------------------------------------------------------------------
  std::size_t weight_bytes = 0;
  std::size_t workspace_budget_bytes = 0;  ///< set aside for the worst step
  std::size_t kv_budget_bytes = 0;         ///< KV pool (dynamic) or what static may reserve
  std::size_t kv_bytes_per_token = 0;      ///< over every layer (model_shape::kv_bytes_per_token)
  /// KV of one max_len sequence, per layer: sliding-window layers hold at most their window
  /// (static: token by token; dynamic: in pages, the window's pages plus one)
  std::size_t kv_bytes_per_sequence = 0;
  std::uint32_t kv_pages = 0;         ///< dynamic: pages in the pool
  std::uint32_t max_batch = 0;        ///< static: sequences per batch
  std::size_t peak_memory_bytes = 0;  ///< most bytes held from the simulated GPU at once

  // ---- bookkeeping checks (dynamic) ---------------------------------------------------------
  bool cache_valid = true;         ///< every cache.is_valid() check passed
  std::uint32_t leaked_pages = 0;  ///< pages still used by a sequence after the run
};

/// @brief How run() splits the GPU for a config: weights, the worst step's workspace, the KV
/// pages (dynamic policy) and what is left. The parts add up to gpu_memory exactly.
struct memory_budget {
  std::size_t gpu_memory = 0;
  std::size_t weight_bytes = 0;        ///< parameters x bits / 8 (or weight_bytes_override)
  std::size_t weights_held_bytes = 0;  ///< weight_bytes rounded up to the 2 MiB granule
  std::size_t workspace_bytes = 0;     ///< activations and logits of the worst step
  std::size_t kv_bytes = 0;            ///< kv_pages x page_bytes
  std::size_t headroom_bytes = 0;      ///< the rest: rounding and the tail shorter than a page
  std::size_t page_bytes = 0;          ///< one page of page_size tokens over every layer
  std::uint32_t page_size = 0;
  std::uint32_t kv_pages = 0;
  std::size_t kv_bytes_per_token = 0;
  /// KV of one max_len sequence in pages, per layer (model_shape::kv_bytes_per_sequence)
  std::size_t kv_bytes_per_sequence = 0;
  // gpu_memory == weights_held_bytes + workspace_bytes + kv_bytes + headroom_bytes
};

/// @brief The budget run() would use for `c`, without running. The same checks as run() (the
/// request stream's names and sizes included).
/// @throws invalid_argument as run() does
memory_budget budget(const config& c);

/// @brief Runs one simulation (see docs/batch.md#simulator). Deterministic for a given config.
/// @throws invalid_argument for an unknown model (listing the known ones), zero num_requests or
/// max_len, a max_len beyond the model's context, or a budget that does not hold the weights, the
/// workspace and one max_len sequence of KV
/// @throws frugal::error when a run stops making progress or the cache's bookkeeping breaks
result run(const config& c);

}  // namespace frugal::sim
