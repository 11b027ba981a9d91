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

class safetensors_file;

/// @brief Error of an approximation y of x (dequantize(quantize(x)) against x).
struct error_metrics {
  double sqnr_db = 0;           // 10 log10(sum x^2 / sum (x - y)^2); +inf when exact
  double relative_l2 = 0;       // ||x - y|| / ||x||; 0 when exact, +inf when x == 0 != y
  double max_abs = 0;           // max |x - y|
  double cosine = 0;            // x.y / (||x|| ||y||); 1 when both are zero, 0 when one is
  double bits_per_element = 0;  // scales and zero points included
};

/// @brief The metrics of `approx` against `reference` (bits_per_element left 0). Sums run in
/// double. A NaN anywhere makes the sums NaN, and a NaN meets no bound.
/// @throws frugal::invalid_argument when the sizes differ.
error_metrics compare(std::span<const float> reference, std::span<const float> approx);

/// @brief Quantizes `data` (row-major, rows = data.size() / cols; channels are rows, groups run
/// along rows) to `f` in host memory, dequantizes it into one float buffer and measures the
/// error; bits_per_element comes from the layout (scales and zero points included).
/// @throws frugal::invalid_argument as quantize() does (empty data, cols == 0, size not a
///   multiple of cols, a row length `f` cannot take).
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
  /// sqnr_db >= value, or relative_l2 <= value (false for NaN).
  bool met_by(const error_metrics& m) const noexcept;
};

/// @brief One candidate's result in choose_report().
struct candidate {
  format f;
  error_metrics metrics;
  bool meets_bound;
};

/// @brief Every candidate evaluated on `data`, sorted by bits per element, then relative error,
/// then declaration order. `candidates` defaults to every format; a candidate whose layout does
/// not fit the shape (layout_of throws, e.g. cols not a multiple of its block) is left out.
/// One dequantization buffer is shared by all candidates.
/// @throws frugal::invalid_argument for empty data, cols == 0 or a size not a multiple of cols.
std::vector<candidate> choose_report(std::span<const float> data, std::size_t cols, bound b,
                                     std::span<const format> candidates = {},
                                     const options& opts = {});

/// @brief The format with the fewest bits per element (ties: lower relative error) among
/// `candidates` (default: every format whose layout fits the shape) that meets `b`; std::nullopt
/// when none does.
/// @throws frugal::invalid_argument as choose_report() does.
std::optional<format> choose(std::span<const float> data, std::size_t cols, bound b,
                             std::span<const format> candidates = {}, const options& opts = {});

/// @brief One tensor to plan: a name, its data (row-major) and row length.
struct tensor_input {
  std::string name;
  std::span<const float> data;
  std::size_t cols = 0;
};

/// @brief The format chosen for one tensor. `chosen` is empty when no candidate met the bound
/// or the chosen layout would not be smaller than the source; the tensor then stays at the
/// source precision (bytes_after == bytes_before).
struct tensor_plan {
  std::string name;
  std::size_t rows = 0, cols = 0;
  std::optional<format> chosen;
  error_metrics metrics;         // of the chosen format (exact, at the source bits, when kept)
  std::size_t bytes_before = 0;  // elements * source bits / 8, rounded up
  std::size_t bytes_after = 0;   // layout_of(chosen).total_bytes, or bytes_before when kept
};

/// @brief A mixed-precision plan for many tensors.
struct model_plan {
  std::vector<tensor_plan> tensors;
  std::size_t total_bytes_before = 0;  // sum of tensors[i].bytes_before
  std::size_t total_bytes_after = 0;   // sum of tensors[i].bytes_after
};

/// @brief Chooses a format per tensor under `b`. Tensors are measured against their source
/// precision of `source_bits_per_element` (16 for FP16/BF16 checkpoints).
/// @throws frugal::invalid_argument naming the tensor for bad data (as choose()), or when
///   source_bits_per_element is 0; nothing is returned then.
model_plan plan(std::span<const tensor_input> tensors, bound b,
                std::span<const format> candidates = {}, unsigned source_bits_per_element = 16,
                const options& opts = {});

/// @brief Chooses a format per tensor of a checkpoint, one tensor in memory at a time, each
/// viewed as rows x cols with cols its last dimension. The source size of a tensor is its stored
/// size; tensors that are not F32/F16/BF16, or are empty, are kept as they are.
model_plan plan(const safetensors_file& file, bound b, std::span<const format> candidates = {},
                const options& opts = {});

}  // namespace frugal::quant
