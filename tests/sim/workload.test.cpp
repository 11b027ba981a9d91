#include <frugal/error.hpp>
#include <frugal/sim/workload.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

using frugal::sim::length_options;
using frugal::sim::length_sampler;
using frugal::sim::request_lengths;
using frugal::sim::workload;

namespace {

struct means {
  double prompt = 0, output = 0;
};

means mean_of_draws(const length_options& o, std::size_t n) {
  length_sampler lengths{o};
  std::mt19937_64 rng{7};
  double prompt = 0, output = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const request_lengths r = lengths(rng);
    prompt += r.prompt;
    output += r.output;
  }
  return {prompt / static_cast<double>(n), output / static_cast<double>(n)};
}

}  // namespace

TEST_CASE("workload: names, to_string and parse_workload agree", "[sim][workload]") {
  CHECK(frugal::sim::workloads() == std::vector<std::string>{"sharegpt", "alpaca", "fixed"});
  for (const auto& s : frugal::sim::workload_specs) {
    CHECK(frugal::sim::to_string(s.kind) == s.name);
    CHECK(frugal::sim::parse_workload(s.name) == s.kind);
    CHECK(&frugal::sim::spec_of(s.kind) == &s);
  }
  CHECK(frugal::sim::spec_of(workload::sharegpt).mean_prompt == 161.31);
  CHECK(frugal::sim::spec_of(workload::sharegpt).mean_output == 337.99);
  CHECK(frugal::sim::spec_of(workload::alpaca).mean_prompt == 19.31);
  CHECK(frugal::sim::spec_of(workload::alpaca).mean_output == 58.45);
}

TEST_CASE("workload: an unknown name is refused, listing the known ones", "[sim][workload]") {
  for (const std::string bad : {"lmsys", "ShareGPT", "", "fixed "}) {
    INFO('"' << bad << '"');
    workload w = workload::alpaca;
    try {
      w = frugal::sim::parse_workload(bad);
      FAIL("accepted an unknown workload");
    } catch (const frugal::invalid_argument& e) {
      const std::string what = e.what();
      CHECK(what.find("unknown workload \"" + bad + "\"") != std::string::npos);
      CHECK(what.find("known: \"sharegpt\", \"alpaca\", \"fixed\"") != std::string::npos);
    }
    CHECK(w == workload::alpaca);  // nothing changed
  }
}

TEST_CASE("workload: the means of many draws are the published means", "[sim][workload]") {
  // max_len far beyond the tail, so clipping moves the means by far less than the tolerance;
  // 200k draws of a sigma-1 lognormal: a standard error of 0.3% of the mean.
  const std::size_t n = 200000;
  const means share = mean_of_draws({.kind = workload::sharegpt, .max_len = 1u << 24}, n);
  CHECK(share.prompt == Approx(161.31).epsilon(0.015));
  CHECK(share.output == Approx(337.99).epsilon(0.015));
  const means alpaca = mean_of_draws({.kind = workload::alpaca, .max_len = 1u << 24}, n);
  CHECK(alpaca.prompt == Approx(19.31).epsilon(0.015));
  CHECK(alpaca.output == Approx(58.45).epsilon(0.015));
  // Means of one's own replace the workload's.
  const means own = mean_of_draws(
      {.kind = workload::sharegpt, .max_len = 1u << 24, .mean_prompt = 1000, .mean_output = 50}, n);
  CHECK(own.prompt == Approx(1000).epsilon(0.015));
  CHECK(own.output == Approx(50).epsilon(0.015));
  // A narrower sigma keeps the mean.
  const means narrow =
      mean_of_draws({.kind = workload::sharegpt, .sigma = 0.25, .max_len = 1u << 24}, n);
  CHECK(narrow.prompt == Approx(161.31).epsilon(0.005));
}

TEST_CASE("workload: lognormal draws are rounded and clipped to max_len", "[sim][workload]") {
  length_sampler lengths{{.kind = workload::sharegpt, .max_len = 64}};
  std::mt19937_64 rng{3};
  std::size_t prompt_clipped = 0, total_clipped = 0;
  for (int i = 0; i < 10000; ++i) {
    const request_lengths r = lengths(rng);
    REQUIRE(r.prompt >= 1);
    REQUIRE(r.output >= 1);
    REQUIRE(r.prompt <= 63);
    REQUIRE(r.prompt + r.output <= 64);
    prompt_clipped += r.prompt == 63 ? 1 : 0;
    total_clipped += r.prompt + r.output == 64 ? 1 : 0;
  }
  // ShareGPT's means are beyond 64 tokens: most draws hit the clip.
  CHECK(prompt_clipped > 1000);
  CHECK(total_clipped > 5000);

  // The same options and seed give the same lengths.
  length_sampler a{{.kind = workload::alpaca}}, b{{.kind = workload::alpaca}};
  std::mt19937_64 ra{11}, rb{11};
  for (int i = 0; i < 100; ++i) REQUIRE(a(ra) == b(rb));
}

TEST_CASE("workload: fixed lengths are exact, never clipped, and draw nothing", "[sim][workload]") {
  length_sampler lengths{
      {.kind = workload::fixed, .max_len = 16, .fixed_prompt = 5000, .fixed_output = 7}};
  std::mt19937_64 rng{5};
  const std::mt19937_64 before = rng;
  for (int i = 0; i < 100; ++i) REQUIRE(lengths(rng) == request_lengths{5000, 7});
  CHECK(rng == before);
  // Mean overrides do not apply to fixed.
  length_sampler with_means{{.kind = workload::fixed, .mean_prompt = 3, .mean_output = 4}};
  CHECK(with_means(rng) == request_lengths{512, 128});
}

TEST_CASE("workload: bad length options are refused", "[sim][workload]") {
  const auto refuses = [](const length_options& o, const std::string& text) {
    try {
      length_sampler s{o};
      FAIL("accepted bad length options");
    } catch (const frugal::invalid_argument& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(text) != std::string::npos);
    }
  };
  refuses({.sigma = 0}, "sigma");
  refuses({.sigma = -1}, "sigma");
  refuses({.sigma = std::numeric_limits<double>::quiet_NaN()}, "sigma");
  refuses({.sigma = std::numeric_limits<double>::infinity()}, "sigma");
  refuses({.max_len = 1}, "max_len");
  refuses({.kind = workload::fixed, .fixed_prompt = 0}, "fixed_prompt");
  refuses({.kind = workload::fixed, .fixed_output = 0}, "fixed_output");
  refuses({.mean_prompt = 0.5}, "mean_prompt");
  refuses({.mean_output = -3}, "mean_output");
  refuses({.mean_output = std::numeric_limits<double>::quiet_NaN()}, "mean_output");
}
