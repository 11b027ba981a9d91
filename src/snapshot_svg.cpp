// snapshot::to_svg: one bar per segment with its blocks to scale, a legend of tags, and a chart of
// bytes reserved vs in use over time. Self-contained SVG 1.1: no scripts, styles or fonts fetched.
#include <frugal/detail/svg.hpp>
#include <frugal/mr/snapshot.hpp>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace frugal {
namespace {

// Geometry (pixels).
constexpr double width = 960, margin = 24, bar_height = 30, segment_pitch = 58;
constexpr double plot_left = 84, plot_right = width - margin, plot_height = 230;
constexpr double char_width = 6.4;  // of 11 px sans-serif text, for deciding what fits

// Tableau 10 and 20 hues, in an order where neighbours differ; grey stays for free and untagged.
constexpr const char* palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
                                   "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#a0cbe8",
                                   "#ffbe7d", "#8cd17d", "#d37295", "#86bcb6", "#b6992d"};
constexpr std::size_t palette_size = std::size(palette);
constexpr const char* free_colour = "#e3e3e3";
constexpr const char* untagged_colour = "#6f6f6f";
constexpr const char* other_colour = "#c7b38f";  // tags beyond the palette share this
constexpr const char* reserved_colour = "#4e79a7";
constexpr const char* in_use_colour = "#e8762b";

namespace svg = detail::svg;
using svg::append;
using svg::escape;

void text(std::string& out, double x, double y, std::string_view content, const char* attributes) {
  append(out, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attributes);
  out += escape(content);
  out += "</text>\n";
}

std::string tag_name(std::string_view tag) {
  return tag.empty() ? std::string("(untagged)") : std::string(tag);
}

/// Colours of used blocks: the largest tags (by bytes in blocks) get the palette in order.
struct tag_colours {
  struct entry {
    std::string tag;
    std::size_t bytes = 0, blocks = 0;
  };
  std::vector<entry> tags;  // largest first
  std::map<std::string, const char*, std::less<>> colour_of;

  explicit tag_colours(const std::vector<snapshot_segment>& segments) {
    std::map<std::string, entry, std::less<>> by_tag;
    for (const snapshot_segment& segment : segments) {
      for (const snapshot_block& b : segment.blocks) {
        if (b.free) continue;
        entry& e = by_tag[b.tag];
        e.tag = b.tag;
        e.bytes += b.size;
        ++e.blocks;
      }
    }
    for (auto& [tag, e] : by_tag) tags.push_back(std::move(e));
    std::stable_sort(tags.begin(), tags.end(),
                     [](const entry& a, const entry& b) { return a.bytes > b.bytes; });
    std::size_t next = 0;
    for (const entry& e : tags) {
      colour_of[e.tag] = e.tag.empty()         ? untagged_colour
                         : next < palette_size ? palette[next++]
                                               : other_colour;
    }
  }
  const char* operator()(std::string_view tag) const { return colour_of.find(tag)->second; }
};

