// The synthetic serving trace: a small LLM server's allocation log, generated step by step.
#include <frugal/error.hpp>
#include <frugal/sim/trace.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>
#include <utility>
#include <vector>

namespace frugal::sim {

// ---- the synthetic serving trace ----------------------------------------------------------

namespace {

/// The engine behind serving_trace(): it emits allocation events as a simple server would.
class serving_engine {
 public:
  explicit serving_engine(const serving_trace_options& o)
      : o_(o),
        rng_(o.seed),
        lengths_(o.lengths),
        scale_(static_cast<double>(o.gpu_memory) / double(std::size_t{80} << 30)) {
    budget_ = static_cast<std::size_t>(o.target_utilization * static_cast<double>(o.gpu_memory));
    kv_per_token_ = bytes(2.0 * o.layers * kv_width * 2);  // K and V, FP16
  }

  std::vector<trace_event> run() {
    allocate_weights();
    FRUGAL_EXPECTS(in_use_ + activation_peak(o_.max_batched_tokens, 256) < budget_,
                   "serving_trace: " + std::to_string(o_.target_utilization) + " x " +
                       format_bytes(o_.gpu_memory) +
                       " is too small for the model's weights and one step's activations",
                   invalid_argument);
    for (step_ = 0; step_ < o_.steps; ++step_) {
      arrive();
      grow_running();
      const std::size_t prefill_tokens = admit();
      std::size_t tokens = prefill_tokens;
      for (const auto& s : running_)
        if (!s.prefilling) ++tokens;
      if (!running_.empty()) emit_step(tokens, running_.size());
      flush_deferred();
      finish_tokens();
    }
    // The log ends with the server still up: weights stay live, sequences are released.
    for (auto& s : running_) release(s);
    running_.clear();
    return std::move(events_);
  }

 private:
  static constexpr double hidden = 4096, intermediate = 14336, vocab = 128256, kv_width = 1024;

  struct sequence {
    std::uint32_t prompt = 0, output = 0, generated = 0;
    std::uint32_t capacity = 0;                                  // tokens the KV extents hold
    std::vector<std::pair<std::uint64_t, std::size_t>> extents;  // pointer, bytes
    std::uint64_t state = 0;                                     // per-request state (token ids)
    std::size_t state_bytes = 0;
    bool prefilling = true;  // admitted this step
  };
  struct request {
    std::uint32_t prompt, output;
  };

  std::size_t bytes(double unscaled) const {
    return std::max<std::size_t>(256, static_cast<std::size_t>(unscaled * scale_));
  }

  std::uint64_t alloc(std::size_t size) {
    const std::uint64_t p = next_pointer_++;
    events_.push_back({trace_action::allocate, p, size, 1, double(step_), 0, 0});
    in_use_ += size;
    return p;
  }
  /// Counts an allocation now and logs it at the next flush_deferred(): KV and request state are
  /// written during the step's first layer, while its activations are live.
  std::uint64_t alloc_deferred(std::size_t size) {
    const std::uint64_t p = next_pointer_++;
    deferred_.push_back({trace_action::allocate, p, size, 1, double(step_), 0, 0});
    in_use_ += size;
    return p;
  }
  void flush_deferred() {
    events_.insert(events_.end(), deferred_.begin(), deferred_.end());
    deferred_.clear();
  }
  void free(std::uint64_t p, std::size_t size) {
    events_.push_back({trace_action::free, p, size, 1, double(step_), 0, 0});
    in_use_ -= size;
  }

  void allocate_weights() {
    const double per_layer[] = {hidden * hidden,
                                hidden * kv_width,
                                hidden * kv_width,
                                hidden * hidden,
                                hidden * intermediate,
                                hidden * intermediate,
                                intermediate * hidden,
                                hidden,
                                hidden};
    alloc(bytes(vocab * hidden * 2));  // embedding
    for (std::uint32_t l = 0; l < o_.layers; ++l)
      for (double n : per_layer) alloc(bytes(n * 2));
    alloc(bytes(hidden * 2));          // final norm
    alloc(bytes(vocab * hidden * 2));  // lm_head
  }

  /// The most bytes one step's activations hold at once (see emit_step).
  std::size_t activation_peak(std::size_t tokens, std::size_t seqs) const {
    const double t = double(tokens);
    const std::size_t layer = std::max(
        bytes(t * (hidden + 2 * kv_width) * 2) + bytes(t * hidden * 2),
        bytes(t * hidden * 2) + bytes(t * 2 * intermediate * 2) + bytes(t * intermediate * 2));
    return bytes(t * hidden * 2) + std::max(layer, 2 * bytes(double(seqs) * vocab * 4));
  }

  void arrive() {
    // Poisson(arrival_rate) by counting exponential gaps within one step.
    std::uniform_real_distribution<double> u(1e-12, 1.0);
    double t = -std::log(u(rng_)) / o_.arrival_rate;
    while (t < 1.0) {
      const request_lengths r = lengths_(rng_);
      waiting_.push_back({r.prompt, r.output});
      t += -std::log(u(rng_)) / o_.arrival_rate;
    }
  }

  std::size_t reserve_for(std::size_t tokens) const {
    return activation_peak(tokens, running_.size() + 1);
  }

