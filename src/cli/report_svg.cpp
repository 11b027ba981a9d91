// The pictures of `frugal report --svg DIR`, drawn from the report's JSON as self-contained SVG:
// memory over time (the trace replay and the leaking loop), static versus paged KV, and the
// error of every quantization format against its bits per element.
#include "report.hpp"

#include <frugal/detail/svg.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace frugal::cli::report {
namespace {

constexpr double gib = 1024.0 * 1024.0 * 1024.0;

namespace svg = frugal::detail::svg;
using svg::escape;

std::string text_at(double x, double y, std::string_view text, const char* anchor = "start",
                    int size = 12, const char* extra = "") {
  return strf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"%s\" %s>", x, y, size,
              anchor, extra) +
         escape(text) + "</text>\n";
}

/// A plot area: data ranges mapped onto a rectangle, with axes, ticks and a legend.
struct plot {
  double left, top, width, height;
  double x_min, x_max, y_min, y_max;
  double px(double x) const { return left + (x - x_min) / (x_max - x_min) * width; }
  double py(double y) const { return top + height - (y - y_min) / (y_max - y_min) * height; }

  std::string axes(std::string_view title, std::string_view x_label, std::string_view y_label,
                   int x_ticks = 5, int y_ticks = 5) const {
    std::string s = strf(
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
        "fill=\"none\" stroke=\"#444\"/>\n",
        left, top, width, height);
    s += text_at(left, top - 10, title, "start", 14, "font-weight=\"bold\"");
    const svg::axis x = svg::nice_axis(x_min, x_max, x_ticks, false);
    for (const double v : x.ticks) {
      s += strf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ccc\"/>\n", px(v),
                top, px(v), top + height);
      s += text_at(px(v), top + height + 15, x.label(v), "middle", 11);
    }
    const svg::axis y = svg::nice_axis(y_min, y_max, y_ticks, false);
    for (const double v : y.ticks) {
      s += strf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ccc\"/>\n", left,
                py(v), left + width, py(v));
      s += text_at(left - 6, py(v) + 4, y.label(v), "end", 11);
    }
    s += text_at(left + width / 2, top + height + 32, x_label, "middle", 12);
    s += strf(
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
             "transform=\"rotate(-90 %.1f %.1f)\">",
             left - 48, top + height / 2, left - 48, top + height / 2) +
         escape(y_label) + "</text>\n";
    return s;
  }

  std::string line(const std::vector<std::pair<double, double>>& points, const char* colour,
                   const char* dash = "") const {
    std::string s =
        strf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" %s points=\"", colour, dash);
    for (const auto& [x, y] : points) s += strf("%.1f,%.1f ", px(x), py(y));
    return s + "\"/>\n";
  }

  /// One legend row; the legend starts `dx`, `dy` pixels into the plot area.
  std::string legend(int row, const char* colour, std::string_view label, double dx = 10,
                     double dy = 16) const {
    const double y = top + dy + 16 * row;
    return strf("<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"4\" fill=\"%s\"/>\n", left + dx,
                y - 5, colour) +
           text_at(left + dx + 18, y, label, "start", 11);
  }
};

std::string svg_open(int width, int height) {
  return strf(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      width, height, width, height);
}

double nice_max(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (v <= m * p) return m * p;
  return 10 * p;
}