double draw_segments(std::string& out, const snapshot& s, const tag_colours& colours, double y) {
  std::size_t largest = 1;
  for (const snapshot_segment& segment : s.segments) largest = std::max(largest, segment.size);
  const double scale = (width - 2 * margin) / static_cast<double>(largest);
  for (std::size_t i = 0; i < s.segments.size(); ++i) {
    const snapshot_segment& segment = s.segments[i];
    std::size_t used = 0, free_blocks = 0, largest_free = 0;
    for (const snapshot_block& b : segment.blocks) {
      if (b.free) {
        ++free_blocks;
        largest_free = std::max(largest_free, b.size);
      } else {
        ++used;
      }
    }
    char heading[256];
    std::snprintf(heading, sizeof heading,
                  "segment %zu \u00b7 %s at 0x%" PRIxPTR
                  " \u00b7 %zu used, %zu free blocks "
                  "\u00b7 largest free %s",
                  i, format_bytes(segment.size).c_str(), segment.base, used, free_blocks,
                  format_bytes(largest_free).c_str());
    text(out, margin, y + 12, heading, "class=\"label\"");
    const double top = y + 18;
    const double bar_width = std::max(2.0, static_cast<double>(segment.size) * scale);
    append(out, "<rect class=\"segment\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\"/>\n",
           margin - 1, top - 1, bar_width + 2, bar_height + 2);
    for (const snapshot_block& b : segment.blocks) {
      const double x = margin + static_cast<double>(b.offset) * scale;
      const double w = std::max(0.3, static_cast<double>(b.size) * scale);
      const char* fill = b.free ? free_colour : colours(b.tag);
      append(out,
             "<rect class=\"block %s\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
             "fill=\"%s\"%s>",
             b.free ? "free" : "used", x, top, w, bar_height, fill,
             w >= 4 ? " stroke=\"#ffffff\" stroke-width=\"0.75\"" : "");
      std::string title = b.free ? std::string("free") : tag_name(b.tag);
      title += ": " + format_bytes(b.size) + " block";
      if (!b.free) title += ", " + std::to_string(b.requested) + " bytes requested";
      char offset[64];
      std::snprintf(offset, sizeof offset, ", offset 0x%zx", b.offset);
      title += offset;
      out += "<title>" + escape(title) + "</title></rect>\n";
      // Name the block inside its bar when the name fits.
      const std::string label = b.free ? "free " + format_bytes(b.size) : tag_name(b.tag);
      if (w > static_cast<double>(label.size()) * char_width + 8) {
        text(out, x + 4, top + bar_height / 2 + 4, label,
             b.free ? "class=\"in-bar free-text\"" : "class=\"in-bar\"");
      }
    }
    y += segment_pitch;
  }
  return y;
}

double draw_legend(std::string& out, const snapshot& s, const tag_colours& colours, double y) {
  std::size_t free_bytes = 0, free_count = 0;
  for (const snapshot_segment& segment : s.segments)
    for (const snapshot_block& b : segment.blocks)
      if (b.free) free_bytes += b.size, ++free_count;
  struct item {
    const char* colour;
    std::string label;
  };
  auto label = [](std::string name, std::size_t bytes, std::size_t blocks) {
    return name + ": " + format_bytes(bytes) + " in " + std::to_string(blocks) +
           (blocks == 1 ? " block" : " blocks");
  };
  std::vector<item> items;
  std::size_t other_bytes = 0, other_blocks = 0, other_tags = 0;
  for (const auto& e : colours.tags) {
    const char* colour = colours(e.tag);
    if (colour == other_colour) {
      other_bytes += e.bytes, other_blocks += e.blocks, ++other_tags;
      continue;
    }
    items.push_back({colour, label(tag_name(e.tag), e.bytes, e.blocks)});
  }
  if (other_tags > 0) {
    const std::string name = std::to_string(other_tags) + " other tags";
    items.push_back({other_colour, label(name, other_bytes, other_blocks)});
  }
  items.push_back({free_colour, label("free", free_bytes, free_count)});
  double x = margin;
  for (const item& it : items) {
    const double item_width = 20 + static_cast<double>(it.label.size()) * 6.0 + 22;
    if (x + item_width > width - margin && x > margin) {
      x = margin;
      y += 20;
    }
    append(
        out,
        "<rect class=\"swatch\" x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>\n",
        x, y, it.colour);
    text(out, x + 20, y + 11.5, it.label, "class=\"label\"");
    x += item_width;
  }
  return y + 20;
}

/// Points of a step line through (time, value) pairs, merged per quarter pixel so that a
/// million events still make a few thousand points: each column keeps its entry, minimum,
/// maximum and exit values, which preserves every peak and trough a reader could see.
struct step_line {
  std::vector<std::pair<double, double>> points;  // pixel coordinates
  double last_x = -1;
  double enter = 0, low = 0, high = 0, exit = 0;
  bool open = false;

  void add(double x, double y) {
    const double column = std::floor(x * 4) / 4;
    if (open && column == last_x) {
      low = std::min(low, y), high = std::max(high, y), exit = y;
      return;
    }
    flush();
    enter = open ? exit : y;
    low = std::min(enter, y), high = std::max(enter, y), exit = y;
    last_x = column;
    open = true;
  }
  void flush() {
    if (!open) return;
    for (const double y : {enter, high, low, exit})
      if (points.empty() || points.back() != std::pair{last_x, y}) points.emplace_back(last_x, y);
  }
  std::string path(double end_x, double baseline) {
    flush();
    open = false;
    std::string d;
    if (points.empty()) return d;
    append(d, "M%.2f,%.1f", points.front().first, baseline);
    double previous_y = points.front().second;
    for (const auto& [x, y] : points) {
      append(d, " L%.2f,%.1f L%.2f,%.1f", x, previous_y, x, y);
      previous_y = y;
    }
    append(d, " L%.2f,%.1f L%.2f,%.1f Z", end_x, previous_y, end_x, baseline);
    return d;
  }
};