  /// A sequence whose extents are full gets one more, half its capacity (at least 64 tokens);
  /// when that would pass the budget it is preempted: released and queued again, recomputing.
  void grow_running() {
    const std::size_t decode = running_.size();
    for (std::size_t i = 0; i < running_.size();) {
      sequence& s = running_[i];
      s.prefilling = false;
      if (s.prompt + s.generated < s.capacity) {
        ++i;
        continue;
      }
      const std::uint32_t more = std::max<std::uint32_t>(64, s.capacity / 2);
      const std::size_t size = more * kv_per_token_;
      if (in_use_ + size + reserve_for(decode) <= budget_) {
        s.extents.emplace_back(alloc_deferred(size), size);
        s.capacity += more;
        ++i;
        continue;
      }
      waiting_.push_front({s.prompt + s.generated, s.output - s.generated});
      release(s);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }

  /// Admits waiting requests in order while the step's prefill budget and memory allow.
  std::size_t admit() {
    std::size_t prefill = 0;
    while (!waiting_.empty()) {
      const request r = waiting_.front();
      if (prefill + r.prompt > o_.max_batched_tokens && prefill > 0) break;
      const std::uint32_t capacity = (r.prompt + 1 + 15) / 16 * 16;
      const std::size_t kv = capacity * kv_per_token_;
      const std::size_t state = (r.prompt + r.output) * 4 + 256;
      const std::size_t decode = running_.size();
      if (in_use_ + kv + state + reserve_for(decode + prefill + r.prompt) > budget_) break;
      waiting_.pop_front();
      sequence s;
      s.prompt = r.prompt;
      s.output = std::max<std::uint32_t>(1, r.output);
      s.state_bytes = state;
      s.state = alloc_deferred(state);
      s.extents.emplace_back(alloc_deferred(kv), kv);
      s.capacity = capacity;
      running_.push_back(std::move(s));
      prefill += r.prompt;
    }
    return prefill;
  }

  /// One forward pass over `tokens` tokens of `seqs` sequences: a residual stream for the step,
  /// per layer the attention and MLP intermediates (freed out of order, as autograd-free engines
  /// do), then logits and sampling probabilities.
  void emit_step(std::size_t tokens, std::size_t seqs) {
    const double t = double(tokens);
    const std::size_t h = bytes(t * hidden * 2);
    const std::uint64_t residual = alloc(h);
    for (std::uint32_t l = 0; l < o_.layers; ++l) {
      const std::size_t qkv_size = bytes(t * (hidden + 2 * kv_width) * 2);
      const std::uint64_t qkv = alloc(qkv_size);
      if (l == 0) flush_deferred();
      const std::uint64_t attn = alloc(h);
      free(qkv, qkv_size);
      const std::size_t gate_up_size = bytes(t * 2 * intermediate * 2);
      const std::uint64_t gate_up = alloc(gate_up_size);
      free(attn, h);
      const std::size_t act_size = bytes(t * intermediate * 2);
      const std::uint64_t act = alloc(act_size);
      free(gate_up, gate_up_size);
      free(act, act_size);
    }
    const std::size_t logits_size = bytes(double(seqs) * vocab * 4);
    const std::uint64_t logits = alloc(logits_size);
    const std::uint64_t probs = alloc(logits_size);
    free(logits, logits_size);
    free(probs, logits_size);
    free(residual, h);
  }

  /// Every running sequence produced a token; finished ones release their memory.
  void finish_tokens() {
    for (std::size_t i = 0; i < running_.size();) {
      sequence& s = running_[i];
      ++s.generated;
      if (s.generated >= s.output) {
        release(s);
        running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

  void release(sequence& s) {
    for (auto [p, size] : s.extents) free(p, size);
    free(s.state, s.state_bytes);
    s.extents.clear();
  }

  serving_trace_options o_;
  std::mt19937_64 rng_;
  length_sampler lengths_;
  double scale_;
  std::size_t budget_ = 0;
  std::size_t kv_per_token_ = 0;
  std::size_t in_use_ = 0;
  std::size_t step_ = 0;
  std::uint64_t next_pointer_ = 1;
  std::deque<request> waiting_;
  std::vector<sequence> running_;
  std::vector<trace_event> events_;
  std::vector<trace_event> deferred_;
};

}  // namespace

std::vector<trace_event> serving_trace(const serving_trace_options& options) {
  FRUGAL_EXPECTS(options.gpu_memory > 0 && options.layers > 0 && options.arrival_rate > 0 &&
                     options.target_utilization > 0 && options.target_utilization <= 1 &&
                     options.max_batched_tokens > 0,
                 "serving_trace: options out of range", invalid_argument);
  const length_options& l = options.lengths;
  FRUGAL_EXPECTS(
      l.kind != workload::fixed || std::uint64_t{l.fixed_prompt} + l.fixed_output <= l.max_len,
      "serving_trace: fixed lengths " + std::to_string(l.fixed_prompt) + " + " +
          std::to_string(l.fixed_output) + " exceed max_len " + std::to_string(l.max_len),
      invalid_argument);
  return serving_engine(options).run();
}

}  // namespace frugal::sim
