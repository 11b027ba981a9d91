// frugal/quant/compare.hpp: model-level accuracy of a quantized model. Compares the logits of a
// reference model (FP32 weights) and a candidate (quantized weights) position by position: the
// statistics llama.cpp's perplexity tool prints with --kl-divergence.
//   frugal::quant::logit_comparison c =
//       frugal::quant::compare_logits(reference_logits, candidate_logits, vocab, targets);
//   if (c.kl_mean < 0.01) { /* the format holds on this model */ }
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace frugal::quant {

/// @brief What compare_logits reports. KL divergences are KL(reference || candidate) in nats,
/// per position, over the softmax of each position's logits.
struct logit_comparison {
  std::size_t positions = 0;
  double kl_mean = 0, kl_median = 0, kl_p90 = 0, kl_p99 = 0, kl_max = 0;
  /// Fraction of positions whose argmax agrees (lowest id on an exact tie).
  double top1_agreement = 0;
  /// Mean over positions of |top-5 of reference ∩ top-5 of candidate| / 5.
  double top5_overlap = 0;
  /// With targets: perplexity of each model on them (exp of the mean negative log-likelihood)
  /// and candidate / reference. 0 without targets.
  double ppl_reference = 0, ppl_candidate = 0, ppl_ratio = 0;
  bool has_targets = false;
};

/// @brief Accumulates comparisons one position at a time (an engine's logits need not be kept).
class logit_comparer {
 public:
  /// @throws invalid_argument when vocab is 0
  explicit logit_comparer(std::size_t vocab);

  /// @brief Adds one position: two rows of `vocab` logits and, optionally, the token that
  /// follows (negative: none; give a target for every position or for none).
  /// @throws invalid_argument for rows of the wrong size, a non-finite logit, a target outside
  ///   the vocabulary, or mixing positions with and without targets; nothing is added then
  void add(std::span<const float> reference, std::span<const float> candidate,
           std::int32_t target = -1);

  /// @brief The statistics over every position added so far.
  /// @throws invalid_argument when no position was added
  logit_comparison result() const;

  std::size_t positions() const noexcept { return kl_.size(); }

 private:
  std::size_t vocab_;
  std::vector<double> kl_;
  std::size_t top1_ = 0;
  std::size_t top5_ = 0;
  std::size_t targets_ = 0;
  double nll_reference_ = 0, nll_candidate_ = 0;
  std::vector<double> scratch_;
};

/// @brief Compares `reference` and `candidate`, each positions x vocab logits, row-major.
/// @param targets empty, or one token id per position (the token that follows it)
/// @throws invalid_argument for sizes that disagree or are not a multiple of vocab, no
///   positions, non-finite logits, or targets outside [0, vocab)
logit_comparison compare_logits(std::span<const float> reference, std::span<const float> candidate,
                                std::size_t vocab, std::span<const std::int32_t> targets = {});

}  // namespace frugal::quant