double draw_timeline(std::string& out, const snapshot& s, double y) {
  const auto& events = s.timeline;
  double t_end = s.captured_at;
  std::size_t max_bytes = 1;
  bool has_reserved = false;
  for (const timeline_event& e : events) {
    t_end = std::max(t_end, e.seconds);
    max_bytes = std::max({max_bytes, e.outstanding_bytes, e.upstream_bytes_reserved});
    has_reserved = has_reserved || e.upstream_bytes_reserved > 0;
  }
  if (!(t_end > 0)) t_end = 1e-6;

  // Units: GiB or MiB (KiB for small pictures) up the side; s, ms or us along the bottom.
  const double gib = 1024.0 * 1024 * 1024, mib = 1024.0 * 1024;
  const double byte_unit = max_bytes >= gib ? gib : max_bytes >= mib ? mib : 1024.0;
  const char* byte_unit_name = max_bytes >= gib ? "GiB" : max_bytes >= mib ? "MiB" : "KiB";
  const double time_unit = t_end >= 1 ? 1.0 : t_end >= 1e-3 ? 1e-3 : 1e-6;
  const char* time_unit_name = t_end >= 1 ? "s" : t_end >= 1e-3 ? "ms" : "\u00b5s";
  const svg::axis y_axis = svg::nice_axis(0, static_cast<double>(max_bytes) / byte_unit, 5, true);
  const double y_top_units = y_axis.high;
  const svg::axis x_axis = svg::nice_axis(0, t_end / time_unit, 8, false);
  const double x_max_units = x_axis.high;

  char heading[160];
  std::snprintf(heading, sizeof heading, "Bytes reserved and in use over time (%zu events%s)",
                events.size(), s.dropped_events > 0 ? ", later ones dropped" : "");
  text(out, margin, y + 14, heading, "class=\"heading\"");
  if (s.dropped_events > 0) {
    text(out, margin, y + 30,
         std::to_string(s.dropped_events) + " events not recorded (max_events)", "class=\"note\"");
  }
  // Legend of the two series, under the heading.
  const double ly = y + (s.dropped_events > 0 ? 38 : 24);
  append(out,
         "<rect class=\"swatch\" x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" "
         "fill=\"%s\" fill-opacity=\"0.35\" stroke=\"%s\"/>\n",
         margin, ly, reserved_colour, reserved_colour);
  const std::string reserved_label = has_reserved ? "reserved (the upstream's bytes_reserved)"
                                                  : "reserved: the upstream has no stats()";
  text(out, margin + 20, ly + 11.5, reserved_label, "class=\"label\"");
  const double lx = margin + 20 + static_cast<double>(reserved_label.size()) * char_width + 24;
  append(out,
         "<rect class=\"swatch\" x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" "
         "fill=\"%s\" fill-opacity=\"0.5\" stroke=\"%s\"/>\n",
         lx, ly, in_use_colour, in_use_colour);
  text(out, lx + 20, ly + 11.5, "in use (outstanding bytes through the tracker)",
       "class=\"label\"");
  const double top = ly + 30, bottom = top + plot_height;
  const double plot_width = plot_right - plot_left;
  auto to_x = [&](double seconds) { return plot_left + seconds / t_end * plot_width; };
  auto to_y = [&](std::size_t bytes) {
    return bottom - static_cast<double>(bytes) / byte_unit / y_top_units * plot_height;
  };

  for (const double v : y_axis.ticks) {  // horizontal grid, labels
    const double gy = bottom - v / y_top_units * plot_height;
    append(out, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
           plot_left, gy, plot_right, gy);
    text(out, plot_left - 6, gy + 4, y_axis.label(v), "class=\"tick\" text-anchor=\"end\"");
  }
  for (const double v : x_axis.ticks) {  // time ticks
    const double gx = plot_left + v / x_max_units * plot_width;
    append(out, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", gx,
           bottom, gx, bottom + 5);
    text(out, gx, bottom + 18, x_axis.label(v), "class=\"tick\" text-anchor=\"middle\"");
  }
  step_line reserved, in_use;
  for (const timeline_event& e : events) {
    if (has_reserved) reserved.add(to_x(e.seconds), to_y(e.upstream_bytes_reserved));
    in_use.add(to_x(e.seconds), to_y(e.outstanding_bytes));
  }
  const double end_x = to_x(t_end);
  if (has_reserved) {
    append(out,
           "<path class=\"series\" d=\"%s\" fill=\"%s\" fill-opacity=\"0.16\" stroke=\"%s\"/>\n",
           reserved.path(end_x, bottom).c_str(), reserved_colour, reserved_colour);
  }
  append(out, "<path class=\"series\" d=\"%s\" fill=\"%s\" fill-opacity=\"0.30\" stroke=\"%s\"/>\n",
         in_use.path(end_x, bottom).c_str(), in_use_colour, in_use_colour);
  append(out, "<path class=\"axis\" d=\"M%.1f,%.1f V%.1f H%.1f\" fill=\"none\"/>\n", plot_left, top,
         bottom, plot_right);

  text(out, (plot_left + plot_right) / 2, bottom + 38,
       std::string("time since tracking began (") + time_unit_name + ")",
       "class=\"label\" text-anchor=\"middle\"");
  append(out,
         "<text class=\"label\" text-anchor=\"middle\" transform=\"translate(%.1f %.1f) "
         "rotate(-90)\">%s</text>\n",
         margin + 8, (top + bottom) / 2, byte_unit_name);

  return bottom + 52;
}

}  // namespace

