// The five sections of `frugal report`, each measured by running frugal's own code: the weight
// plan (quant::plan), the allocation-trace replay (sim::replay), the serving simulator
// (sim::run) and a tracked decode loop (tracking_adaptor). Each returns its figures as JSON.
#include "report.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/tracking_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/safetensors.hpp>
#include <frugal/sim/simulator.hpp>
#include <frugal/sim/trace.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace frugal::cli::report {
namespace {

constexpr std::size_t granule = vmm_granule;

/// One matrix to plan: a few of its rows, and how many elements the full matrices hold.
struct sampled_matrix {
  std::string name;
  std::size_t rows = 0, cols = 0, count = 1;  // the full shape, and how many the model holds
  std::vector<float> sample;                  // sample_rows x cols, row-major
};

/// Gaussian weights with the init scale 1/sqrt(cols), a per-row (output channel) spread, and
/// outlier input channels: 1% of the columns, the same in every row, 10x larger. Outliers are
/// what make per-tensor and per-channel scales lose precision and small groups win.
std::vector<float> synthetic_rows(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  std::lognormal_distribution<float> row_scale(0.0f, 0.3f);
  std::bernoulli_distribution outlier(0.01);
  std::vector<float> column_scale(cols, 1.0f);
  for (float& s : column_scale) s = outlier(rng) ? 10.0f : 1.0f;
  std::vector<float> out(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float scale = row_scale(rng);
    for (std::size_t c = 0; c < cols; ++c)
      out[r * cols + c] = normal(rng) * scale * column_scale[c];
  }
  return out;
}

/// Rows of a stored tensor, evenly spread, converted to float; only those rows are read.
std::vector<float> sample_rows(const quant::safetensors_file& file, const quant::tensor_entry& t,
                               std::size_t rows, std::size_t cols, std::size_t wanted) {
  const std::span<const std::byte> bytes = file.bytes(t);
  const std::size_t element = t.type == quant::dtype::f32 ? 4 : 2;
  const std::size_t take = std::min(rows, wanted);
  std::vector<float> out(take * cols);
  for (std::size_t i = 0; i < take; ++i) {
    const std::size_t row = take == rows ? i : i * rows / take;
    const std::byte* src = bytes.data() + row * cols * element;
    for (std::size_t c = 0; c < cols; ++c) {
      float v = 0;
      if (t.type == quant::dtype::f32) {
        std::memcpy(&v, src + 4 * c, 4);
      } else {
        std::uint16_t bits;
        std::memcpy(&bits, src + 2 * c, 2);
        v = t.type == quant::dtype::f16 ? static_cast<float>(std::bit_cast<float16>(bits))
                                        : static_cast<float>(std::bit_cast<bfloat16>(bits));
      }
      out[i * cols + c] = v;
    }
  }
  return out;
}

}  // namespace

