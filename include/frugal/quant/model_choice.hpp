// frugal/quant/model_choice.hpp: the lowest-precision formats a model accepts, judged by the
// model's own output instead of weight error. The caller groups its matrices (e.g. every layer's
// query projection) and supplies a metric that runs the model under a candidate assignment and
// accepts or rejects it; choose_by_metric tries cheap plans first.
//   auto choice = frugal::quant::choose_by_metric(groups, candidates, [&](const auto& formats) {
//     return frugal::quant::metric_verdict{.accepted = cosine(run(formats)) >= 0.99};
//   });   // choice.uniform_format: one format for all; choice.per_group: a format per group
#pragma once

#include <frugal/error.hpp>
#include <frugal/quant/format.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace frugal::quant {

/// @brief Matrices that always share one format in a plan: `count` matrices of rows x cols.
struct matrix_group {
  std::string name;
  std::size_t rows = 0, cols = 0;
  std::size_t count = 1;
};

/// @brief A format per group, in the order of the groups; std::nullopt keeps the source precision.
using format_assignment = std::vector<std::optional<format>>;

/// @brief What the caller's metric says about one assignment. `score` and `detail` are only
/// reported (e.g. mean cosine), never interpreted.
struct metric_verdict {
  bool accepted = false;
  double score = 0;
  std::string detail{};
};

/// @brief One evaluation of the metric, in the order made.
struct metric_trial {
  format_assignment formats;
  std::size_t bytes = 0;  // of the groups under `formats` (layout sizes, source precision kept)
  metric_verdict verdict;
};

/// @brief The answer of choose_by_metric.
struct metric_choice {
  /// The cheapest single format that every group can hold and the metric accepts; std::nullopt
  /// when none is accepted (the model stays at the source precision).
  std::optional<format> uniform_format;
  std::size_t uniform_bytes = 0;
  /// A format per group, each lowered as far as the metric allows with the others fixed,
  /// starting from the uniform answer; never larger than uniform_bytes, always accepted.
  format_assignment per_group;
  std::size_t per_group_bytes = 0;
  std::size_t source_bytes = 0;  // every group at the source precision
  std::vector<metric_trial> trials;
};

/// @brief Bytes of `groups` under `formats` (layout_of sizes; std::nullopt, or a format whose
/// layout refuses the shape, counts at `source_bits` per element).
inline std::size_t assignment_bytes(std::span<const matrix_group> groups,
                                    const format_assignment& formats, unsigned source_bits = 32) {
  std::size_t total = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto& m = groups[g];
    std::size_t each = (m.rows * m.cols * source_bits + 7) / 8;
    if (g < formats.size() && formats[g]) {
      try {
        each = layout_of(*formats[g], m.rows, m.cols).total_bytes;
      } catch (const invalid_argument&) {
      }
    }
    total += each * m.count;
  }
  return total;
}

/// @brief Chooses formats by what the model outputs. First the whole model: candidates that fit
/// every group's shape, in order of increasing bytes, until `metric` accepts one
/// (uniform_format). Then per group, in the given order: formats smaller than the group's
/// current one, smallest first, until the metric accepts the assignment with that group
/// lowered and the others as they are. The metric runs at most candidates x (groups + 1) times.
/// @param candidates formats to try (an empty span: every format)
/// @param metric called with a format per group; must be deterministic for the answer to be
/// @param source_bits bits per element of the unquantized weights (32 for float32)
/// @throws frugal::invalid_argument for no groups or a group with a zero dimension or count;
///   whatever `metric` throws
inline metric_choice choose_by_metric(
    std::span<const matrix_group> groups, std::span<const format> candidates,
    const std::function<metric_verdict(const format_assignment&)>& metric,
    unsigned source_bits = 32) {
  FRUGAL_EXPECTS(!groups.empty(), "choose_by_metric: no matrix groups", invalid_argument);
  for (const auto& g : groups)
    FRUGAL_EXPECTS(g.rows > 0 && g.cols > 0 && g.count > 0,
                   "choose_by_metric: group \"" + g.name + "\" has a zero dimension or count",
                   invalid_argument);
  std::vector<format> pool;
  if (candidates.empty()) {
    for (const auto& fi : all_formats()) pool.push_back(fi.id);
  } else {
    pool.assign(candidates.begin(), candidates.end());
  }
  const auto fits = [&](format f, const matrix_group& g) {
    try {
      (void)layout_of(f, g.rows, g.cols);
      return true;
    } catch (const invalid_argument&) {
      return false;
    }
  };

  metric_choice out;
  const format_assignment source(groups.size());
  out.source_bytes = assignment_bytes(groups, source, source_bits);
  const auto judge = [&](const format_assignment& a) {
    metric_trial t{a, assignment_bytes(groups, a, source_bits), metric(a)};
    out.trials.push_back(t);
    return t.verdict.accepted;
  };

  // The whole model, cheapest first.
  std::vector<std::pair<std::size_t, format>> uniform;
  for (format f : pool) {
    if (!std::all_of(groups.begin(), groups.end(), [&](const auto& g) { return fits(f, g); }))
      continue;
    const format_assignment a(groups.size(), f);
    const std::size_t bytes = assignment_bytes(groups, a, source_bits);
    if (bytes < out.source_bytes) uniform.emplace_back(bytes, f);
  }
  std::stable_sort(uniform.begin(), uniform.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  format_assignment current = source;
  for (const auto& [bytes, f] : uniform) {
    const format_assignment a(groups.size(), f);
    if (judge(a)) {
      out.uniform_format = f;
      current = a;
      break;
    }
  }
  out.uniform_bytes = assignment_bytes(groups, current, source_bits);

  // Then each group on its own.
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto bytes_of = [&](std::optional<format> f) {
      return assignment_bytes(groups.subspan(g, 1), format_assignment{f}, source_bits);
    };
    const std::size_t now = bytes_of(current[g]);
    std::vector<std::pair<std::size_t, format>> lower;
    for (format f : pool)
      if (fits(f, groups[g]) && bytes_of(f) < now) lower.emplace_back(bytes_of(f), f);
    std::stable_sort(lower.begin(), lower.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [bytes, f] : lower) {
      format_assignment a = current;
      a[g] = f;
      if (judge(a)) {
        current = a;
        break;
      }
    }
  }
  out.per_group = current;
  out.per_group_bytes = assignment_bytes(groups, current, source_bits);
  return out;
}

}  // namespace frugal::quant
