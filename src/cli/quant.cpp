// `frugal quant`: per tensor of a safetensors checkpoint, every quantization format's bits per
// element and error (quant::choose_report), the cheapest format that meets an SQNR bound, and the
// checkpoint's total bytes before and after (quant::plan). Tensors are viewed as 2-D, rows x cols
// with cols the last dimension; tensors that are not F32, F16 or BF16 (integer ids, masks, F64,
// FP8) are kept as they are and counted in both totals.
#include "common.hpp"

#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/safetensors.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace frugal::cli {
namespace {

struct quant_options {
  std::string file;
  double bound_db = default_min_sqnr_db;
  std::vector<std::string> formats;  // empty: every format
  bool json = false;
};

std::string dtype_name(quant::dtype t) { return std::string(quant::to_string(t)); }

unsigned dtype_bits(quant::dtype t) noexcept {
  return static_cast<unsigned>(8 * quant::size_of(t));
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s + "]";
}

struct tensor_result {
  const quant::tensor_entry* entry = nullptr;
  std::size_t rows = 0, cols = 0;
  std::vector<quant::candidate> report;
  quant::tensor_plan plan;
  std::string kept;  // why the tensor is kept as it is; empty when a format is chosen
};

/// A tensor kept at its stored precision without evaluating any format: `why` says the reason.
tensor_result kept_as_stored(const quant::tensor_entry& t, std::string why) {
  tensor_result r;
  r.entry = &t;
  r.cols = t.cols();
  r.rows = r.cols == 0 ? 0 : t.elements() / r.cols;
  r.plan.name = t.name;
  r.plan.rows = r.rows;
  r.plan.cols = r.cols;
  r.plan.metrics.bits_per_element = dtype_bits(t.type);
  r.plan.metrics.sqnr_db = std::numeric_limits<double>::infinity();  // nothing changes: exact
  r.plan.bytes_before = r.plan.bytes_after = t.end - t.begin;
  r.kept = std::move(why);
  return r;
}

void run_quant(const quant_options& o) {
  check_bound(o.bound_db, "--bound");
  std::vector<quant::format> candidates;
  for (const std::string& name : split_list(o.formats)) {
    try {
      candidates.push_back(quant::parse_format(name));
    } catch (const invalid_argument& e) {
      FRUGAL_FAIL("--formats: " + without_source_location(e.what()), usage_error);
    }
  }
  const quant::bound bound = quant::bound::min_sqnr(o.bound_db);
  const quant::safetensors_file file = [&] {
    try {
      return quant::safetensors_file{o.file};
    } catch (const error& e) {
      FRUGAL_FAIL(without_source_location(e.what()), error);
    }
  }();

  std::vector<tensor_result> results;
  std::size_t total_before = 0, total_after = 0;
  progress bar("quant", 1);
  bar.phase("tensors");
  std::size_t index = 0;
  for (const quant::tensor_entry& t : file.tensors()) {
    bar.detail(strf("%zu of %zu: %s", ++index, file.tensors().size(), t.name.c_str()));
    // Integer ids, masks and the float types frugal does not read (F64, FP8) are kept as they
    // are, as is an empty tensor: nothing to quantize, but their bytes count in both totals.
    if (std::string why = kept_reason(t); !why.empty()) {
      results.push_back(kept_as_stored(t, std::move(why)));
      total_before += results.back().plan.bytes_before;
      total_after += results.back().plan.bytes_after;
      continue;
    }
    tensor_result r;
    r.entry = &t;
    r.cols = t.cols();
    r.rows = r.cols == 0 ? 0 : t.elements() / r.cols;
    const unsigned bits = dtype_bits(t.type);
    // The reader's messages already name the file and the tensor.
    const std::vector<float> data = [&] {
      try {
        return file.to_float(t);
      } catch (const error& e) {
        FRUGAL_FAIL(one_line(e.what()), error);
      }
    }();
    try {
      r.report = quant::choose_report(data, r.cols, bound, candidates);
      std::optional<quant::format> chosen;
      for (const quant::candidate& c : r.report)
        if (c.meets_bound) {
          chosen = c.f;
          break;
        }
      // The plan re-measures only the chosen format (or every candidate when none met the bound,
      // and the tensor is then kept), so its bytes agree with the report.
      const quant::tensor_input input{t.name, data, r.cols};
      const quant::model_plan p = chosen ? quant::plan({&input, 1}, bound, {&*chosen, 1}, bits)
                                         : quant::plan({&input, 1}, bound, candidates, bits);
      if (p.tensors.size() != 1)
        FRUGAL_FAIL("the plan did not return one entry for the tensor", error);
      r.plan = p.tensors.front();
      // Kept: no candidate takes the shape, none meets the bound, or the ones that meet it are
      // no smaller than the tensor as stored.
      if (!r.plan.chosen)
        r.kept = r.report.empty() ? "no format takes this shape"
                 : chosen         ? "no format is smaller"
                                  : "no format meets the bound";
    } catch (const std::bad_alloc&) {
      throw;  // an allocation failure stays one (out_of_memory, std::bad_alloc)
    } catch (const std::exception& e) {
      // Name the file and the tensor once: quant::plan's messages already name the tensor.
      const std::string tag = "tensor '" + t.name + "': ";
      std::string what = one_line(e.what());
      if (const auto at = what.find(tag); at != std::string::npos) what.erase(0, at + tag.size());
      FRUGAL_FAIL(o.file + ": " + tag + what, error);
    }
    total_before += r.plan.bytes_before;
    total_after += r.plan.bytes_after;
    results.push_back(std::move(r));
  }

  const double ratio = total_before > 0 ? double(total_after) / double(total_before) : 1.0;
  if (o.json) {
    json tensors = json::array();
    for (const tensor_result& r : results) {
      json formats = json::array();
      for (const quant::candidate& c : r.report)
        formats.push_back({{"format", std::string(quant::to_string(c.f))},
                           {"bits_per_element", c.metrics.bits_per_element},
                           {"sqnr_db", sqnr_json(c.metrics.sqnr_db)},
                           {"relative_l2", sqnr_json(c.metrics.relative_l2)},
                           {"max_abs", sqnr_json(c.metrics.max_abs)},
                           {"cosine", sqnr_json(c.metrics.cosine)},
                           {"meets_bound", c.meets_bound}});
      const auto& p = r.plan;
      tensors.push_back(
          {{"name", r.entry->name},
           {"dtype", dtype_name(r.entry->type)},
           {"shape", r.entry->shape},
           {"rows", r.rows},
           {"cols", r.cols},
           {"chosen", p.chosen ? json(std::string(quant::to_string(*p.chosen))) : json(nullptr)},
           {"kept", r.kept.empty() ? json(nullptr) : json(r.kept)},
           {"bits_per_element",
            p.chosen ? json(p.metrics.bits_per_element) : json(dtype_bits(r.entry->type))},
           // A kept tensor is stored unchanged: exact, "inf".
           {"sqnr_db",
            sqnr_json(p.chosen ? p.metrics.sqnr_db : std::numeric_limits<double>::infinity())},
           {"relative_l2", p.chosen ? p.metrics.relative_l2 : 0.0},
           {"bytes_before", p.bytes_before},
           {"bytes_after", p.bytes_after},
           {"formats", formats}});
    }
    print_json({{"file", o.file},
                {"bound", {{"min_sqnr_db", o.bound_db}}},
                {"tensors", tensors},
                {"total_bytes_before", total_before},
                {"total_bytes_after", total_after},
                {"ratio", ratio}});
    return;
  }

  std::printf("%s: %zu tensors, bound SQNR >= %.1f dB\n", o.file.c_str(), results.size(),
              o.bound_db);
  for (const tensor_result& r : results) {
    const auto& p = r.plan;
    std::printf("\n%s %s %s: ", r.entry->name.c_str(), dtype_name(r.entry->type).c_str(),
                shape_text(r.entry->shape).c_str());
    if (p.chosen)
      std::printf("%s, %.2f bits per element, %s dB, %s -> %s\n",
                  std::string(quant::to_string(*p.chosen)).c_str(), p.metrics.bits_per_element,
                  sqnr_text(p.metrics.sqnr_db).c_str(), format_bytes(p.bytes_before).c_str(),
                  format_bytes(p.bytes_after).c_str());
    else
      std::printf("kept: %s, %s\n", r.kept.c_str(), format_bytes(p.bytes_before).c_str());
    if (r.report.empty()) continue;
    table t({"format", "bits", "SQNR dB", "rel. error", "meets"}, 1);
    for (const quant::candidate& c : r.report)
      t.add({std::string(quant::to_string(c.f)), strf("%.2f", c.metrics.bits_per_element),
             sqnr_text(c.metrics.sqnr_db),
             // NaN and inf read the same in text as in JSON ("nan", "inf"), never "-nan".
             std::isfinite(c.metrics.relative_l2) ? strf("%.2e", c.metrics.relative_l2)
                                                  : sqnr_text(c.metrics.relative_l2),
             c.meets_bound ? (p.chosen && *p.chosen == c.f ? "chosen" : "yes") : "no"});
    std::fputs(t.str().c_str(), stdout);
  }
  std::printf("\ntotal: %s before, %s after (%.1f %%)\n", format_bytes(total_before).c_str(),
              format_bytes(total_after).c_str(), 100.0 * ratio);
}

}  // namespace

void add_quant_command(CLI::App& app) {
  auto o = std::make_shared<quant_options>();
  CLI::App* cmd = app.add_subcommand(
      "quant",
      "Per tensor of a safetensors file: every format's bits per element and error, the "
      "cheapest format meeting an SQNR bound, and the file's bytes before and after");
  cmd->add_option("FILE", o->file,
                  "a .safetensors file (F32, F16 and BF16 tensors are evaluated; others are kept)")
      ->required();
  cmd->add_option("--bound", o->bound_db,
                  "least SQNR in dB a chosen format must reach (30 dB: noise a thousandth of "
                  "the signal's power)")
      ->capture_default_str()
      ->check(bound_text());
  cmd->add_option("--formats", o->formats,
                  "candidate formats, comma-separated (default: every format)");
  cmd->add_flag("--json", o->json, "all figures as JSON on stdout");
  cmd->callback([o] { run_quant(*o); });
}

}  // namespace frugal::cli