json weights_section(const options& o, const sim::model_shape& m, progress& p) {
  p.phase("weights: choosing a format per matrix");
  std::vector<sampled_matrix> matrices_to_plan;
  std::uint64_t other_parameters = 0;  // synthetic: norms, biases, routers, kept in 16 bits
  std::size_t kept_bytes = 0;          // a checkpoint's tensors kept as stored (integer ids, ...)
  json kept_tensors = json::array();
  std::string source;
  std::optional<quant::safetensors_file> file;
  if (o.weights_file.empty()) {
    source = "synthetic";
    std::uint64_t covered = 0, seed = o.seed;
    for (const matrix_kind& k : matrices(m)) {
      const std::size_t take = std::min(k.rows, o.sample_rows);
      matrices_to_plan.push_back({k.name, k.rows, k.cols, k.count,
                                  synthetic_rows(take, k.cols, ++seed * 0x9E3779B97F4A7C15ull)});
      covered += k.elements();
    }
    other_parameters = m.num_parameters > covered ? m.num_parameters - covered : 0;
  } else {
    source = o.weights_file;
    file.emplace(o.weights_file);
    // The rule of frugal quant: other types than F32/F16/BF16 and empty tensors are kept as
    // stored (their bytes in both totals); every other tensor, 1-D included, is quantized.
    for (const quant::tensor_entry& t : file->tensors()) {
      if (std::string why = kept_reason(t); !why.empty()) {
        kept_bytes += t.end - t.begin;
        kept_tensors.push_back({{"name", t.name},
                                {"dtype", std::string(quant::to_string(t.type))},
                                {"kept", why},
                                {"bytes", t.end - t.begin}});
        continue;
      }
      const std::size_t cols = t.cols(), rows = t.elements() / cols;
      matrices_to_plan.push_back(
          {t.name, rows, cols, 1, sample_rows(*file, t, rows, cols, o.sample_rows)});
    }
    if (matrices_to_plan.empty())
      FRUGAL_FAIL(o.weights_file + ": no F32, F16 or BF16 tensor to quantize", error);
  }

  const quant::bound bound = quant::bound::min_sqnr(o.min_sqnr_db);
  json tensors = json::array();
  long double before = 2.0L * static_cast<long double>(other_parameters) + kept_bytes,
              after = before;
  long double weighted_relative = 0, planned_elements = 0;
  double worst_sqnr = std::numeric_limits<double>::infinity();
  std::string worst_tensor;
  std::size_t index = 0;
  for (const sampled_matrix& s : matrices_to_plan) {
    p.detail(s.name + " (" + std::to_string(++index) + " of " +
             std::to_string(matrices_to_plan.size()) + ")");
    const quant::tensor_input input{s.name, s.sample, s.cols};
    quant::model_plan plan;
    try {
      plan = quant::plan(std::span(&input, 1), bound);
    } catch (const std::bad_alloc&) {
      throw;  // an allocation failure stays one (out_of_memory, std::bad_alloc)
    } catch (const std::exception& e) {
      FRUGAL_FAIL(source + ": tensor " + s.name + ": " + one_line(e.what()), error);
    }
    const quant::tensor_plan& t = plan.tensors.at(0);
    const long double elements = static_cast<long double>(s.rows) * s.cols * s.count;
    // The format's cost at the full shape (per-tensor and per-row scales amortise differently).
    const double bits = t.chosen ? quant::bits_per_element(*t.chosen, s.rows, s.cols) : 16.0;
    const long double bytes_before = 2 * elements, bytes_after = elements * bits / 8;
    before += bytes_before;
    after += bytes_after;
    // A kept matrix stays FP16: exact, infinite SQNR (written "inf" by sqnr_json).
    const double sqnr = t.chosen ? t.metrics.sqnr_db : std::numeric_limits<double>::infinity();
    if (sqnr < worst_sqnr) {
      worst_sqnr = sqnr;
      worst_tensor = s.name;
    }
    weighted_relative += elements * (t.chosen ? t.metrics.relative_l2 : 0.0);
    planned_elements += elements;
    tensors.push_back({{"name", s.name},
                       {"rows", s.rows},
                       {"cols", s.cols},
                       {"count", s.count},
                       {"sampled_rows", s.sample.size() / s.cols},
                       {"format", t.chosen ? std::string(quant::to_string(*t.chosen)) : "fp16"},
                       {"kept", !t.chosen.has_value()},
                       {"bits_per_element", bits},
                       {"sqnr_db", sqnr_json(sqnr)},
                       {"relative_l2", t.chosen ? t.metrics.relative_l2 : 0.0},
                       {"bytes_before", static_cast<std::size_t>(bytes_before)},
                       {"bytes_after", static_cast<std::size_t>(std::ceil(bytes_after))}});
  }

  // The error-versus-bits curve of one matrix: every format measured on the MLP's down
  // projection (or the checkpoint's largest matrix).
  const auto curve_of = std::max_element(
      matrices_to_plan.begin(), matrices_to_plan.end(), [](const auto& a, const auto& b) {
        const auto key = [](const sampled_matrix& s) {
          return (s.name.find("down_proj") != std::string::npos ? 1e30L : 0.0L) +
                 static_cast<long double>(s.rows) * s.cols * s.count;
        };
        return key(a) < key(b);
      });
  p.detail("every format on " + curve_of->name);
  json curve = json::array();
  for (const quant::candidate& c : quant::choose_report(curve_of->sample, curve_of->cols, bound)) {
    curve.push_back({{"format", std::string(quant::to_string(c.f))},
                     {"bits_per_element", c.metrics.bits_per_element},
                     {"sqnr_db", sqnr_json(c.metrics.sqnr_db)},
                     {"relative_l2", c.metrics.relative_l2},
                     {"meets_bound", c.meets_bound}});
  }

  const std::size_t bytes_before = static_cast<std::size_t>(before);
  const std::size_t bytes_after = static_cast<std::size_t>(std::ceil(after));
  const long double parameters = (before - kept_bytes) / 2;
  return {{"source", source},
          {"synthetic", o.weights_file.empty()},
          {"sample_rows", o.sample_rows},
          {"min_sqnr_db", o.min_sqnr_db},
          {"parameters", static_cast<std::uint64_t>(parameters)},
          {"kept_tensors", std::move(kept_tensors)},
          {"kept_bytes", kept_bytes},
          {"bytes_before", bytes_before},
          {"bytes_after", bytes_after},
          {"bytes_freed", bytes_before - std::min(bytes_before, bytes_after)},
          {"bits_per_weight", static_cast<double>(8 * (after - kept_bytes) / parameters)},
          {"worst_sqnr_db", sqnr_json(worst_sqnr)},
          {"worst_tensor", worst_tensor},
          {"mean_relative_l2", static_cast<double>(weighted_relative / planned_elements)},
          {"tensors", std::move(tensors)},
          {"curve_tensor", curve_of->name},
          {"error_vs_bits", std::move(curve)}};
}