std::string memory_over_time(const json& r) {
  std::string s = svg_open(760, 640);
  const json& f = r["fragmentation"];
  double top_events = 1, top_bytes = static_cast<double>(f["cap_bytes"].get<std::size_t>());
  for (const char* key : {"first_fit", "pool"})
    for (const json& p : f[key]["uncapped_timeline"]) {
      top_events = std::max(top_events, p[0].get<double>());
      top_bytes = std::max(top_bytes, p[2].get<double>());
    }
  const plot a{90, 40, 640, 220, 0, top_events, 0, nice_max(top_bytes / gib)};
  s += a.axes("Fragmentation: the device each allocator needs for a serving trace (no cap)",
              "allocation event", "GiB");
  const auto series = [&](const char* key, int column) {
    std::vector<std::pair<double, double>> points;
    for (const json& p : f[key]["uncapped_timeline"])
      points.emplace_back(p[0].get<double>(), p[column].get<double>() / gib);
    return points;
  };
  const double cap = static_cast<double>(f["cap_bytes"].get<std::size_t>()) / gib;
  s += a.line({{0, cap}, {top_events, cap}}, "#888", "stroke-dasharray=\"6 4\"");
  s += a.line(series("pool", 1), "#999");
  s += a.line(series("first_fit", 2), "#d62728");
  s += a.line(series("pool", 2), "#2ca02c");
  // Bottom right: the curves rise early and stay high, so that corner is empty.
  s += a.legend(0, "#d62728", "naive first-fit: reserved (high-water address)", 300, 150);
  s += a.legend(1, "#2ca02c", "frugal pool: reserved (grown in place)", 300, 150);
  s += a.legend(2, "#999", "in use (the trace's live bytes)", 300, 150);
  s += a.legend(3, "#888", "the GPU: " + format_bytes(f["cap_bytes"].get<std::size_t>()), 300, 150);

  const json& l = r["leaks"];
  double top_leak = 1;
  for (const json& p : l["timeline"]) top_leak = std::max(top_leak, p[1].get<double>());
  const plot b{
      90, 360, 640, 220, 0, std::max(1.0, l["steps"].get<double>()), 0, nice_max(top_leak / gib)};
  s += b.axes("Leaks: bytes the decode loop still holds after each step", "step", "GiB");
  std::vector<std::pair<double, double>> naive, fixed;
  for (const json& p : l["timeline"]) {
    naive.emplace_back(p[0].get<double>(), p[1].get<double>() / gib);
    fixed.emplace_back(p[0].get<double>(), p[3].get<double>() / gib);
  }
  s += b.line(naive, "#d62728");
  s += b.line(fixed, "#2ca02c");
  s += b.legend(0, "#d62728", "naive: " + l["retained_tag"].get<std::string>() + " retained");
  s += b.legend(1, "#2ca02c", "fixed after the tracker's leak report");
  return s + "</svg>\n";
}

std::string kv_static_vs_paged(const json& r) {
  std::string s = svg_open(760, 300);
  const json& kv = r["kv"];
  const double reserved = kv["static"]["reserved_bytes"].get<double>() / gib;
  const double paged = kv["paged"]["peak_held_bytes"].get<double>() / gib;
  const double pool = kv["paged"]["pool_bytes"].get<double>() / gib;
  const plot p{220, 50, 500, 170, 0, nice_max(std::max({reserved, paged, pool})), 0, 1};
  s += text_at(20, 30, "KV cache: static worst-case reservation versus paged", "start", 14,
               "font-weight=\"bold\"");
  const auto bar = [&](double y, double total, double empty_share, std::string_view label,
                       std::string_view note) {
    const double used = total * (1 - empty_share);
    std::string b = strf(
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"40\" "
        "fill=\"#1f77b4\"><title>holding tokens</title></rect>\n",
        p.px(0), y, p.px(used) - p.px(0));
    b += strf(
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"40\" fill=\"#f4b6b6\" "
        "stroke=\"#d62728\"><title>held but empty</title></rect>\n",
        p.px(used), y, p.px(total) - p.px(used));
    b += text_at(p.left - 10, y + 18, label, "end", 12);
    b += text_at(p.left - 10, y + 34, note, "end", 11);
    return b;
  };
  s += bar(70, reserved, kv["static"]["waste"].get<double>(), "static",
           strf("%zu sequences, %.0f%% empty", kv["static"]["max_concurrent"].get<std::size_t>(),
                100 * kv["static"]["waste"].get<double>()));
  s += bar(140, paged, kv["paged"]["waste"].get<double>(), "paged (peak held)",
           strf("%zu sequences, %.1f%% empty", kv["paged"]["max_concurrent"].get<std::size_t>(),
                100 * kv["paged"]["waste"].get<double>()));
  const svg::axis x = svg::nice_axis(p.x_min, p.x_max, 5, false);
  for (const double v : x.ticks) s += text_at(p.px(v), 205, x.label(v), "middle", 11);
  s += text_at(p.left + p.width / 2, 225, "GiB of KV", "middle", 12);
  s += strf("<rect x=\"%.1f\" y=\"250\" width=\"12\" height=\"12\" fill=\"#1f77b4\"/>\n", p.left);
  s += text_at(p.left + 18, 260, "holding tokens", "start", 11);
  s += strf(
      "<rect x=\"%.1f\" y=\"250\" width=\"12\" height=\"12\" fill=\"#f4b6b6\" "
      "stroke=\"#d62728\"/>\n",
      p.left + 140);
  s += text_at(p.left + 158, 260, "held but empty (time-averaged)", "start", 11);
  return s + "</svg>\n";
}

