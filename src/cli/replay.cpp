// `frugal replay`: replays an allocation log in RAPIDS RMM's CSV format (what frugal's
// logging_adaptor writes) against one allocator, under an optional cap on reserved bytes, and
// reports events per second, peak reserved versus peak in use, allocations refused under the cap,
// bytes still live at the end and the log's warnings; optionally an SVG timeline.
#include "common.hpp"

#include <frugal/sim/trace.hpp>

#if FRUGAL_HAS_CUDA
#include <frugal/device.hpp>
#include <frugal/mr/cuda_resource.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace frugal::cli {
namespace {

struct replay_options {
  std::string trace;      // the log; empty with --synthetic
  std::string synthetic;  // GPU memory of the synthetic serving trace
  std::string allocator = "pool";
  std::string cap;          // empty: no cap
  std::string timeline;     // SVG path
  std::string write_trace;  // where to save the synthetic trace
  std::uint64_t seed = 1;
  bool json = false;
  bool preallocate = false;  // pool: reserve the cap up front
};

#if FRUGAL_HAS_CUDA
/// cudaMalloc / cudaFree; reserved == in use; the cap refuses requests beyond it.
class cuda_backend final : public sim::replay_backend {
 public:
  explicit cuda_backend(std::size_t cap) : cap_(cap) {}
  std::string name() const override { return "cuda"; }
  void* try_allocate(std::size_t bytes) noexcept override {
    if (bytes > cap_ - std::min(cap_, in_use_)) return nullptr;
    void* p = gpu_.try_allocate(bytes);
    if (p != nullptr) in_use_ += bytes;
    return p;
  }
  void deallocate(void* p, std::size_t bytes) noexcept override {
    gpu_.deallocate(p, bytes);
    in_use_ -= bytes;
  }
  std::size_t bytes_reserved() const noexcept override { return in_use_; }

 private:
  cuda_resource gpu_;
  std::size_t cap_;
  std::size_t in_use_ = 0;
};
#endif

sim::replay_result run_on(std::span<const sim::trace_event> events, sim::allocator_kind kind,
                          std::size_t cap, bool preallocate) {
  if (kind != sim::allocator_kind::cuda)
    return sim::replay(events, kind, cap, sim::replay_options{.pool_preallocate = preallocate});
#if FRUGAL_HAS_CUDA
  if (device::count() == 0)
    FRUGAL_FAIL("--allocator cuda: no CUDA device is present on this machine", error);
  cuda_backend backend(cap);
  sim::replay_result r = sim::replay(events, backend);
  r.cap = cap;
  return r;
#else
  FRUGAL_FAIL(
      "--allocator cuda: this frugal was built without CUDA; use pool, arena, first-fit or "
      "malloc",
      error);
#endif
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

/// In use and reserved over the events, two polylines on a byte axis, the cap dashed.
std::string timeline_svg(const sim::replay_result& r, const std::string& title) {
  constexpr double width = 900, height = 420, left = 90, right = 20, top = 40, bottom = 50;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  std::size_t y_max = 1, x_max = 1;
  for (const auto& s : r.timeline) {
    y_max = std::max({y_max, s.bytes_in_use, s.bytes_reserved});
    x_max = std::max(x_max, s.event + 1);
  }
  if (r.cap != sim::no_cap) y_max = std::max(y_max, r.cap);
  const double y_top = static_cast<double>(y_max) * 1.05;
  const auto x = [&](std::size_t e) { return left + plot_w * double(e + 1) / double(x_max); };
  const auto y = [&](std::size_t b) { return top + plot_h * (1 - double(b) / y_top); };
  std::string svg = strf(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n"
      "<text x=\"%.0f\" y=\"20\" font-size=\"14\">%s</text>\n",
      width, height, width, height, left, xml_escape(title).c_str());
  // Grid lines at a round step (1, 2 or 5 times a power of ten of KiB, MiB, GiB, ...).
  double unit = 1;
  while (y_top / unit >= 1024) unit *= 1024;
  const double rough = y_top / 5 / unit;
  const double magnitude = std::pow(10, std::floor(std::log10(std::max(rough, 1e-9))));
  const double factor = rough / magnitude < 1.5   ? 1
                        : rough / magnitude < 3.5 ? 2
                        : rough / magnitude < 7.5 ? 5
                                                  : 10;
  const double step = factor * magnitude * unit;
  for (double b = 0; b <= y_top; b += step) {
    const auto bytes = static_cast<std::size_t>(b);
    svg += strf(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n"
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        left, y(bytes), left + plot_w, y(bytes), left - 6, y(bytes) + 4,
        format_bytes(bytes).c_str());
  }
  svg += strf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\"/>\n", left,
              top + plot_h, left + plot_w, top + plot_h);
  svg += strf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">event (of %zu)</text>\n",
              left + plot_w / 2, height - 12, x_max);
  const auto line = [&](bool reserved, const char* colour) {
    std::string points;
    for (const auto& s : r.timeline)
      points += strf("%.1f,%.1f ", x(s.event), y(reserved ? s.bytes_reserved : s.bytes_in_use));
    svg += strf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n",
                colour, points.c_str());
  };
  line(true, "#d62728");
  line(false, "#1f77b4");
  if (r.cap != sim::no_cap)
    svg += strf(
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555555\" "
        "stroke-dasharray=\"6,4\"/>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">cap "
        "%s</text>\n",
        left, y(r.cap), left + plot_w, y(r.cap), left + plot_w, y(r.cap) - 4,
        format_bytes(r.cap).c_str());
  svg += strf(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"#d62728\"/>"
      "<text x=\"%.1f\" y=\"%.1f\">reserved (%s)</text>\n"
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"#1f77b4\"/>"
      "<text x=\"%.1f\" y=\"%.1f\">in use</text>\n",
      width - 300, 14.0, width - 284, 19.0, r.allocator.c_str(), width - 130, 14.0, width - 114,
      19.0);
  svg += "</svg>\n";
  return svg;
}