json fragmentation_section(const options& o, const sim::model_shape& m, progress& p) {
  p.phase("fragmentation: generating a serving allocation trace");
  sim::serving_trace_options t;
  t.gpu_memory = o.gpu_bytes;
  t.steps = o.trace_steps;
  t.seed = o.seed;
  t.layers = m.num_layers;
  t.lengths = {.kind = o.workload_kind, .max_len = o.max_len};
  const std::vector<sim::trace_event> events = sim::serving_trace(t);
  json out{{"events", events.size()},
           {"steps", o.trace_steps},
           {"cap_bytes", o.gpu_bytes},
           {"target_utilization", t.target_utilization}};
  const sim::replay_options replay_options{.timeline_points = 200};
  const auto replayed = [&](sim::allocator_kind kind) {
    p.phase(std::string("fragmentation: replaying through ") + std::string(sim::to_string(kind)));
    const sim::replay_result r = sim::replay(events, kind, o.gpu_bytes, replay_options);
    json timeline = json::array();
    for (const sim::timeline_sample& s : r.timeline)
      timeline.push_back({s.event, s.bytes_in_use, s.bytes_reserved});
    return json{{"allocator", r.allocator},
                {"peak_bytes_in_use", r.peak_bytes_in_use},
                {"peak_bytes_reserved", r.peak_bytes_reserved},
                {"failed_allocations", r.failed_allocations},
                {"failed_bytes", r.failed_bytes},
                {"first_failure_event", r.failed_allocations ? r.first_failure_event : 0},
                {"seconds", r.seconds},
                {"timeline", std::move(timeline)}};
  };
  out["first_fit"] = replayed(sim::allocator_kind::first_fit);
  out["pool"] = replayed(sim::allocator_kind::pool);
  // Without a cap: the device each allocator would need to serve the whole trace. The difference
  // is the memory fragmentation costs.
  const auto needed = [&](sim::allocator_kind kind) {
    p.phase(std::string("fragmentation: replaying through ") + std::string(sim::to_string(kind)) +
            " without a cap");
    const sim::replay_result r = sim::replay(events, kind, sim::no_cap, replay_options);
    json timeline = json::array();
    for (const sim::timeline_sample& s : r.timeline)
      timeline.push_back({s.event, s.bytes_in_use, s.bytes_reserved});
    return std::pair{r.peak_bytes_reserved, std::move(timeline)};
  };
  auto [naive, naive_timeline] = needed(sim::allocator_kind::first_fit);
  auto [frugal, frugal_timeline] = needed(sim::allocator_kind::pool);
  out["first_fit"]["uncapped_peak_bytes_reserved"] = naive;
  out["first_fit"]["uncapped_timeline"] = std::move(naive_timeline);
  out["pool"]["uncapped_peak_bytes_reserved"] = frugal;
  out["pool"]["uncapped_timeline"] = std::move(frugal_timeline);
  // Signed: the pool may need more than first-fit (a loss is reported, never clamped to zero).
  out["bytes_freed"] = static_cast<long long>(naive) - static_cast<long long>(frugal);
  out["timeline_columns"] = {"event", "bytes_in_use", "bytes_reserved"};
  return out;
}

