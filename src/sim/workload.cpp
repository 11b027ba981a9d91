// Request lengths of simulated traffic: the named workloads and the lognormal draw.
#include <frugal/error.hpp>
#include <frugal/sim/models.hpp>
#include <frugal/sim/workload.hpp>

#include <algorithm>
#include <cmath>

namespace frugal::sim {

const workload_spec& spec_of(workload w) noexcept { return detail::entry_of(workload_specs, w); }

std::string_view to_string(workload w) noexcept { return spec_of(w).name; }

workload parse_workload(std::string_view name) {
  return detail::kind_named(workload_specs, name, "workload");
}

std::vector<std::string> workloads() { return detail::names_of(workload_specs); }

namespace {

/// The lognormal of mean `mean`: the mean of a lognormal is exp(mu + sigma^2 / 2).
std::lognormal_distribution<double> lognormal_of_mean(double mean, double sigma) {
  return std::lognormal_distribution<double>(std::log(mean) - sigma * sigma / 2, sigma);
}

/// `x` rounded to the nearest whole token in [1, hi].
std::uint32_t clip(double x, std::uint32_t hi) {
  return static_cast<std::uint32_t>(std::clamp<double>(std::round(x), 1.0, hi));
}

/// The lognormal means of `o`: its overrides where positive, else its workload's (1 for fixed,
/// whose distributions are never drawn from).
double mean_of(double override_mean, double workload_mean, const length_options& o) {
  if (o.kind == workload::fixed) return 1;
  return override_mean > 0 ? override_mean : workload_mean;
}

}  // namespace

length_sampler::length_sampler(const length_options& options) : options_(options) {
  const length_options& o = options_;
  FRUGAL_EXPECTS(o.sigma > 0 && std::isfinite(o.sigma),
                 "frugal::sim: length sigma must be positive and finite", invalid_argument);
  FRUGAL_EXPECTS(o.max_len > 1, "frugal::sim: max_len must be at least 2", invalid_argument);
  FRUGAL_EXPECTS(o.kind != workload::fixed || (o.fixed_prompt > 0 && o.fixed_output > 0),
                 "frugal::sim: fixed_prompt and fixed_output must be positive", invalid_argument);
  FRUGAL_EXPECTS(
      o.kind == workload::fixed || ((o.mean_prompt == 0 || o.mean_prompt >= 1) &&
                                    (o.mean_output == 0 || o.mean_output >= 1)),
      "frugal::sim: mean_prompt and mean_output must be 0 (the workload's) or at least 1 token",
      invalid_argument);
  const workload_spec& w = spec_of(o.kind);
  prompt_ = lognormal_of_mean(mean_of(o.mean_prompt, w.mean_prompt, o), o.sigma);
  output_ = lognormal_of_mean(mean_of(o.mean_output, w.mean_output, o), o.sigma);
}

request_lengths length_sampler::operator()(std::mt19937_64& rng) {
  if (options_.kind == workload::fixed) return {options_.fixed_prompt, options_.fixed_output};
  request_lengths r;
  r.prompt = clip(prompt_(rng), options_.max_len - 1);
  r.output = clip(output_(rng), options_.max_len - r.prompt);
  return r;
}

}  // namespace frugal::sim
