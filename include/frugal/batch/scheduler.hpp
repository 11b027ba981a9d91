// frugal/batch/scheduler.hpp: memory-aware continuous batching over a kv::cache. Requests are
// admitted by the pages actually free, prefills run in chunks that fit a token budget, and when
// pages run out the lowest-priority, most recently admitted sequence is preempted.
//   frugal::batch::scheduler sched{cache, {.max_num_seqs = 256, .max_batched_tokens = 8192}};
//   sched.submit({.id = 1, .prompt = tokens, .max_new_tokens = 128});
//   auto step = sched.plan_step();  /* run kernels */  sched.complete_step(sampled);
#pragma once

#include <frugal/kv/cache.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace frugal::batch {

using request_id = std::uint64_t;
using kv::token_id;

/// @brief What happens to a sequence preempted for lack of pages.
enum class preemption_mode : std::uint8_t {
  recompute,  ///< its pages are freed; it goes back to the front of the queue, to be prefilled
              ///< again
  swap,       ///< its pages move to the cache's host tier and come back when pages are free
};

/// @brief Limits and policies of a scheduler.
struct scheduler_options {
  std::uint32_t max_num_seqs = 256;         ///< sequences running at once
  std::uint32_t max_batched_tokens = 8192;  ///< tokens computed per step (decodes + prefill)
  /// Fraction of the cache's pages a newly admitted request must leave free; negative keeps the
  /// cache's own watermark.
  double watermark = 0.01;
  /// Split prompts into chunks that fit the step's remaining budget (multiples of the page size,
  /// except a prompt's last chunk); off: a prompt is computed in one step or waits.
  bool chunked_prefill = true;
  preemption_mode preemption = preemption_mode::recompute;
  /// Longest prompt + max_new_tokens accepted (the model's context); 0: no limit beyond the cache.
  std::uint32_t max_model_len = 0;
  /// A sampled token equal to this finishes the request (negative: none).
  token_id eos_token = -1;
};

/// @brief A request to serve. Higher priority values are served first and preempted last.
struct request {
  request_id id = 0;
  std::vector<token_id> prompt{};
  std::uint32_t max_new_tokens = 0;
  int priority = 0;
  double arrival_time = 0;
  std::uint64_t extra_key = 0;  ///< kept apart in the prefix cache (adapter id, salt)
};

/// @brief One sequence in a step: how many tokens it computes and where they sit.
struct scheduled_sequence {
  request_id id = 0;
  std::uint32_t num_tokens = 0;   ///< tokens computed this step (1 for a decode)
  std::uint32_t context_len = 0;  ///< tokens in its KV after this step
  bool prefill = false;           ///< a prompt chunk (else a decode)
  bool samples = false;  ///< produces a token this step: a decode, or a prompt's last chunk
};

/// @brief What plan_step() hands to the engine for one step.
struct step_plan {
  /// Decodes first, then prefill chunks.
  std::vector<scheduled_sequence> sequences;
  /// KV slot (page * page_size + offset) of every token computed this step, in sequence order.
  std::vector<std::int64_t> slot_mapping;
  /// vLLM block tables and FlashInfer page table of the scheduled sequences, same order, each
  /// covering the sequence's context_len tokens: what attention reads this step (a prompt
  /// still being prefilled in chunks holds pages for the rest, which are not listed).
  kv::block_tables block_tables;
  kv::flashinfer_page_table page_table;
  /// Page copies to perform, in order, before the step's kernels (copy-on-write, swaps).
  std::vector<kv::copy_op> copies;
  std::vector<request_id> preempted;
  /// Requests refused for good this step, with the reason.
  std::vector<std::pair<request_id, std::string>> rejected;
  std::size_t num_batched_tokens = 0;
};

/// @brief A finished request and the tokens it produced.
struct finished_request {
  request_id id = 0;
  std::vector<token_id> output;
  bool hit_eos = false;
  std::size_t preemptions = 0;
};