namespace {

json sim_json(const sim::result& r) {
  return {{"max_concurrent", r.max_concurrent},
          {"mean_concurrent", r.mean_concurrent},
          {"mean_concurrent_saturated", r.mean_concurrent_saturated},
          {"tokens_per_step", r.tokens_per_step},
          {"output_tokens_per_step", r.output_tokens_per_step},
          {"peak_kv_bytes", r.peak_kv_bytes},
          {"kv_budget_bytes", r.kv_budget_bytes},
          {"kv_pages", r.kv_pages},
          {"max_batch", r.max_batch},
          {"waste", r.waste},
          {"peak_workspace_bytes", r.peak_workspace_bytes},
          {"mean_workspace_bytes", r.mean_workspace_bytes},
          {"workspace_budget_bytes", r.workspace_budget_bytes},
          {"peak_memory_bytes", r.peak_memory_bytes},
          {"weight_bytes", r.weight_bytes},
          {"preemptions", r.preemptions},
          {"steps", r.steps},
          {"finished", r.finished},
          {"rejected", r.rejected},
          {"leaked_pages", r.leaked_pages}};
}

}  // namespace

json serving_sections(const options& o, const model_choice& m, std::size_t planned_weight_bytes,
                      bool fp16_fits, progress& p) {
  sim::config c;
  c.model_override = m.shape;
  c.gpu_memory = o.gpu_bytes;
  c.workload = o.workload_kind;
  c.num_requests = o.requests;
  c.max_len = o.max_len;
  c.seed = o.seed;
  c.max_num_seqs = o.max_num_seqs;
  if (!fp16_fits) c.weight_bytes_override = planned_weight_bytes;  // FP16 does not fit
  p.phase("KV cache and batching: static batching");
  c.policy = sim::policy::static_batching;
  const sim::result fixed = sim::run(c);
  p.phase("KV cache and batching: frugal's scheduler");
  c.policy = sim::policy::dynamic;
  const sim::result dynamic = sim::run(c);
  p.phase("KV cache and batching: frugal with the planned weights");
  c.weight_bytes_override = planned_weight_bytes;
  const sim::result planned = sim::run(c);

  // KV held but holding no token, averaged over the run (waste is that share of what is held).
  const double static_empty = fixed.waste * static_cast<double>(fixed.peak_kv_bytes);
  const double paged_empty = dynamic.waste * static_cast<double>(dynamic.peak_kv_bytes);
  json kv{{"kv_bytes_per_token", fixed.kv_bytes_per_token},
          // Per layer: a sliding-window layer reserves at most its window of a sequence.
          {"kv_bytes_per_sequence", fixed.kv_bytes_per_sequence},
          {"sliding_window", m.shape.sliding_window},
          {"window_layers", m.shape.window_layers},
          // kv::cache pages hold every layer: past the window the paged figures are an upper
          // bound for the windowed layers (exact up to window + a page).
          {"paged_upper_bound",
           m.shape.window_layers != 0 && o.max_len > m.shape.sliding_window + c.page_size},
          {"max_len", o.max_len},
          {"static",
           {{"reserved_bytes", fixed.peak_kv_bytes},
            {"sequences", fixed.max_batch},
            {"max_concurrent", fixed.max_concurrent},
            {"waste", fixed.waste},
            {"empty_bytes", static_cast<std::size_t>(static_empty)}}},
          {"paged",
           {{"pool_bytes", dynamic.kv_budget_bytes},
            {"pages", dynamic.kv_pages},
            {"peak_held_bytes", dynamic.peak_kv_bytes},
            {"max_concurrent", dynamic.max_concurrent},
            {"waste", dynamic.waste},
            {"empty_bytes", static_cast<std::size_t>(paged_empty)}}},
          {"bytes_freed", static_cast<std::size_t>(std::max(0.0, static_empty - paged_empty))}};
  const double workspace_freed =
      static_cast<double>(fixed.peak_workspace_bytes) - dynamic.mean_workspace_bytes;
  json batching{{"weights", fp16_fits ? "fp16" : "planned"},
                {"requests", o.requests},
                {"workload", std::string(sim::to_string(o.workload_kind))},
                {"mean_prompt", dynamic.mean_prompt},
                {"mean_output", dynamic.mean_output},
                {"static", sim_json(fixed)},
                {"dynamic", sim_json(dynamic)},
                {"bytes_freed", static_cast<std::size_t>(std::max(0.0, workspace_freed))}};
  return {{"kv", std::move(kv)}, {"batching", std::move(batching)}, {"frugal", sim_json(planned)}};
}

