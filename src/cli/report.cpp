// `frugal report`: the five ways a serving engine wastes GPU memory, each measured before (the
// naive way) and after (frugal) on one scenario, a model on a simulated GPU under ShareGPT-like
// traffic, ending with the total memory freed and the concurrency gained.
#include "report.hpp"

#include <frugal/sim/simulator.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace frugal::cli::report {
namespace {

std::size_t size_of(const json& j) { return j.get<std::size_t>(); }
double real(const json& j) { return j.get<double>(); }
std::string bytes(const json& j) { return format_bytes(j.get<std::size_t>()); }
std::string percent(double share) { return strf("%.1f%%", 100 * share); }
std::string ratio(double after, double before) {
  return before > 0 ? strf("%.2fx", after / before) : std::string("-");
}

/// What `freed` bytes of KV buy: tokens (in every layer) and max_len sequences (per layer, a
/// sliding-window layer holding at most its window).
std::string buys(std::size_t freed, const json& kv) {
  const std::size_t per_token = size_of(kv["kv_bytes_per_token"]);
  const std::size_t tokens = per_token ? freed / per_token : 0;
  const std::size_t per_sequence = size_of(kv["kv_bytes_per_sequence"]);
  const std::size_t max_len = size_of(kv["max_len"]);
  return strf("room for %zu more tokens of KV, %zu more %zu-token sequences", tokens,
              per_sequence ? freed / per_sequence : 0, max_len);
}

void print_text(const json& r) {
  const json& s = r["scenario"];
  const std::string active =
      size_of(s["active_parameters"]) != size_of(s["parameters"])
          ? strf(", %.2f B active per token", real(s["active_parameters"]) / 1e9)
          : std::string();
  std::printf(
      "frugal report: %s (%.2f B parameters%s) on a GPU of %s, %s traffic (%zu requests, "
      "up to %zu tokens each)\n",
      s["model"].get<std::string>().c_str(), real(s["parameters"]) / 1e9, active.c_str(),
      bytes(s["gpu_memory"]).c_str(), s["workload"].get<std::string>().c_str(),
      size_of(s["requests"]), size_of(s["max_len"]));
  std::printf("The GPU is simulated: address space reserved on the host and never touched.\n");
  if (!s["fp16_fits"].get<bool>())
    std::printf(
        "FP16 weights do not fit: %s.\nThe weight plan of section 1 (%s) makes the model "
        "fit: sections 3 and 4 run with it, before and after.\n",
        s["fp16_problem"].get<std::string>().c_str(), bytes(r["weights"]["bytes_after"]).c_str());

  const json& w = r["weights"];
  std::printf("\n1. Weights: FP16 versus a format per matrix chosen under SQNR >= %.1f dB\n",
              real(w["min_sqnr_db"]));
  if (w["synthetic"].get<bool>()) {
    std::printf(
        "   Synthetic weights shaped like the model's (Gaussian, 1%% outlier input "
        "channels); %zu rows of each matrix\n   quantized, bytes scaled to the full "
        "matrices. Norms and biases stay FP16.\n",
        size_of(w["sample_rows"]));
  } else {
    std::printf(
        "   Tensors of %s; %zu rows of each tensor quantized (a 1-D tensor is one row), "
        "bytes scaled to the full\n   tensors; tensors that are not F32, F16 or BF16 are "
        "kept as stored (%zu, %s), as frugal quant keeps them.\n",
        w["source"].get<std::string>().c_str(), size_of(w["sample_rows"]), w["kept_tensors"].size(),
        bytes(w["kept_bytes"]).c_str());
  }
  table t({"matrix", "shape", "count", "format", "bits", "SQNR dB", "FP16", "planned"}, 2);
  for (const json& x : w["tensors"])
    t.add({x["name"].get<std::string>(), strf("%zux%zu", size_of(x["rows"]), size_of(x["cols"])),
           std::to_string(size_of(x["count"])), x["format"].get<std::string>(),
           strf("%.2f", real(x["bits_per_element"])),
           x["kept"].get<bool>() ? std::string("exact") : sqnr_text(sqnr_from_json(x["sqnr_db"])),
           bytes(x["bytes_before"]), bytes(x["bytes_after"])});
  std::fputs(t.str(3).c_str(), stdout);
  std::printf(
      "   before %s (FP16)  after %s (%.2f bits per weight)  freed %s; worst SQNR "
      "%s dB (%s), mean relative error %.3f\n",
      bytes(w["bytes_before"]).c_str(), bytes(w["bytes_after"]).c_str(), real(w["bits_per_weight"]),
      bytes(w["bytes_freed"]).c_str(), sqnr_text(sqnr_from_json(w["worst_sqnr_db"])).c_str(),
      w["worst_tensor"].get<std::string>().c_str(), real(w["mean_relative_l2"]));
  std::printf("   buys: %s\n", buys(size_of(w["bytes_freed"]), r["kv"]).c_str());

  const json& f = r["fragmentation"];
  std::printf(
      "\n2. Fragmentation: a serving allocation trace (%zu events, %zu steps) replayed "
      "with the device capped at %s\n",
      size_of(f["events"]), size_of(f["steps"]), bytes(f["cap_bytes"]).c_str());
  table ft({"allocator", "peak in use", "peak reserved", "failed allocations", "failed bytes",
            "device needed"},
           1);
  for (const char* key : {"first_fit", "pool"}) {
    const json& x = f[key];
    ft.add({key == std::string("pool") ? "frugal pool" : "naive first-fit",
            bytes(x["peak_bytes_in_use"]), bytes(x["peak_bytes_reserved"]),
            std::to_string(size_of(x["failed_allocations"])), bytes(x["failed_bytes"]),
            bytes(x["uncapped_peak_bytes_reserved"])});
  }
  std::fputs(ft.str(3).c_str(), stdout);
  const long long fragmentation_freed = f["bytes_freed"].get<long long>();
  std::printf(
      "   at the cap, frugal's pool refuses %zu allocations where first-fit refuses %zu; "
      "to serve the whole\n   trace (\"device needed\": replayed without a cap) it "
      "needs %s %s\n",
      size_of(f["pool"]["failed_allocations"]), size_of(f["first_fit"]["failed_allocations"]),
      format_bytes(static_cast<std::size_t>(std::llabs(fragmentation_freed))).c_str(),
      fragmentation_freed >= 0 ? "less than first-fit"
                               : "MORE than first-fit: on this trace the pool loses");

  const json& kv = r["kv"];
  std::printf(
      "\n3. KV cache: static worst-case reservation versus paged (%zu bytes per token, "
      "sequences up to %zu tokens)\n",
      size_of(kv["kv_bytes_per_token"]), size_of(kv["max_len"]));
  if (size_of(kv["window_layers"]) != 0)
    std::printf(
        "   %zu layers attend to a window of %zu tokens: a static reservation holds "
        "%s per sequence, not %zu tokens in every layer\n",
        size_of(kv["window_layers"]), size_of(kv["sliding_window"]),
        bytes(kv["kv_bytes_per_sequence"]).c_str(), size_of(kv["max_len"]));
  if (kv.value("paged_upper_bound", false))
    std::printf(
        "   the paged pool's pages span every layer (kv::cache), so its figures keep the "
        "windowed layers' tokens beyond the window: an upper bound\n");
  table kt({"", "KV held", "held but empty", "empty bytes", "max concurrent"}, 1);
  kt.add({"static (reserve max_len per sequence)", bytes(kv["static"]["reserved_bytes"]),
          percent(real(kv["static"]["waste"])), bytes(kv["static"]["empty_bytes"]),
          std::to_string(size_of(kv["static"]["max_concurrent"]))});
  kt.add({strf("paged (%zu pages, peak held)", size_of(kv["paged"]["pages"])),
          bytes(kv["paged"]["peak_held_bytes"]), percent(real(kv["paged"]["waste"])),
          bytes(kv["paged"]["empty_bytes"]),
          std::to_string(size_of(kv["paged"]["max_concurrent"]))});
  std::fputs(kt.str(3).c_str(), stdout);
  std::printf(
      "   paging frees %s of empty KV and runs %s the sequences at once\n",
      bytes(kv["bytes_freed"]).c_str(),
      ratio(real(kv["paged"]["max_concurrent"]), real(kv["static"]["max_concurrent"])).c_str());

  const json& b = r["batching"];
  std::printf("\n4. Batching: static batches versus frugal's memory-aware continuous batching\n");
  table bt(
      {"", "seqs max", "seqs mean", "tokens/step", "output/step", "peak memory", "workspace mean"},
      1);
  for (const char* key : {"static", "dynamic"}) {
    const json& x = b[key];
    bt.add({key == std::string("static") ? "static" : "dynamic (frugal)",
            std::to_string(size_of(x["max_concurrent"])),
            strf("%.1f", real(x["mean_concurrent_saturated"])),
            strf("%.1f", real(x["tokens_per_step"])),
            strf("%.1f", real(x["output_tokens_per_step"])), bytes(x["peak_memory_bytes"]),
            format_bytes(static_cast<std::size_t>(real(x["mean_workspace_bytes"])))});
  }
  std::fputs(bt.str(3).c_str(), stdout);
  std::printf(
      "   dynamic batching: %s the output tokens per step; its workspace follows the "
      "live batch, %s less than the worst case on average\n",
      ratio(real(b["dynamic"]["output_tokens_per_step"]),
            real(b["static"]["output_tokens_per_step"]))
          .c_str(),
      bytes(b["bytes_freed"]).c_str());

  const json& l = r["leaks"];
  std::printf(
      "\n5. Leaks: a decode loop (%zu steps, %zu sequences) that keeps every step's "
      "logits in a history nothing trims\n",
      size_of(l["steps"]), size_of(l["batch"]));
  if (size_of(l["steps"]) < size_of(l["steps_requested"]))
    std::printf(
        "   --leak-steps %zu capped to %zu: the history may grow to a quarter of the "
        "GPU\n",
        size_of(l["steps_requested"]), size_of(l["steps"]));
  if (l["naive"].contains("leak_report")) {
    std::printf("   frugal::tracking_adaptor's leak report after the loop:\n");
    std::string report = l["naive"]["leak_report"].get<std::string>();
    for (std::size_t begin = 0; begin < report.size();) {
      std::size_t end = report.find('\n', begin);
      if (end == std::string::npos) end = report.size();
      std::printf("     %s\n", report.substr(begin, end - begin).c_str());
      begin = end + 1;
    }
  }
  std::printf(
      "   found: \"%s\" held %s (%s per step); fixed, the loop holds %s after its steps "
      "(peak reserved %s instead of %s)\n",
      l["naive"].value("top_tag", std::string("none")).c_str(),
      bytes(l["naive"]["outstanding_bytes"]).c_str(), bytes(l["bytes_per_step"]).c_str(),
      bytes(l["frugal"]["outstanding_bytes"]).c_str(),
      bytes(l["frugal"]["peak_bytes_reserved"]).c_str(),
      bytes(l["naive"]["peak_bytes_reserved"]).c_str());

  const json& total = r["total"];
  std::printf("\nTotal: %s of GPU memory freed (weights %s, KV %s, workspace %s)\n",
              bytes(total["bytes_freed"]).c_str(), bytes(total["freed"]["weights"]).c_str(),
              bytes(total["freed"]["kv"]).c_str(), bytes(total["freed"]["workspace"]).c_str());
  std::printf("  %s\n", total["how"].get<std::string>().c_str());
  std::printf(
      "  Not added: fragmentation %s%s and leak %s, measured in scenarios of their own "
      "(their bytes come out of the same KV space)\n",
      fragmentation_freed < 0 ? "-" : "",
      format_bytes(static_cast<std::size_t>(std::llabs(fragmentation_freed))).c_str(),
      bytes(r["leaks"]["bytes_freed"]).c_str());
  std::printf(
      "Concurrency: %zu sequences at once before (static batching, FP16 weights; bound "
      "by %s), %zu after (frugal, planned weights; bound by %s): %s\n",
      size_of(total["concurrency_before"]),
      total["concurrency_before_limit"].get<std::string>().c_str(),
      size_of(total["concurrency_after"]),
      total["concurrency_after_limit"].get<std::string>().c_str(),
      ratio(real(total["concurrency_after"]), real(total["concurrency_before"])).c_str());
  if (r.contains("pictures"))
    for (const json& path : r["pictures"])
      std::printf("picture: %s\n", path.get<std::string>().c_str());
}

void run_report(options o) {
  const model_choice model = resolve_model(o.model);
  o.gpu_bytes = parse_size(o.gpu_memory);
  o.workload_kind = parse_workload(o.workload);
  if (o.max_len < 2 || o.max_len > model.shape.max_context)
    FRUGAL_FAIL("--max-len " + std::to_string(o.max_len) + " is outside 2.." +
                    std::to_string(model.shape.max_context) + ", " + std::string(model.shape.name) +
                    "'s context",
                usage_error);
  check_bound(o.min_sqnr_db, "--min-sqnr");
  if (o.requests == 0 || o.sample_rows == 0 || o.trace_steps == 0 || o.leak_steps == 0)
    FRUGAL_FAIL("--requests, --sample-rows, --trace-steps and --leak-steps must be positive",
                usage_error);
  if (!o.weights_file.empty() && !std::filesystem::exists(o.weights_file))
    FRUGAL_FAIL(o.weights_file + ": no such file", error);
  // Does the budget hold FP16 weights, the workspace and one sequence? When not, the report
  // still plans the weights and, if the plan fits, runs the serving sections with it.
  sim::config fit;
  fit.model_override = model.shape;
  fit.gpu_memory = o.gpu_bytes;
  fit.max_len = o.max_len;
  fit.workload = o.workload_kind;
  fit.max_num_seqs = o.max_num_seqs;
  std::string fp16_problem;
  try {
    (void)sim::budget(fit);
  } catch (const invalid_argument& e) {
    fp16_problem = one_line(e.what());
  }

  progress p("frugal report", 11);
  json report;
  report["scenario"] = {{"model", std::string(model.shape.name)},
                        {"model_source", model.source},
                        {"parameters", model.shape.num_parameters},
                        {"active_parameters", model.shape.active_parameters()},
                        {"gpu_memory", o.gpu_bytes},
                        {"workload", std::string(sim::to_string(o.workload_kind))},
                        {"requests", o.requests},
                        {"max_len", o.max_len},
                        {"seed", o.seed},
                        {"simulated_device", "reserved host address space, never touched"}};
  report["weights"] = weights_section(o, model.shape, p);
  const std::size_t planned_bytes = size_of(report["weights"]["bytes_after"]);
  const bool fp16_fits = fp16_problem.empty();
  report["scenario"]["fp16_fits"] = fp16_fits;
  if (!fp16_fits) {
    fit.weight_bytes_override = planned_bytes;
    try {
      (void)sim::budget(fit);
    } catch (const invalid_argument& e) {
      FRUGAL_FAIL("--gpu-memory: " + fp16_problem + "; nor does the weight plan (" +
                      format_bytes(planned_bytes) + "): " + one_line(e.what()),
                  usage_error);
    }
    report["scenario"]["fp16_problem"] = fp16_problem;
  }
  try {
    report["fragmentation"] = fragmentation_section(o, model.shape, p);
  } catch (const invalid_argument& e) {
    // A size the replay cannot take is about --gpu-memory.
    FRUGAL_FAIL("--gpu-memory " + o.gpu_memory + ": " + one_line(e.what()), usage_error);
  }
  json serving = serving_sections(o, model, planned_bytes, fp16_fits, p);
  report["kv"] = std::move(serving["kv"]);
  report["batching"] = std::move(serving["batching"]);
  report["leaks"] = leak_section(o, model.shape, p);

  // The total compares one GPU before and after: the naive engine's FP16 weights, worst-case
  // workspace and static KV reservation are disjoint parts of it (they add up to at most the
  // GPU), and each part's saving is at most its own size. Fragmentation and the leak are
  // measured on scenarios of their own whose bytes would come out of the same KV space, so
  // adding them would count those bytes twice: they are shown beside the total, not in it.
  const std::size_t freed_weights = size_of(report["weights"]["bytes_freed"]),
                    freed_kv = size_of(report["kv"]["bytes_freed"]),
                    freed_workspace = size_of(report["batching"]["bytes_freed"]);
  const json& frugal_run = serving["frugal"];
  const json& static_run = report["batching"]["static"];
  // What bound the most sequences at once: every request was running, the cap on sequences
  // per step, or memory (the KV that fits).
  const auto limit = [&](const json& run, bool dynamic) -> std::string {
    const std::size_t most = size_of(run["max_concurrent"]);
    if (most >= o.requests) return "the number of requests (" + std::to_string(o.requests) + ")";
    if (dynamic && most >= o.max_num_seqs)
      return "--max-num-seqs (" + std::to_string(o.max_num_seqs) + ")";
    if (const std::uint32_t cap = sim::config{}.max_batched_tokens;
        !dynamic && size_of(run["max_batch"]) >= cap)
      return "max_batched_tokens (" + std::to_string(cap) + " sequences per batch)";
    return dynamic ? std::string("memory (the KV pages)")
                   : "memory (" + std::to_string(size_of(run["max_batch"])) + " sequences of " +
                         std::to_string(o.max_len) + " tokens)";
  };
  // FP16 weights that do not fit free nothing on this GPU: the plan is what makes it fit.
  const std::size_t counted_weights = fp16_fits ? freed_weights : 0;
  report["total"] = {
      {"bytes_freed", counted_weights + freed_kv + freed_workspace},
      {"how", fp16_fits
                  ? "freed = before - after on one GPU of " + format_bytes(o.gpu_bytes) +
                        ": FP16 weights, static KV reservation's empty bytes and worst-case "
                        "workspace (disjoint, at most the GPU) less the planned weights, paged "
                        "KV's empty bytes and the live workspace"
                  : "freed = before - after on one GPU of " + format_bytes(o.gpu_bytes) +
                        " with the planned weights in both (FP16 weights do not fit it, so the "
                        "plan makes the model fit rather than freeing memory): static KV "
                        "reservation's empty bytes and worst-case workspace less paged KV's "
                        "empty bytes and the live workspace"},
      {"freed", {{"weights", counted_weights}, {"kv", freed_kv}, {"workspace", freed_workspace}}},
      {"not_added",
       {{"fragmentation", report["fragmentation"]["bytes_freed"]},
        {"leak", report["leaks"]["bytes_freed"]}}},
      {"concurrency_before", fp16_fits ? static_run["max_concurrent"] : json(0)},
      {"concurrency_before_limit",
       fp16_fits ? limit(static_run, false) : std::string("FP16 weights that do not fit")},
      {"concurrency_after", frugal_run["max_concurrent"]},
      {"concurrency_after_limit", limit(frugal_run, true)},
      {"mean_concurrency_before", static_run["mean_concurrent_saturated"]},
      {"mean_concurrency_after", frugal_run["mean_concurrent_saturated"]},
      {"frugal_run", frugal_run}};
  if (!o.svg_dir.empty()) {
    json paths = json::array();
    for (const std::string& path : write_pictures(report, o.svg_dir)) paths.push_back(path);
    report["pictures"] = std::move(paths);
  }
  p.phase("done");
  if (o.json) {
    print_json(report);
  } else {
    print_text(report);
  }
}

}  // namespace
}  // namespace frugal::cli::report

