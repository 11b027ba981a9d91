// Accuracy metrics, format choice under a bound and mixed-precision plans
// (include/frugal/quant/accuracy.hpp). Everything runs through the CPU reference quantizer.
#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/quantized_tensor.hpp>
#include <frugal/quant/safetensors.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace frugal::quant {
namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();

void check_shape(std::span<const float> data, std::size_t cols, const char* who) {
  FRUGAL_EXPECTS(!data.empty(), std::string(who) + ": empty input", invalid_argument);
  FRUGAL_EXPECTS(cols != 0, std::string(who) + ": cols must be non-zero", invalid_argument);
  FRUGAL_EXPECTS(data.size() % cols == 0,
                 std::string(who) + ": input size " + std::to_string(data.size()) +
                     " is not a multiple of cols " + std::to_string(cols),
                 invalid_argument);
}

/// The metrics of a tensor kept at its source precision: no error.
error_metrics exact(double bits) {
  return {
      .sqnr_db = infinity, .relative_l2 = 0, .max_abs = 0, .cosine = 1, .bits_per_element = bits};
}

/// evaluate() with the dequantization buffer supplied, so that a loop over candidates or
/// tensors allocates it once.
error_metrics evaluate_into(std::span<const float> data, std::size_t cols, format f,
                            const options& opts, std::vector<float>& restored) {
  host_resource host;
  const quantized_tensor q = quantize(f, data, cols, host, opts);
  restored.resize(data.size());
  dequantize(q, restored, opts);
  error_metrics m = compare(data, restored);
  m.bits_per_element = bits_per_element(f, data.size() / cols, cols);
  return m;
}

bool fits(format f, std::size_t rows, std::size_t cols) {
  try {
    (void)layout_of(f, rows, cols);
    return true;
  } catch (const invalid_argument&) {
    return false;
  }
}

/// NaN sorts last, so a tensor with NaN errors never wins a tie.
double sort_key(double relative_error) {
  return std::isnan(relative_error) ? infinity : relative_error;
}

std::vector<candidate> report_into(std::span<const float> data, std::size_t cols, bound b,
                                   std::span<const format> candidates, const options& opts,
                                   std::vector<float>& restored) {
  check_shape(data, cols, "quant::choose");
  const std::size_t rows = data.size() / cols;
  std::vector<format> pool;
  if (candidates.empty())
    for (const format_info& fi : all_formats()) pool.push_back(fi.id);
  else
    pool.assign(candidates.begin(), candidates.end());

  std::vector<candidate> out;
  out.reserve(pool.size());
  for (format f : pool) {
    if (!fits(f, rows, cols)) continue;
    if (std::any_of(out.begin(), out.end(), [f](const candidate& c) { return c.f == f; }))
      continue;  // a candidate listed twice is evaluated once
    const error_metrics m = evaluate_into(data, cols, f, opts, restored);
    out.push_back({f, m, b.met_by(m)});
  }
  std::sort(out.begin(), out.end(), [](const candidate& x, const candidate& y) {
    if (x.metrics.bits_per_element != y.metrics.bits_per_element)
      return x.metrics.bits_per_element < y.metrics.bits_per_element;
    if (sort_key(x.metrics.relative_l2) != sort_key(y.metrics.relative_l2))
      return sort_key(x.metrics.relative_l2) < sort_key(y.metrics.relative_l2);
    return x.f < y.f;
  });
  return out;
}

/// Plans one tensor of `source_bytes` bytes (at `source_bits` per element).
tensor_plan plan_one(std::string name, std::span<const float> data, std::size_t cols, bound b,
                     std::span<const format> candidates, std::size_t source_bytes,
                     double source_bits, const options& opts, std::vector<float>& restored) {
  tensor_plan p;
  p.name = std::move(name);
  p.cols = cols;
  p.rows = cols == 0 ? 0 : data.size() / cols;
  p.bytes_before = source_bytes;
  p.bytes_after = source_bytes;
  p.metrics = exact(source_bits);
  std::vector<candidate> report;
  try {
    report = report_into(data, cols, b, candidates, opts, restored);
  } catch (const invalid_argument& e) {
    FRUGAL_FAIL("quant::plan: tensor '" + p.name + "': " + e.what(), invalid_argument);
  }
  const auto best =
      std::find_if(report.begin(), report.end(), [](const candidate& c) { return c.meets_bound; });
  if (best == report.end()) return p;
  const std::size_t bytes = layout_of(best->f, p.rows, p.cols).total_bytes;
  if (bytes >= source_bytes) return p;  // no saving: keep the source
  p.chosen = best->f;
  p.metrics = best->metrics;
  p.bytes_after = bytes;
  return p;
}