json leak_section(const options& o, const sim::model_shape& m, progress& p) {
  p.phase("leaks: a decode loop under tracking_adaptor");
  const std::size_t batch = 64;
  const std::size_t activation_bytes = batch * m.activation_bytes_per_token();
  const std::size_t logits_bytes = batch * m.logits_bytes();
  const std::string retained_tag = "sampler.logits_history";
  // The history may grow to a quarter of the GPU, so the loop also runs on small budgets.
  const std::size_t steps =
      std::max<std::size_t>(1, std::min(o.leak_steps, o.gpu_bytes / 4 / logits_bytes));

  json timeline = json::array();
  std::vector<std::size_t> naive_outstanding, fixed_outstanding, naive_reserved, fixed_reserved;
  json out{{"steps", steps},
           {"steps_requested", o.leak_steps},
           {"batch", batch},
           {"bytes_per_step", logits_bytes},
           {"retained_tag", retained_tag}};

  // One run of the loop; `keep_history` is the bug: every step's logits are copied into a
  // history that nothing trims, an intermediate retained across steps.
  const auto run = [&](bool keep_history, std::vector<std::size_t>& outstanding,
                       std::vector<std::size_t>& reserved) {
    virtual_resource gpu{{.reserve_bytes = o.gpu_bytes / granule * granule,
                          .commit = false,
                          .granularity = granule}};
    pool_resource<ref_t<virtual_resource>> pool{ref(gpu)};
    tracking_adaptor<ref_t<pool_resource<ref_t<virtual_resource>>>> tracker{ref(pool)};
    std::vector<void*> history;
    for (std::size_t step = 0; step < steps; ++step) {
      void* logits = tracker.allocate(logits_bytes, 256, "sampler.logits");
      for (std::uint32_t layer = 0; layer < m.num_layers; ++layer) {
        void* a = tracker.allocate(activation_bytes, 256, "layer.activations");
        tracker.deallocate(a, activation_bytes, 256);
      }
      void* copy = tracker.allocate(logits_bytes, 256, retained_tag);
      history.push_back(copy);
      if (!keep_history) {
        for (void* h : history) tracker.deallocate(h, logits_bytes, 256);
        history.clear();
      }
      tracker.deallocate(logits, logits_bytes, 256);
      outstanding.push_back(tracker.outstanding_bytes());
      reserved.push_back(pool.stats().bytes_reserved);
    }
    json run_json{{"outstanding_bytes", tracker.outstanding_bytes()},
                  {"outstanding_allocations", tracker.outstanding_count()},
                  {"peak_bytes_reserved", pool.stats().peak_bytes_reserved}};
    if (tracker.outstanding_count() != 0) {
      const std::vector<tag_usage> tags = tracker.usage_by_tag();
      json by_tag = json::array();
      for (const tag_usage& t : tags)
        by_tag.push_back({{"tag", t.tag}, {"count", t.count}, {"bytes", t.bytes}});
      run_json["leaks_by_tag"] = std::move(by_tag);
      run_json["leak_report"] = tracker.report();
      run_json["top_tag"] = tags.front().tag;
      run_json["top_tag_bytes"] = tags.front().bytes;
    }
    // The report has been taken; the history is released so the tracker closes clean.
    for (void* h : history) tracker.deallocate(h, logits_bytes, 256);
    return run_json;
  };
  out["naive"] = run(true, naive_outstanding, naive_reserved);
  out["frugal"] = run(false, fixed_outstanding, fixed_reserved);
  for (std::size_t i = 0; i < naive_outstanding.size(); ++i)
    timeline.push_back(
        {i + 1, naive_outstanding[i], naive_reserved[i], fixed_outstanding[i], fixed_reserved[i]});
  out["timeline_columns"] = {"step", "naive_outstanding_bytes", "naive_reserved_bytes",
                             "frugal_outstanding_bytes", "frugal_reserved_bytes"};
  out["timeline"] = std::move(timeline);
  out["found"] = out["naive"].value("top_tag", std::string()) == retained_tag;
  out["bytes_freed"] = out["naive"]["outstanding_bytes"].get<std::size_t>() -
                       out["frugal"]["outstanding_bytes"].get<std::size_t>();
  return out;
}

}  // namespace frugal::cli::report