std::string format_error_vs_bits(const json& r) {
  std::string s = svg_open(760, 480);
  const json& w = r["weights"];
  double top_sqnr = w["min_sqnr_db"].get<double>() + 5, top_bits = 8;
  for (const json& c : w["error_vs_bits"]) {
    const double sqnr = sqnr_from_json(c["sqnr_db"]);  // "inf" for an exact format
    if (!std::isnan(sqnr)) top_sqnr = std::max(top_sqnr, std::min(80.0, sqnr));
    top_bits = std::max(top_bits, c["bits_per_element"].get<double>());
  }
  const plot p{80, 50, 620, 360, 0, std::ceil(top_bits + 0.5), 0, nice_max(top_sqnr)};
  s += p.axes("Error versus bits: every format on " + w["curve_tensor"].get<std::string>() +
                  " (rows sampled)",
              "bits per element (scales included)", "SQNR (dB), higher is better", 10, 5);
  const double bound = w["min_sqnr_db"].get<double>();
  s += p.line({{p.x_min, bound}, {p.x_max, bound}}, "#d62728", "stroke-dasharray=\"6 4\"");
  s += text_at(p.px(p.x_max) - 4, p.py(bound) - 5, strf("bound %.1f dB", bound), "end", 11);
  int i = 0;
  for (const json& c : w["error_vs_bits"]) {
    const double sqnr = sqnr_from_json(c["sqnr_db"]);
    if (std::isnan(sqnr)) continue;  // NaN in the data: no point to draw
    const double x = p.px(c["bits_per_element"].get<double>());
    const double y = p.py(std::max(p.y_min, std::min(p.y_max, sqnr)));
    const bool meets = c["meets_bound"].get<bool>();
    const std::string name = c["format"].get<std::string>();
    s += strf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", x, y,
              meets ? "#2ca02c" : "#999") +
         escape(strf("%s: %.2f bits, %s dB", name.c_str(), c["bits_per_element"].get<double>(),
                     sqnr_text(sqnr).c_str())) +
         "</title></circle>\n";
    s += text_at(x + 6, y + (i++ % 2 ? 10 : -4), name, "start", 9, "fill=\"#333\"");
  }
  return s + "</svg>\n";
}

void write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) FRUGAL_FAIL(path.string() + ": cannot write the picture", error);
}

}  // namespace

std::vector<std::string> write_pictures(const json& report, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) FRUGAL_FAIL(dir.string() + ": cannot create the folder: " + ec.message(), error);
  const std::vector<std::pair<std::string, std::string>> pictures{
      {"memory_over_time.svg", memory_over_time(report)},
      {"kv_static_vs_paged.svg", kv_static_vs_paged(report)},
      {"format_error_vs_bits.svg", format_error_vs_bits(report)}};
  std::vector<std::string> paths;
  for (const auto& [name, text] : pictures) {
    write(dir / name, text);
    paths.push_back((dir / name).string());
  }
  return paths;
}

}  // namespace frugal::cli::report