void write_file(const std::string& path, const std::string& text, const char* what) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out.is_open())
    FRUGAL_FAIL(path + ": cannot write " + what + ": " + std::strerror(errno), error);
  out << text;
  out.close();
  if (!out) FRUGAL_FAIL(path + ": cannot write " + what, error);
}

std::string percent_over(std::size_t reserved, std::size_t in_use) {
  if (in_use == 0) return "";
  return strf(" (%+.1f %% over peak in use)",
              100.0 * (double(reserved) - double(in_use)) / double(in_use));
}

/// "12.3 M" events per second.
std::string rate_text(double rate) {
  if (rate >= 1e6) return strf("%.1f M", rate / 1e6);
  if (rate >= 1e3) return strf("%.0f k", rate / 1e3);
  return strf("%.0f", rate);
}

void run_replay(const replay_options& o) {
  if (o.trace.empty() == o.synthetic.empty())
    FRUGAL_FAIL("give a TRACE file or --synthetic GPU_MEMORY (one of them)", usage_error);
  if (!o.write_trace.empty() && o.synthetic.empty())
    FRUGAL_FAIL("--write-trace saves the --synthetic trace; it needs --synthetic", usage_error);
  if (o.preallocate && (o.cap.empty() || o.allocator != "pool"))
    FRUGAL_FAIL("--preallocate reserves the cap up front: it needs --allocator pool and --cap",
                usage_error);
  const sim::allocator_kind kind = sim::parse_allocator_kind(o.allocator);
  std::size_t cap = sim::no_cap;
  if (!o.cap.empty()) {
    cap = parse_size(o.cap);
    if (cap == 0) FRUGAL_FAIL("--cap must be positive", usage_error);
  }

  sim::trace t;
  if (!o.trace.empty()) {
    t = sim::parse_rmm_log_file(o.trace);
  } else {
    sim::serving_trace_options s;
    s.gpu_memory = parse_size(o.synthetic);
    s.seed = o.seed;
    t.source = "synthetic serving trace (" + format_bytes(s.gpu_memory) + ", seed " +
               std::to_string(o.seed) + ")";
    try {
      t.events = sim::serving_trace(s);
    } catch (const invalid_argument& e) {
      FRUGAL_FAIL("--synthetic: " + without_source_location(e.what()), usage_error);
    }
    for (const auto& e : t.events)
      (e.action == sim::trace_action::allocate ? t.allocations : t.frees) += 1;
    if (!o.write_trace.empty()) {
      std::ofstream out(o.write_trace, std::ios::binary | std::ios::trunc);
      if (!out.is_open())
        FRUGAL_FAIL(o.write_trace + ": cannot write trace: " + std::strerror(errno), error);
      sim::write_rmm_log(out, t.events);
      out.close();
      if (!out) FRUGAL_FAIL(o.write_trace + ": cannot write trace", error);
    }
  }

  const sim::replay_result r = [&] {
    try {
      return run_on(t.events, kind, cap, o.preallocate);
    } catch (const invalid_argument& e) {
      // A cap the allocator cannot take (the pool's 1 TiB chunk limit): about the option.
      if (cap == sim::no_cap) throw;
      FRUGAL_FAIL("--cap " + o.cap + ": " + one_line(e.what()), usage_error);
    }
  }();
  const std::string cap_text = cap == sim::no_cap ? "none" : format_bytes(cap);
  if (!o.timeline.empty())
    write_file(o.timeline, timeline_svg(r, t.source + ": " + r.allocator + ", cap " + cap_text),
               "timeline");

  std::vector<std::string> warnings;
  for (const std::string& w : r.warning_messages) warnings.push_back(t.source + " " + w);
  if (o.json) {
    json timeline = json::array();
    for (const auto& s : r.timeline)
      timeline.push_back({s.event, s.bytes_in_use, s.bytes_reserved});
    print_json({{"trace", t.source},
                {"allocator", r.allocator},
                {"cap_bytes", cap == sim::no_cap ? json(nullptr) : json(cap)},
                {"events", r.events},
                {"allocations", r.allocations},
                {"frees", r.frees},
                {"zero_byte_allocations", r.zero_byte_allocations},
                {"seconds", r.seconds},
                {"events_per_second", r.events_per_second},
                {"peak_bytes_in_use", r.peak_bytes_in_use},
                {"peak_bytes_reserved", r.peak_bytes_reserved},
                {"failed_allocations", r.failed_allocations},
                {"failed_bytes", r.failed_bytes},
                {"first_failure_event",
                 r.failed_allocations > 0 ? json(r.first_failure_event) : json(nullptr)},
                {"live_bytes_at_end", r.live_bytes_at_end},
                {"live_allocations_at_end", r.live_allocations_at_end},
                {"bytes_reserved_at_end", r.bytes_reserved_at_end},
                {"logged_failures", r.logged_failures},
                {"warnings", r.warnings},
                {"unknown_frees", r.unknown_frees},
                {"duplicate_allocations", r.duplicate_allocations},
                {"size_mismatches", r.size_mismatches},
                {"warning_messages", warnings},
                {"timeline_columns", {"event", "bytes_in_use", "bytes_reserved"}},
                {"timeline", timeline}});
    return;
  }
  std::printf("%s: %zu events replayed on %s, cap %s\n", t.source.c_str(), r.events,
              r.allocator.c_str(), cap_text.c_str());
  table out({"", ""}, 2);
  out.add({"events per second", rate_text(r.events_per_second)});
  out.add({"peak in use", format_bytes(r.peak_bytes_in_use)});
  const bool preallocated = o.preallocate;
  out.add({"peak reserved",
           format_bytes(r.peak_bytes_reserved) +
               (preallocated ? std::string(" (the cap: the pool preallocates it)")
                             : percent_over(r.peak_bytes_reserved, r.peak_bytes_in_use))});
  out.add({"failed allocations",
           strf("%zu (%s)", r.failed_allocations, format_bytes(r.failed_bytes).c_str())});
  out.add(
      {"live at end", strf("%s in %zu allocation%s", format_bytes(r.live_bytes_at_end).c_str(),
                           r.live_allocations_at_end, r.live_allocations_at_end == 1 ? "" : "s")});
  if (r.zero_byte_allocations > 0)
    out.add({"zero-byte allocations", std::to_string(r.zero_byte_allocations)});
  if (r.logged_failures > 0)
    out.add({"logged failures", strf("%zu \"allocate failure\" rows skipped", r.logged_failures)});
  out.add(
      {"warnings", strf("%zu (unknown frees %zu, pointers allocated twice %zu, size "
                        "mismatches %zu)",
                        r.warnings, r.unknown_frees, r.duplicate_allocations, r.size_mismatches)});
  std::fputs(out.str().c_str(), stdout);
  std::printf("\n");
  for (const std::string& w : warnings) std::printf("  warning: %s\n", w.c_str());
  if (r.warnings > warnings.size())
    std::printf("  ... and %zu more warnings\n", r.warnings - warnings.size());
  if (!o.timeline.empty()) std::printf("timeline written to %s\n", o.timeline.c_str());
}

}  // namespace

