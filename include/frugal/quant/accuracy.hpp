// frugal/quant/accuracy.hpp: how much a format loses on given data, and the cheapest format that
// still meets an accuracy bound, for one tensor or a whole checkpoint (mixed precision).
//   auto m = frugal::quant::evaluate(weights, cols, frugal::quant::format::nvfp4);  // m.sqnr_db
//   auto f = frugal::quant::choose(weights, cols, frugal::quant::bound::min_sqnr(30.0));
#pragma once

#include <frugal/quant/format.hpp>
#include <frugal/quant/quantize.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace frugal::quant {

/// @brief Error of dequantize(quantize(x)) against x.
struct error_metrics {
  double sqnr_db = 0;           // 10 log10(sum x^2 / sum (x - y)^2); +inf when exact
  double relative_l2 = 0;       // ||x - y|| / ||x||
  double max_abs = 0;           // max |x - y|
  double cosine = 0;            // x.y / (||x|| ||y||)
  double bits_per_element = 0;  // scales and zero points included
};

/// @brief Quantizes `data` (row-major, rows = data.size() / cols) to `f`, dequantizes it and
/// measures the error.
/// @throws frugal::invalid_argument as quantize() does.
error_metrics evaluate(std::span<const float> data, std::size_t cols, format f,
                       const options& opts = {});

/// @brief An accuracy bound: a minimum SQNR in dB or a maximum relative L2 error.
struct bound {
  enum class kind { min_sqnr_db, max_relative_error };
  kind what = kind::min_sqnr_db;
  double value = 0;
  static constexpr bound min_sqnr(double db) noexcept { return {kind::min_sqnr_db, db}; }
  static constexpr bound max_relative_error(double e) noexcept {
    return {kind::max_relative_error, e};
  }
  bool met_by(const error_metrics& m) const noexcept;
};

/// @brief One candidate's result in choose_report().
struct candidate {
  format f;
  error_metrics metrics;
  bool meets_bound;
};

/// @brief The format with the fewest bits per element (ties: lower relative error) among
/// `candidates` (default: every format whose layout fits the shape) that meets `b`; std::nullopt
/// when none does.
std::optional<format> choose(std::span<const float> data, std::size_t cols, bound b,
                             std::span<const format> candidates = {}, const options& opts = {});

/// @brief Every candidate evaluated, sorted by bits per element then relative error.
std::vector<candidate> choose_report(std::span<const float> data, std::size_t cols, bound b,
                                     std::span<const format> candidates = {},
                                     const options& opts = {});

/// @brief One tensor to plan: a name, its data (row-major) and row length.
struct tensor_input {
  std::string name;
  std::span<const float> data;
  std::size_t cols = 0;
};

/// @brief The format chosen for one tensor. `chosen` is empty when no candidate met the bound;
/// the tensor then stays at the source precision (bytes_after == bytes_before).
struct tensor_plan {
  std::string name;
  std::size_t rows = 0, cols = 0;
  std::optional<format> chosen;
  error_metrics metrics;         // of the chosen format (zero error when kept)
  std::size_t bytes_before = 0;  // at source_bits_per_element
  std::size_t bytes_after = 0;
};

/// @brief A mixed-precision plan for many tensors.
struct model_plan {
  std::vector<tensor_plan> tensors;
  std::size_t total_bytes_before = 0;
  std::size_t total_bytes_after = 0;
};

/// @brief Chooses a format per tensor under `b`. Tensors are measured against their source
/// precision of `source_bits_per_element` (16 for FP16/BF16 checkpoints).
model_plan plan(std::span<const tensor_input> tensors, bound b,
                std::span<const format> candidates = {}, unsigned source_bits_per_element = 16,
                const options& opts = {});

}  // namespace frugal::quant