std::string snapshot::to_svg() const {
  const tag_colours colours(segments);
  std::string body;
  double y = 0;
  text(body, margin, y + 30, title, "class=\"title\"");
  std::string summary = describe(stats) + ", peak in use " + format_bytes(stats.peak_bytes_in_use) +
                        ", peak reserved " + format_bytes(stats.peak_bytes_reserved);
  if (stats.bytes_reserved > stats.bytes_in_use) {
    const double free_bytes = static_cast<double>(stats.bytes_reserved - stats.bytes_in_use);
    char fragmentation[64];
    std::snprintf(fragmentation, sizeof fragmentation, ", fragmentation %.1f%%",
                  100.0 * (1.0 - static_cast<double>(stats.largest_free_block) / free_bytes));
    summary += fragmentation;
  }
  text(body, margin, y + 50, summary, "class=\"note\"");
  y += 64;

  char heading[160];
  std::snprintf(heading, sizeof heading,
                "%zu segment%s, blocks to scale (hover a block for details)", segments.size(),
                segments.size() == 1 ? "" : "s");
  text(body, margin, y + 14, heading, "class=\"heading\"");
  y = draw_segments(body, *this, colours, y + 24);
  y = draw_legend(body, *this, colours, y + 2);
  if (!timeline.empty()) y = draw_timeline(body, *this, y + 22);

  std::string svg;
  append(svg,
         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
         "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n",
         width, y + 12, width, y + 12);
  svg +=
      "<style>\n"
      "text { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; font-size: 11px; "
      "fill: #333; }\n"
      ".title { font-size: 18px; font-weight: bold; fill: #222; }\n"
      ".heading { font-size: 13px; font-weight: bold; fill: #222; }\n"
      ".note { fill: #666; }\n"
      ".tick { font-size: 10px; fill: #555; }\n"
      ".in-bar { fill: #fff; font-size: 10.5px; }\n"
      ".free-text { fill: #777; }\n"
      ".segment { fill: none; stroke: #999; stroke-width: 1; }\n"
      ".grid { stroke: #e6e6e6; stroke-width: 1; }\n"
      ".axis { stroke: #555; stroke-width: 1; }\n"
      ".series { stroke-width: 1.4; stroke-linejoin: round; }\n"
      "</style>\n";
  append(svg, "<rect class=\"background\" width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
  svg += body;
  svg += "</svg>\n";
  return svg;
}

}  // namespace frugal
