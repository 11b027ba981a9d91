// Model-level comparison of two models' logits: KL divergence, top-k agreement, perplexity.
#include <frugal/error.hpp>
#include <frugal/quant/compare.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace frugal::quant {

namespace {

/// log-softmax of `logits` into `out`, in double.
void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  double max = -INFINITY;
  for (const float x : logits) max = std::max(max, double{x});
  double sum = 0;
  for (const float x : logits) sum += std::exp(double{x} - max);
  const double log_sum = max + std::log(sum);
  out.resize(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = double{logits[i]} - log_sum;
}

/// The k largest logits' ids, largest first, lowest id first on ties.
void top_k(std::span<const float> logits, std::size_t k, std::vector<std::size_t>& ids) {
  ids.clear();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    auto at = ids.begin();
    while (at != ids.end() && logits[*at] >= logits[i]) ++at;
    if (static_cast<std::size_t>(at - ids.begin()) < k) {
      ids.insert(at, i);
      if (ids.size() > k) ids.pop_back();
    }
  }
}

/// Linear interpolation between the closest ranks of sorted values (numpy's default).
double percentile(const std::vector<double>& sorted, double p) {
  const double rank = p * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(rank));
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (rank - static_cast<double>(below)) * (sorted[above] - sorted[below]);
}

}  // namespace

logit_comparer::logit_comparer(std::size_t vocab) : vocab_(vocab) {
  FRUGAL_EXPECTS(vocab > 0, "quant::logit_comparer: vocab is 0", invalid_argument);
}

void logit_comparer::add(std::span<const float> reference, std::span<const float> candidate,
                         std::int32_t target) {
  FRUGAL_EXPECTS(reference.size() == vocab_ && candidate.size() == vocab_,
                 "quant::compare_logits: rows of " + std::to_string(reference.size()) + " and " +
                     std::to_string(candidate.size()) + " logits for a vocabulary of " +
                     std::to_string(vocab_),
                 invalid_argument);
  const auto finite = [](float x) { return std::isfinite(x); };
  FRUGAL_EXPECTS(std::all_of(reference.begin(), reference.end(), finite) &&
                     std::all_of(candidate.begin(), candidate.end(), finite),
                 "quant::compare_logits: logits of position " + std::to_string(kl_.size()) +
                     " are not all finite",
                 invalid_argument);
  FRUGAL_EXPECTS(target < 0 || static_cast<std::size_t>(target) < vocab_,
                 "quant::compare_logits: target " + std::to_string(target) +
                     " is outside the vocabulary of " + std::to_string(vocab_),
                 invalid_argument);
  FRUGAL_EXPECTS(kl_.empty() || (target >= 0) == (targets_ > 0),
                 "quant::compare_logits: give a target for every position or for none",
                 invalid_argument);

  std::vector<double> log_p, log_q;
  log_softmax(reference, log_p);
  log_softmax(candidate, log_q);
  double kl = 0;
  for (std::size_t i = 0; i < vocab_; ++i) kl += std::exp(log_p[i]) * (log_p[i] - log_q[i]);
  kl_.push_back(std::max(kl, 0.0));  // rounding can leave -1e-17 for identical rows

  std::vector<std::size_t> top_ref, top_cand;
  top_k(reference, 5, top_ref);
  top_k(candidate, 5, top_cand);
  if (top_ref.front() == top_cand.front()) ++top1_;
  for (const std::size_t id : top_ref)
    top5_ += static_cast<std::size_t>(std::count(top_cand.begin(), top_cand.end(), id));
  if (target >= 0) {
    ++targets_;
    nll_reference_ -= log_p[static_cast<std::size_t>(target)];
    nll_candidate_ -= log_q[static_cast<std::size_t>(target)];
  }
}

logit_comparison logit_comparer::result() const {
  FRUGAL_EXPECTS(!kl_.empty(), "quant::compare_logits: no positions to compare", invalid_argument);
  logit_comparison c;
  const auto n = static_cast<double>(kl_.size());
  c.positions = kl_.size();
  std::vector<double> sorted = kl_;
  std::sort(sorted.begin(), sorted.end());
  for (const double x : sorted) c.kl_mean += x;
  c.kl_mean /= n;
  c.kl_median = percentile(sorted, 0.5);
  c.kl_p90 = percentile(sorted, 0.9);
  c.kl_p99 = percentile(sorted, 0.99);
  c.kl_max = sorted.back();
  c.top1_agreement = static_cast<double>(top1_) / n;
  c.top5_overlap = static_cast<double>(top5_) / (5.0 * n);
  if (vocab_ < 5) c.top5_overlap = static_cast<double>(top5_) / (static_cast<double>(vocab_) * n);
  if (targets_ > 0) {
    c.has_targets = true;
    c.ppl_reference = std::exp(nll_reference_ / n);
    c.ppl_candidate = std::exp(nll_candidate_ / n);
    c.ppl_ratio = c.ppl_candidate / c.ppl_reference;
  }
  return c;
}

logit_comparison compare_logits(std::span<const float> reference, std::span<const float> candidate,
                                std::size_t vocab, std::span<const std::int32_t> targets) {
  FRUGAL_EXPECTS(vocab > 0, "quant::compare_logits: vocab is 0", invalid_argument);
  FRUGAL_EXPECTS(
      reference.size() == candidate.size() && !reference.empty() && reference.size() % vocab == 0,
      "quant::compare_logits: reference (" + std::to_string(reference.size()) +
          ") and candidate (" + std::to_string(candidate.size()) +
          ") must hold the same positive number of rows of " + std::to_string(vocab) + " logits",
      invalid_argument);
  const std::size_t positions = reference.size() / vocab;
  FRUGAL_EXPECTS(targets.empty() || targets.size() == positions,
                 "quant::compare_logits: " + std::to_string(targets.size()) + " targets for " +
                     std::to_string(positions) + " positions",
                 invalid_argument);
  for (const std::int32_t t : targets)
    FRUGAL_EXPECTS(t >= 0 && static_cast<std::size_t>(t) < vocab,
                   "quant::compare_logits: target " + std::to_string(t) +
                       " is outside the vocabulary of " + std::to_string(vocab),
                   invalid_argument);
  logit_comparer comparer(vocab);
  for (std::size_t i = 0; i < positions; ++i)
    comparer.add(reference.subspan(i * vocab, vocab), candidate.subspan(i * vocab, vocab),
                 targets.empty() ? -1 : targets[i]);
  return comparer.result();
}

}  // namespace frugal::quant
