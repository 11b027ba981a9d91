// compare_logits against figures computed by hand: KL divergence, its percentiles, top-1 and
// top-5 agreement, perplexity; and its refusals.
#include <frugal/error.hpp>
#include <frugal/quant/compare.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using frugal::quant::compare_logits;
using frugal::quant::logit_comparer;

TEST_CASE("compare_logits: identical models agree everywhere", "[quant][compare]") {
  const std::vector<float> logits{0.5f, -1.0f, 2.0f, 0.0f, 3.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<std::int32_t> targets{2, 0};
  const auto c = compare_logits(logits, logits, 4, targets);
  CHECK(c.positions == 2);
  CHECK(c.kl_mean == 0.0);
  CHECK(c.kl_max == 0.0);
  CHECK(c.top1_agreement == 1.0);
  CHECK(c.top5_overlap == 1.0);
  CHECK(c.has_targets);
  CHECK(c.ppl_ratio == Approx(1.0));
}

TEST_CASE("compare_logits: KL divergence and perplexity by hand", "[quant][compare]") {
  // p = (1/2, 1/2), q = (1/4, 3/4): KL(p || q) = ln(4/3) / 2.
  const std::vector<float> ref{0.0f, 0.0f};
  const std::vector<float> cand{0.0f, static_cast<float>(std::log(3.0))};
  const std::vector<std::int32_t> target{0};
  const auto c = compare_logits(ref, cand, 2, target);
  CHECK(c.kl_mean == Approx(std::log(4.0 / 3.0) / 2).epsilon(1e-6));
  CHECK(c.top1_agreement == 0.0);  // a tie at the reference: its argmax is the lowest id, 0
  CHECK(c.ppl_reference == Approx(2.0).epsilon(1e-6));  // 1 / p(0)
  CHECK(c.ppl_candidate == Approx(4.0).epsilon(1e-6));  // 1 / q(0)
  CHECK(c.ppl_ratio == Approx(2.0).epsilon(1e-6));
  const auto no_targets = compare_logits(ref, cand, 2);
  CHECK_FALSE(no_targets.has_targets);
  CHECK(no_targets.ppl_ratio == 0.0);
}

TEST_CASE("compare_logits: percentiles interpolate between ranks", "[quant][compare]") {
  // Three positions with growing divergence: candidate logit of token 1 raised by 0, 1 and 2.
  logit_comparer comparer(2);
  std::vector<double> kl;
  for (int shift = 0; shift < 3; ++shift) {
    const std::vector<float> ref{0.0f, 0.0f};
    const std::vector<float> cand{0.0f, static_cast<float>(shift)};
    comparer.add(ref, cand);
    const double q1 = 1.0 / (1.0 + std::exp(-shift));
    kl.push_back(0.5 * std::log(0.5 / (1 - q1)) + 0.5 * std::log(0.5 / q1));
  }
  const auto c = comparer.result();
  CHECK(c.kl_median == Approx(kl[1]).epsilon(1e-6));
  CHECK(c.kl_max == Approx(kl[2]).epsilon(1e-6));
  CHECK(c.kl_p90 == Approx(kl[1] + 0.8 * (kl[2] - kl[1])).epsilon(1e-6));
  CHECK(c.kl_mean == Approx((kl[0] + kl[1] + kl[2]) / 3).epsilon(1e-6));
}

TEST_CASE("compare_logits: top-5 overlap counts shared ids", "[quant][compare]") {
  // Reference top 5: ids 0..4; candidate top 5: ids 2..6 -> 3 of 5 shared; argmax 0 vs 6.
  const std::vector<float> ref{9, 8, 7, 6, 5, 0, 0, 0};
  const std::vector<float> cand{0, 0, 5, 6, 7, 8, 9, 0};
  const auto c = compare_logits(ref, cand, 8);
  CHECK(c.top5_overlap == Approx(0.6));
  CHECK(c.top1_agreement == 0.0);
}

TEST_CASE("compare_logits refuses bad input and adds nothing", "[quant][compare]") {
  const std::vector<float> two{0, 1}, three{0, 1, 2}, four{0, 1, 2, 3};
  CHECK_THROWS_AS(compare_logits(two, three, 1), frugal::invalid_argument);
  CHECK_THROWS_WITH(compare_logits(three, three, 2), Catch::Contains("rows of 2 logits"));
  CHECK_THROWS_AS(compare_logits({}, {}, 2), frugal::invalid_argument);
  CHECK_THROWS_AS(compare_logits(two, two, 0), frugal::invalid_argument);
  const std::vector<float> nan{0, NAN}, inf{INFINITY, 0};
  CHECK_THROWS_WITH(compare_logits(two, nan, 2), Catch::Contains("not all finite"));
  CHECK_THROWS_AS(compare_logits(inf, two, 2), frugal::invalid_argument);
  const std::vector<std::int32_t> outside{2}, negative{-1}, too_many{0, 1};
  CHECK_THROWS_WITH(compare_logits(two, two, 2, outside),
                    Catch::Contains("outside the vocabulary"));
  CHECK_THROWS_AS(compare_logits(two, two, 2, negative), frugal::invalid_argument);
  CHECK_THROWS_WITH(compare_logits(two, two, 2, too_many),
                    Catch::Contains("2 targets for 1 positions"));

  logit_comparer comparer(2);
  CHECK_THROWS_AS(comparer.result(), frugal::invalid_argument);
  comparer.add(two, two, 1);
  CHECK_THROWS_AS(comparer.add(two, nan, 1), frugal::invalid_argument);
  CHECK_THROWS_AS(comparer.add(two, two), frugal::invalid_argument);  // targets for all or none
  CHECK_THROWS_AS(comparer.add(four, two, 1), frugal::invalid_argument);
  CHECK(comparer.positions() == 1);
  CHECK(comparer.result().ppl_ratio == Approx(1.0));
}