namespace frugal::cli {

void add_report_command(CLI::App& app) {
  auto o = std::make_shared<report::options>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "The five wastes of GPU memory (weights, fragmentation, KV cache, batching, "
      "leaks), each before and after frugal, on a simulated GPU; no arguments needed");
  cmd->add_option("--model,-m", o->model,
                  "A preset (" + preset_names() + ") or a Hugging Face config.json")
      ->capture_default_str();
  cmd->add_option("--gpu-memory,-g", o->gpu_memory, "GPU memory, e.g. 80GiB, 24GB")
      ->capture_default_str();
  cmd->add_option("--workload", o->workload, "Request lengths: sharegpt, alpaca or fixed")
      ->capture_default_str();
  cmd->add_option("--weights", o->weights_file,
                  "A .safetensors checkpoint to plan instead of synthetic weights")
      ->type_name("FILE");
  cmd->add_option("--min-sqnr", o->min_sqnr_db,
                  "The weight plan's accuracy bound, in dB (frugal quant's default)")
      ->check(bound_text())
      ->capture_default_str();
  cmd->add_option("--sample-rows", o->sample_rows, "Rows of each weight matrix quantized")
      ->capture_default_str();
  cmd->add_option("--requests", o->requests, "Requests in the serving simulation")
      ->capture_default_str();
  cmd->add_option("--max-len", o->max_len, "Longest sequence (prompt + output), in tokens")
      ->capture_default_str();
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Dynamic batching: sequences per step at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--trace-steps", o->trace_steps, "Engine steps of the allocation trace")
      ->capture_default_str();
  cmd->add_option("--leak-steps", o->leak_steps, "Steps of the leaking decode loop")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of every random draw")->capture_default_str();
  cmd->add_option("--svg", o->svg_dir,
                  "Write pictures here: memory over time, static versus paged KV, format error "
                  "versus bits")
      ->type_name("DIR");
  cmd->add_flag("--json", o->json, "Print every figure as JSON on stdout");
  cmd->callback([o] { report::run_report(*o); });
}

}  // namespace frugal::cli