void add_replay_command(CLI::App& app) {
  auto o = std::make_shared<replay_options>();
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Replay an allocation log (RAPIDS RMM's CSV: Thread,Time,Action,Pointer,Size,Stream) "
      "against an allocator: events per second, peak reserved versus peak in use, allocations "
      "refused under the cap, bytes live at the end");
  cmd->add_option("TRACE", o->trace, "the log, as frugal::logging_adaptor or RMM writes it");
  cmd->add_option("--allocator", o->allocator,
                  "pool (frugal::pool_resource growing in place over virtual memory; with "
                  "--preallocate it reserves the cap up front), arena "
                  "(frugal::arena_resource: a free reclaims only the most recent block), "
                  "first-fit (a naive first-fit heap over a range of the cap's size), malloc, "
                  "cuda (cudaMalloc; needs CUDA and a device)")
      ->check(CLI::IsMember({"pool", "arena", "first-fit", "malloc", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--cap", o->cap,
                  "most bytes the allocator may reserve (80GiB, 512MiB, bytes); requests beyond "
                  "it are counted as failed allocations; default none");
  cmd->add_option("--timeline", o->timeline, "write in use and reserved over the events as SVG");
  cmd->add_option("--synthetic", o->synthetic,
                  "replay the built-in synthetic serving trace for a GPU of this memory instead "
                  "of a file (Llama-3-8B-like, ~180k events)");
  cmd->add_option("--seed", o->seed, "seed of the synthetic trace")->capture_default_str();
  cmd->add_option("--write-trace", o->write_trace, "save the synthetic trace as CSV");
  cmd->add_flag("--json", o->json, "all figures as JSON on stdout");
  cmd->add_flag("--preallocate", o->preallocate,
                "pool: reserve the whole cap up front, as a server sized for one device does, "
                "instead of growing to it");
  cmd->callback([o] { run_replay(*o); });
}

}  // namespace frugal::cli