/// @brief Counters over the scheduler's life.
struct scheduler_stats {
  std::size_t steps = 0;
  std::size_t preemptions = 0;
  std::size_t swaps_out = 0;
  std::size_t swaps_in = 0;
  std::size_t rejected = 0;
  std::size_t finished = 0;
  std::size_t prefix_hit_tokens = 0;  ///< prompt tokens served from the prefix cache
  std::size_t batched_tokens = 0;     ///< tokens computed over all steps
  std::size_t max_running = 0;
};

/// @brief Continuous batching over one kv::cache (see docs/batch.md). Not thread safe.
///
/// A step: (1) running decodes append their last sampled token, preempting the lowest-priority,
/// most recently admitted sequence while pages are lacking (cached pages are evicted first, by
/// the cache); (2) swapped-out sequences come back while pages allow; (3) unfinished prefills
/// continue, then (4) waiting requests are admitted, in priority then arrival order, while the
/// token budget, max_num_seqs and the watermark allow.
class scheduler {
 public:
  /// @param cache must outlive the scheduler; swap preemption needs its host tier
  /// @throws invalid_argument for a zero budget or max_num_seqs, or swap without a host tier
  scheduler(kv::cache& cache, scheduler_options options = {});
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  /// @brief Queues a request.
  /// @throws invalid_argument for a duplicate id, an empty prompt, max_new_tokens of 0, or a
  /// prompt + max_new_tokens beyond max_model_len; nothing is queued then
  void submit(request r);

  /// @brief Plans the next step (see the class comment). Changes the cache: pages for the
  /// step's tokens are allocated when it returns.
  /// @returns the plan, valid until the next plan_step (its buffers are reused step after step,
  /// so a steady state allocates nothing)
  const step_plan& plan_step();

  /// @brief Records the tokens sampled in the step just planned: one per scheduled sequence
  /// whose `samples` is true, as (request id, token). Requests that reach max_new_tokens or the
  /// EOS token finish and release their pages.
  /// @throws invalid_argument for an id that did not sample this step, or one given twice
  /// (nothing is recorded then)
  void complete_step(std::span<const std::pair<request_id, token_id>> sampled);

  /// @brief Finished requests since the last call, in finishing order.
  std::vector<finished_request> take_finished();

  std::size_t num_waiting() const noexcept { return waiting_.size(); }
  std::size_t num_running() const noexcept { return running_.size(); }
  std::size_t num_swapped() const noexcept { return swapped_.size(); }
  bool has_unfinished() const noexcept;
  const scheduler_stats& stats() const noexcept { return stats_; }
  const scheduler_options& options() const noexcept { return options_; }
  kv::cache& cache() const noexcept { return *cache_; }

 private:
  struct entry;  // a request in flight
  bool fits_ever(const entry& e) const noexcept;
  void preempt(entry& e, step_plan& plan);
  bool append_pending(entry& e, step_plan& plan);
  bool admit(entry& e, std::uint32_t budget);
  entry* pick_victim(const entry* except) noexcept;
  void schedule(entry& e, std::uint32_t tokens, bool prefill, step_plan& plan);
  void finish(entry& e, bool hit_eos);
  // The phases of plan_step, in order; each takes from the step's token budget.
  void begin_step(step_plan& plan);
  void plan_decodes(std::uint32_t& budget, step_plan& plan);
  void plan_swap_ins(std::uint32_t& budget, step_plan& plan);
  void plan_prefills(std::uint32_t& budget, step_plan& plan);
  void plan_admissions(std::uint32_t& budget, step_plan& plan);
  void export_tables(step_plan& plan);

  kv::cache* cache_;
  scheduler_options options_;
  std::unordered_map<request_id, std::unique_ptr<entry>> requests_;
  std::deque<entry*> waiting_;              // front first
  std::vector<entry*> running_;             // in admission order
  std::vector<entry*> swapped_;             // in preemption order
  std::vector<entry*> sampling_;            // sequences that sample in the planned step
  std::vector<const kv::sequence*> batch_;  // the planned step's sequences, for the exports
  step_plan plan_;
  std::vector<finished_request> finished_;
  std::vector<std::pair<request_id, std::string>> pending_rejections_;
  std::uint64_t admission_counter_ = 0;
  std::uint64_t submit_counter_ = 0;
  scheduler_stats stats_;
};

}  // namespace frugal::batch
