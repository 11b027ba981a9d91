// Continuous batching: admission by free pages, chunked prefill, preemption by priority.
#include <frugal/batch/scheduler.hpp>

#include <algorithm>
#include <optional>

namespace frugal::batch {

struct scheduler::entry {
  request req;
  std::vector<token_id> output;   // sampled tokens, the last one possibly not in KV yet
  kv::sequence seq;               // empty while waiting or after a recompute preemption
  std::size_t prompt_len = 0;     // tokens to prefill: prompt + output at (re)admission
  std::size_t computed = 0;       // tokens whose KV is computed or planned
  bool pending = false;           // output.back() still has to be appended to the KV
  std::uint64_t admitted_at = 0;  // admission order (larger: more recent)
  std::uint64_t submitted_at = 0;
  std::size_t preemptions = 0;
  bool running = false;    // in running_
  bool scheduled = false;  // in the step being planned
  bool samples = false;    // samples in the step being planned
  bool sampled = false;    // given a token by the complete_step under way
};

namespace {
/// The scheduler's one rule of importance: higher priority first; at equal priority, `earlier`
/// decides (arrival then submission for waiting requests, admission for running sequences).
/// The queue's order, the decodes' order and the preemption victim (the least important) all
/// follow it.
template <class Entry, class Earlier>
bool more_important(const Entry& a, const Entry& b, Earlier earlier) {
  if (a.req.priority != b.req.priority) return a.req.priority > b.req.priority;
  return earlier(a, b);
}

/// Waiting requests: earlier arrival, then earlier submission.
template <class Entry>
bool arrived_earlier(const Entry& a, const Entry& b) {
  if (a.req.arrival_time != b.req.arrival_time) return a.req.arrival_time < b.req.arrival_time;
  return a.submitted_at < b.submitted_at;
}

/// Running sequences: earlier admission.
template <class Entry>
bool admitted_earlier(const Entry& a, const Entry& b) {
  return a.admitted_at < b.admitted_at;
}
}  // namespace

scheduler::scheduler(kv::cache& cache, scheduler_options options)
    : cache_(&cache), options_(options) {
  FRUGAL_EXPECTS(options_.max_num_seqs > 0, "batch::scheduler: max_num_seqs is zero",
                 invalid_argument);
  FRUGAL_EXPECTS(options_.max_batched_tokens > 0, "batch::scheduler: max_batched_tokens is zero",
                 invalid_argument);
  FRUGAL_EXPECTS(options_.preemption != preemption_mode::swap || cache.host_pages() != nullptr,
                 "batch::scheduler: swap preemption needs a cache with a host tier (host_pages)",
                 invalid_argument);
  if (options_.watermark >= 0) cache.set_watermark(options_.watermark);
}

scheduler::~scheduler() = default;

bool scheduler::has_unfinished() const noexcept {
  return !waiting_.empty() || !running_.empty() || !swapped_.empty();
}

bool scheduler::fits_ever(const entry& e) const noexcept {
  const kv::layout& l = cache_->layout();
  const std::size_t prompt_pages = l.pages_for(e.req.prompt.size());
  const std::size_t total_pages = l.pages_for(e.req.prompt.size() + e.req.max_new_tokens);
  const std::size_t watermark_pages = cache_->watermark_pages();
  const bool one_step = options_.chunked_prefill ||
                        e.req.prompt.size() + e.req.max_new_tokens <= options_.max_batched_tokens;
  return prompt_pages + watermark_pages <= cache_->num_pages() &&
         total_pages <= cache_->num_pages() && one_step;
}

void scheduler::submit(request r) {
  FRUGAL_EXPECTS(!requests_.contains(r.id),
                 "batch::scheduler::submit: request id " + std::to_string(r.id) + " is in use",
                 invalid_argument);
  FRUGAL_EXPECTS(!r.prompt.empty(), "batch::scheduler::submit: the prompt is empty",
                 invalid_argument);
  FRUGAL_EXPECTS(r.max_new_tokens > 0, "batch::scheduler::submit: max_new_tokens is 0",
                 invalid_argument);
  FRUGAL_EXPECTS(
      options_.max_model_len == 0 || r.prompt.size() + r.max_new_tokens <= options_.max_model_len,
      "batch::scheduler::submit: prompt (" + std::to_string(r.prompt.size()) +
          ") + max_new_tokens (" + std::to_string(r.max_new_tokens) + ") exceeds max_model_len " +
          std::to_string(options_.max_model_len),
      invalid_argument);
  auto e = std::make_unique<entry>();
  e->req = std::move(r);
  e->submitted_at = submit_counter_++;
  if (!fits_ever(*e)) {
    pending_rejections_.emplace_back(e->req.id,
                                     "needs more pages than the cache can ever give it (" +
                                         std::to_string(e->req.prompt.size()) + " prompt + " +
                                         std::to_string(e->req.max_new_tokens) + " new tokens, " +
                                         std::to_string(cache_->num_pages()) + " pages of " +
                                         std::to_string(cache_->layout().page_size) + " tokens)");
    ++stats_.rejected;
    return;
  }
  entry* raw = e.get();
  requests_.emplace(raw->req.id, std::move(e));
  auto at = waiting_.end();
  while (at != waiting_.begin()) {
    const entry* prev = *std::prev(at);
    if (prev->preemptions > 0 || !more_important(*raw, *prev, arrived_earlier<entry>)) break;
    --at;
  }
  waiting_.insert(at, raw);
}

scheduler::entry* scheduler::pick_victim(const entry* except) noexcept {
  // The lowest-priority, most recently admitted running sequence not yet scheduled this step;
  // the one asking (`except`, not scheduled yet either) is a candidate too, so it yields when it
  // is itself the least important.
  entry* victim = nullptr;
  for (entry* r : running_) {
    if (r->scheduled && r != except) continue;
    if (victim == nullptr || more_important(*victim, *r, admitted_earlier<entry>)) victim = r;
  }
  return victim;
}

void scheduler::preempt(entry& e, step_plan& plan) {
  running_.erase(std::find(running_.begin(), running_.end(), &e));
  e.running = false;
  ++e.preemptions;
  ++stats_.preemptions;
  plan.preempted.push_back(e.req.id);
  if (options_.preemption == preemption_mode::swap) {
    if (auto ops = cache_->try_swap_out(e.seq)) {
      plan.copies.insert(plan.copies.end(), ops->begin(), ops->end());
      swapped_.push_back(&e);
      ++stats_.swaps_out;
      return;
    }
    // The host tier is full: fall back to recomputing this one.
  }
  e.seq.release();
  e.computed = 0;
  e.pending = false;  // its last sampled token is recomputed with the rest
  waiting_.push_front(&e);
}

bool scheduler::append_pending(entry& e, step_plan& plan) {
  const token_id token = e.output.back();
  while (!cache_->try_append(e.seq, std::span<const token_id>(&token, 1))) {
    entry* victim = pick_victim(&e);
    if (victim == nullptr) return false;
    preempt(*victim, plan);
    if (victim == &e) return false;
  }
  e.pending = false;
  ++e.computed;
  return true;
}

void scheduler::schedule(entry& e, std::uint32_t tokens, bool prefill, step_plan& plan) {
  const auto pages = e.seq.pages();
  const std::size_t first = e.computed - (prefill ? 0 : 1);
  if (prefill) e.computed += tokens;
  cache_->mark_computed(e.seq, e.computed);  // written by this step's kernels before any read
  for (std::size_t t = first; t < first + tokens; ++t)
    plan.slot_mapping.push_back(cache_->layout().slot_of(pages, t));
  scheduled_sequence s;
  s.id = e.req.id;
  s.num_tokens = tokens;
  s.context_len = static_cast<std::uint32_t>(e.computed);
  s.prefill = prefill;
  s.samples = !prefill || e.computed == e.prompt_len;
  plan.sequences.push_back(s);
  plan.num_batched_tokens += tokens;
  e.scheduled = true;
  e.samples = s.samples;
  if (s.samples) sampling_.push_back(&e);
}

bool scheduler::admit(entry& e, std::uint32_t budget) {
  std::vector<token_id> tokens = e.req.prompt;
  tokens.insert(tokens.end(), e.output.begin(), e.output.end());
  // Pages are registered for prefix hits only as their tokens are scheduled (schedule()), so no
  // request can hit a page whose prefill has not run.
  auto seq = cache_->try_add_sequence(tokens, e.req.extra_key, 0);
  if (!seq) return false;
  const std::size_t to_compute = tokens.size() - seq->cached_tokens();
  if (!options_.chunked_prefill && to_compute > budget) return false;  // seq releases itself
  e.seq = std::move(*seq);
  e.prompt_len = tokens.size();
  e.computed = e.seq.cached_tokens();
  e.pending = false;
  e.admitted_at = admission_counter_++;
  stats_.prefix_hit_tokens += e.computed;
  running_.push_back(&e);
  e.running = true;
  return true;
}

const step_plan& scheduler::plan_step() {
  step_plan& plan = plan_;
  begin_step(plan);
  std::uint32_t budget = options_.max_batched_tokens;
  plan_decodes(budget, plan);
  plan_swap_ins(budget, plan);
  plan_prefills(budget, plan);
  plan_admissions(budget, plan);
  export_tables(plan);
  ++stats_.steps;
  stats_.batched_tokens += plan.num_batched_tokens;
  stats_.max_running = std::max(stats_.max_running, running_.size());
  return plan;
}

void scheduler::begin_step(step_plan& plan) {
  // The plan's vectors keep their capacity from step to step.
  plan.sequences.clear();
  plan.slot_mapping.clear();
  plan.copies.clear();
  plan.preempted.clear();
  plan.rejected.clear();
  plan.rejected.swap(pending_rejections_);
  plan.num_batched_tokens = 0;
  for (entry* e : sampling_) e->samples = false;
  sampling_.clear();
  for (entry* e : running_) e->scheduled = false;
}

void scheduler::plan_decodes(std::uint32_t& budget, step_plan& plan) {
  // (1) Decodes, most important first, so that victims come from those not yet scheduled.
  std::vector<entry*> decoding;
  for (entry* e : running_)
    if (e->pending) decoding.push_back(e);
  std::sort(decoding.begin(), decoding.end(), [](const entry* a, const entry* b) {
    return more_important(*a, *b, admitted_earlier<entry>);
  });
  for (entry* e : decoding) {
    if (budget == 0) break;
    if (!e->running) continue;  // preempted by an earlier decode of this step
    if (!append_pending(*e, plan)) continue;
    schedule(*e, 1, false, plan);
    --budget;
  }
}

void scheduler::plan_swap_ins(std::uint32_t& budget, step_plan& plan) {
  // (2) Swapped-out sequences come back, earliest preempted first, while their pages and one
  // more (for the token they append) are free, so bringing one back never preempts another.
  while (!swapped_.empty() && running_.size() < options_.max_num_seqs && budget > 0) {
    entry* e = swapped_.front();
    const std::size_t pages = cache_->layout().pages_for(e->seq.num_tokens());
    if (pages + (e->pending ? 1 : 0) > cache_->num_free_pages()) break;
    auto ops = cache_->swap_in(e->seq);
    plan.copies.insert(plan.copies.end(), ops.begin(), ops.end());
    swapped_.erase(swapped_.begin());
    running_.push_back(e);
    e->running = true;
    ++stats_.swaps_in;
    if (e->pending && append_pending(*e, plan)) {
      schedule(*e, 1, false, plan);
      --budget;
    }
  }
}

void scheduler::plan_prefills(std::uint32_t& budget, step_plan& plan) {
  // (3) Prefills under way continue, in admission order.
  const std::uint32_t page_size = cache_->layout().page_size;
  for (entry* e : running_) {
    if (budget == 0) break;
    if (e->scheduled || e->pending || e->computed >= e->prompt_len) continue;
    const std::size_t remaining = e->prompt_len - e->computed;
    std::size_t chunk = std::min<std::size_t>(remaining, budget);
    if (chunk < remaining) {
      if (!options_.chunked_prefill) continue;
      chunk -= chunk % page_size;
      if (chunk == 0) continue;
    }
    schedule(*e, static_cast<std::uint32_t>(chunk), true, plan);
    budget -= static_cast<std::uint32_t>(chunk);
  }
}

void scheduler::plan_admissions(std::uint32_t& budget, step_plan& plan) {
  // (4) Admission from the front of the queue while budget, max_num_seqs and pages allow.
  const std::uint32_t page_size = cache_->layout().page_size;
  while (!waiting_.empty() && budget > 0 && running_.size() < options_.max_num_seqs) {
    entry* e = waiting_.front();
    if (options_.chunked_prefill && budget < page_size &&
        e->req.prompt.size() + e->output.size() > budget)
      break;                        // not even one page of its prompt fits this step
    if (!admit(*e, budget)) break;  // head of line: later requests wait behind it
    waiting_.pop_front();
    const std::size_t remaining = e->prompt_len - e->computed;
    std::size_t chunk = std::min<std::size_t>(remaining, budget);
    if (chunk < remaining) chunk -= chunk % page_size;
    if (chunk > 0) {
      schedule(*e, static_cast<std::uint32_t>(chunk), true, plan);
      budget -= static_cast<std::uint32_t>(chunk);
    }
  }
}

void scheduler::export_tables(step_plan& plan) {
  // Exports into the plan's own buffers (sized, not reallocated, in a steady state).
  const std::uint32_t page_size = cache_->layout().page_size;
  batch_.clear();
  std::size_t max_pages = 0, total_pages = 0;
  for (const scheduled_sequence& s : plan.sequences) {
    const kv::sequence& seq = requests_.find(s.id)->second->seq;
    batch_.push_back(&seq);
    max_pages = std::max(max_pages, seq.pages().size());
    total_pages += seq.pages().size();
  }
  kv::block_tables& tables = plan.block_tables;
  tables.max_pages = max_pages;
  tables.tables.resize(batch_.size() * max_pages);
  tables.seq_lens.resize(batch_.size());
  cache_->export_block_tables(batch_, max_pages, tables.tables, tables.seq_lens);
  kv::flashinfer_page_table& csr = plan.page_table;
  csr.indptr.resize(batch_.size() + 1);
  csr.indices.resize(total_pages);
  csr.last_page_len.resize(batch_.size());
  cache_->export_flashinfer(batch_, csr.indptr, csr.indices, csr.last_page_len);
  // A prompt's pages are all allocated at admission, but attention this step reads only the
  // tokens computed by its end (context_len): the tables say so.
  std::size_t kept = 0;
  for (std::size_t i = 0; i < plan.sequences.size(); ++i) {
    const std::size_t context = plan.sequences[i].context_len;
    const std::size_t pages = cache_->layout().pages_for(context);
    const auto begin = static_cast<std::size_t>(csr.indptr[i]);
    std::copy_n(csr.indices.begin() + static_cast<std::ptrdiff_t>(begin), pages,
                csr.indices.begin() + static_cast<std::ptrdiff_t>(kept));
    csr.indptr[i] = static_cast<std::int32_t>(kept);
    kept += pages;
    csr.last_page_len[i] = static_cast<std::int32_t>(context - (pages - 1) * page_size);
    tables.seq_lens[i] = static_cast<std::int32_t>(context);
  }
  csr.indptr[plan.sequences.size()] = static_cast<std::int32_t>(kept);
  csr.indices.resize(kept);
  const auto cow = cache_->take_copy_ops();
  plan.copies.insert(plan.copies.end(), cow.begin(), cow.end());
}

void scheduler::complete_step(std::span<const std::pair<request_id, token_id>> sampled) {
  // Validate everything first (flags on the entries, no allocation), then record.
  auto unmark = [&](std::size_t upto) {
    for (std::size_t i = 0; i < upto; ++i)
      requests_.find(sampled[i].first)->second->sampled = false;
  };
  for (std::size_t i = 0; i < sampled.size(); ++i) {
    const request_id id = sampled[i].first;
    const auto it = requests_.find(id);
    const bool samples = it != requests_.end() && it->second->samples;
    if (!samples || it->second->sampled) {
      unmark(i);
      FRUGAL_EXPECTS(samples,
                     "batch::scheduler::complete_step: request " + std::to_string(id) +
                         " did not sample in this step",
                     invalid_argument);
      FRUGAL_FAIL("batch::scheduler::complete_step: request " + std::to_string(id) + " given twice",
                  invalid_argument);
    }
    it->second->sampled = true;
  }
  unmark(sampled.size());
  FRUGAL_EXPECTS(sampled.size() == sampling_.size(),
                 "batch::scheduler::complete_step: " + std::to_string(sampling_.size()) +
                     " sequences sampled but " + std::to_string(sampled.size()) + " tokens given",
                 invalid_argument);
  for (const auto& [id, token] : sampled) {
    entry& e = *requests_.find(id)->second;
    e.samples = false;
    e.output.push_back(token);
    const bool eos = options_.eos_token >= 0 && token == options_.eos_token;
    if (eos || e.output.size() >= e.req.max_new_tokens) {
      finish(e, eos);
    } else {
      e.pending = true;
    }
  }
  sampling_.clear();
}

void scheduler::finish(entry& e, bool hit_eos) {
  running_.erase(std::find(running_.begin(), running_.end(), &e));
  e.running = false;
  const request_id id = e.req.id;
  finished_.push_back({id, std::move(e.output), hit_eos, e.preemptions});
  ++stats_.finished;
  requests_.erase(id);  // releases its sequence and pages
}

std::vector<finished_request> scheduler::take_finished() { return std::exchange(finished_, {}); }

}  // namespace frugal::batch