void add(model_plan& plan, tensor_plan p) {
  plan.total_bytes_before += p.bytes_before;
  plan.total_bytes_after += p.bytes_after;
  plan.tensors.push_back(std::move(p));
}

}  // namespace

error_metrics compare(std::span<const float> reference, std::span<const float> approx) {
  FRUGAL_EXPECTS(reference.size() == approx.size(),
                 "quant::compare: sizes differ (" + std::to_string(reference.size()) + " and " +
                     std::to_string(approx.size()) + ")",
                 invalid_argument);
  double signal = 0, noise = 0, approx_energy = 0, dot = 0, max_abs = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const double x = reference[i], y = approx[i], d = x - y;
    signal += x * x;
    noise += d * d;
    approx_energy += y * y;
    dot += x * y;
    if (!(std::abs(d) <= max_abs)) max_abs = std::abs(d);  // keeps a NaN
  }
  error_metrics m;
  m.max_abs = max_abs;
  if (noise == 0) {
    m.sqnr_db = infinity;
    m.relative_l2 = 0;
  } else if (signal == 0) {
    m.sqnr_db = -infinity;
    m.relative_l2 = infinity;
  } else {
    m.sqnr_db = 10.0 * std::log10(signal / noise);
    m.relative_l2 = std::sqrt(noise / signal);
  }
  if (signal == 0 && approx_energy == 0)
    m.cosine = 1;
  else if (signal == 0 || approx_energy == 0)
    m.cosine = 0;
  else
    m.cosine = dot / std::sqrt(signal * approx_energy);
  return m;
}

error_metrics evaluate(std::span<const float> data, std::size_t cols, format f,
                       const options& opts) {
  check_shape(data, cols, "quant::evaluate");
  std::vector<float> restored;
  return evaluate_into(data, cols, f, opts, restored);
}

bool bound::met_by(const error_metrics& m) const noexcept {
  switch (what) {
    case kind::min_sqnr_db:
      return m.sqnr_db >= value;
    case kind::max_relative_error:
      return m.relative_l2 <= value;
  }
  return false;
}

std::vector<candidate> choose_report(std::span<const float> data, std::size_t cols, bound b,
                                     std::span<const format> candidates, const options& opts) {
  std::vector<float> restored;
  return report_into(data, cols, b, candidates, opts, restored);
}

std::optional<format> choose(std::span<const float> data, std::size_t cols, bound b,
                             std::span<const format> candidates, const options& opts) {
  for (const candidate& c : choose_report(data, cols, b, candidates, opts))
    if (c.meets_bound) return c.f;
  return std::nullopt;
}

model_plan plan(std::span<const tensor_input> tensors, bound b, std::span<const format> candidates,
                unsigned source_bits_per_element, const options& opts) {
  FRUGAL_EXPECTS(source_bits_per_element != 0, "quant::plan: source_bits_per_element must be > 0",
                 invalid_argument);
  model_plan out;
  std::vector<float> restored;
  for (const tensor_input& t : tensors) {
    FRUGAL_EXPECTS(
        t.data.size() <= std::numeric_limits<std::size_t>::max() / source_bits_per_element,
        "quant::plan: tensor '" + t.name + "' is too large", invalid_argument);
    const std::size_t bits = t.data.size() * source_bits_per_element;
    add(out, plan_one(t.name, t.data, t.cols, b, candidates, (bits + 7) / 8,
                      source_bits_per_element, opts, restored));
  }
  return out;
}

model_plan plan(const safetensors_file& file, bound b, std::span<const format> candidates,
                const options& opts) {
  model_plan out;
  std::vector<float> data, restored;
  for (const tensor_entry& t : file.tensors()) {
    const std::size_t source_bytes = t.end - t.begin;
    const double source_bits = 8.0 * static_cast<double>(size_of(t.type));
    if (!is_float_readable(t.type) || t.elements() == 0) {
      tensor_plan kept;
      kept.name = t.name;
      kept.cols = t.cols();
      kept.rows = kept.cols == 0 ? 0 : t.elements() / kept.cols;
      kept.metrics = exact(source_bits);
      kept.bytes_before = kept.bytes_after = source_bytes;
      add(out, std::move(kept));
      continue;
    }
    data.resize(t.elements());
    file.to_float(t, data);
    add(out,
        plan_one(t.name, data, t.cols(), b, candidates, source_bytes, source_bits, opts, restored));
  }
  return out;
}

}  // namespace frugal::quant
