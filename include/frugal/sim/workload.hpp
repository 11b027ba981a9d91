// frugal/sim/workload.hpp: the request lengths of simulated traffic. The named workloads with
// their published means, and the one way the simulator and the serving trace draw lengths.
//   frugal::sim::length_sampler lengths{{.kind = frugal::sim::workload::sharegpt}};
//   std::mt19937_64 rng{1};
//   frugal::sim::request_lengths r = lengths(rng);  // r.prompt + r.output <= 4096
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::sim {

/// @brief The request-length distributions of simulated traffic.
enum class workload : std::uint8_t {
  sharegpt,  ///< ShareGPT conversations: lognormal, mean prompt 161.31, output 337.99 tokens
  alpaca,    ///< Alpaca instructions: lognormal, mean prompt 19.31, output 58.45 tokens
  fixed,     ///< every request exactly length_options::fixed_prompt and fixed_output tokens
};

/// @brief A workload, its name and its mean lengths in tokens (0 for fixed). The means are those
/// of the vLLM paper (Kwon et al., SOSP 2023, section 6.1 and figure 11): ShareGPT 161.31 prompt
/// and 337.99 output tokens, Alpaca 19.31 and 58.45.
struct workload_spec {
  workload kind;
  std::string_view name;
  double mean_prompt;
  double mean_output;
};

/// @brief Every workload, in the order help texts list them.
inline constexpr std::array<workload_spec, 3> workload_specs{
    {{workload::sharegpt, "sharegpt", 161.31, 337.99},
     {workload::alpaca, "alpaca", 19.31, 58.45},
     {workload::fixed, "fixed", 0, 0}}};

/// @brief The entry of workload_specs for `w`.
const workload_spec& spec_of(workload w) noexcept;

/// @brief "sharegpt", "alpaca" or "fixed".
std::string_view to_string(workload w) noexcept;

/// @brief The workload called `name` (as to_string writes it).
/// @throws frugal::invalid_argument for an unknown name, listing the known ones
workload parse_workload(std::string_view name);

/// @brief Known workload names, for help texts.
std::vector<std::string> workloads();

/// @brief How a length_sampler draws.
struct length_options {
  workload kind = workload::sharegpt;
  double sigma = 1.0;  ///< sigma of the lognormal draws
  /// Longest prompt + output: lognormal draws are clipped to it. Fixed lengths are not clipped
  /// (the caller decides what a request beyond max_len means).
  std::uint32_t max_len = 4096;
  std::uint32_t fixed_prompt = 512;  ///< workload::fixed: prompt tokens
  std::uint32_t fixed_output = 128;  ///< workload::fixed: output tokens
  /// When positive, lognormal means (tokens) instead of the workload's: traffic of one's own
  /// shape. Ignored by workload::fixed.
  double mean_prompt = 0;
  double mean_output = 0;
};

/// @brief One request's lengths in tokens.
struct request_lengths {
  std::uint32_t prompt = 0;
  std::uint32_t output = 0;
  friend bool operator==(const request_lengths&, const request_lengths&) = default;
};

/// @brief Draws request lengths. Lognormal workloads: prompt and output lengths each lognormal
/// with mu = ln(mean) - sigma^2 / 2 (so the mean is the workload's), rounded and clipped to
/// [1, max_len - 1] for the prompt and to max_len in total (at max_len 4096 and sigma 1 this
/// moves ShareGPT's means by about 1%). workload::fixed: fixed_prompt and fixed_output exactly,
/// drawing nothing from the generator. The same options and generator state give the same
/// lengths on one standard library (the distributions are the standard library's).
class length_sampler {
 public:
  /// @throws frugal::invalid_argument for a sigma that is not positive and finite, a max_len
  /// under 2, a fixed workload with a zero length, or a mean override below 1 token
  explicit length_sampler(const length_options& options = {});

  /// @brief The next request's lengths, drawn from `rng` (prompt first, then output).
  request_lengths operator()(std::mt19937_64& rng);

  const length_options& options() const noexcept { return options_; }

 private:
  length_options options_;
  std::lognormal_distribution<double> prompt_;
  std::lognormal_distribution<double> output_;
};

}  // namespace frugal::sim
