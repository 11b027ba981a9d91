// The compiled part of frugal::snapshot: JSON (nlohmann/json, schema in docs/snapshots.md),
// files, and the SVG picture of segments, blocks and the timeline.
#include <frugal/mr/snapshot.hpp>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace frugal {
namespace {

using json = nlohmann::ordered_json;  // keeps the documented key order

constexpr std::string_view format_name = "frugal.snapshot";
constexpr int format_version = 1;

std::string hex(std::uintptr_t value) {
  char text[2 + 2 * sizeof(std::uintptr_t) + 1];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, value);
  return text;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (out) out.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (out) out.close();
  if (!out) {
    const int code = errno;
    FRUGAL_FAIL("snapshot: cannot write " + path.string() +
                    (code != 0 ? std::string(": ") + std::strerror(code) : ""),
                error);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// JSON

std::string snapshot::to_json(int indent) const {
  json root;
  root["format"] = format_name;
  root["version"] = format_version;
  root["title"] = title;
  root["stats"] = {{"bytes_in_use", stats.bytes_in_use},
                   {"bytes_reserved", stats.bytes_reserved},
                   {"peak_bytes_in_use", stats.peak_bytes_in_use},
                   {"peak_bytes_reserved", stats.peak_bytes_reserved},
                   {"largest_free_block", stats.largest_free_block},
                   {"allocations", stats.allocations}};
  json segments_json = json::array();
  for (const snapshot_segment& segment : segments) {
    json blocks = json::array();
    for (const snapshot_block& b : segment.blocks) {
      blocks.push_back({{"offset", b.offset},
                        {"size", b.size},
                        {"requested", b.requested},
                        {"free", b.free},
                        {"tag", b.tag}});
    }
    segments_json.push_back(
        {{"base", hex(segment.base)}, {"size", segment.size}, {"blocks", std::move(blocks)}});
  }
  root["segments"] = std::move(segments_json);
  json events = json::array();
  for (const timeline_event& e : timeline) {
    events.push_back({{"seconds", e.seconds},
                      {"kind", e.kind == event_kind::allocate ? "allocate" : "free"},
                      {"bytes", e.bytes},
                      {"tag", e.tag},
                      {"outstanding_bytes", e.outstanding_bytes},
                      {"upstream_bytes_reserved", e.upstream_bytes_reserved}});
  }
  root["timeline"] = {{"captured_at", captured_at},
                      {"dropped_events", dropped_events},
                      {"events", std::move(events)}};
  // Tags are arbitrary bytes; replace invalid UTF-8 rather than throw.
  return root.dump(indent, ' ', false, json::error_handler_t::replace) + "\n";
}

snapshot snapshot::from_json(std::string_view text) {
  try {
    const json root = json::parse(text.begin(), text.end());
    FRUGAL_EXPECTS(root.is_object() && root.value("format", "") == format_name,
                   "snapshot::from_json: not a frugal.snapshot document", error);
    FRUGAL_EXPECTS(root.at("version").get<int>() == format_version,
                   "snapshot::from_json: unsupported version " + root.at("version").dump(), error);
    snapshot s;
    s.title = root.value("title", "");
    const json& st = root.at("stats");
    s.stats.bytes_in_use = st.at("bytes_in_use").get<std::size_t>();
    s.stats.bytes_reserved = st.at("bytes_reserved").get<std::size_t>();
    s.stats.peak_bytes_in_use = st.at("peak_bytes_in_use").get<std::size_t>();
    s.stats.peak_bytes_reserved = st.at("peak_bytes_reserved").get<std::size_t>();
    s.stats.largest_free_block = st.at("largest_free_block").get<std::size_t>();
    s.stats.allocations = st.at("allocations").get<std::size_t>();
    for (const json& seg : root.at("segments")) {
      snapshot_segment& segment = s.segments.emplace_back();
      segment.base =
          static_cast<std::uintptr_t>(std::stoull(seg.at("base").get<std::string>(), nullptr, 16));
      segment.size = seg.at("size").get<std::size_t>();
      for (const json& b : seg.at("blocks")) {
        segment.blocks.push_back(snapshot_block{
            b.at("offset").get<std::size_t>(), b.at("size").get<std::size_t>(),
            b.at("requested").get<std::size_t>(), b.at("free").get<bool>(), b.value("tag", "")});
      }
    }
    const json& tl = root.at("timeline");
    s.captured_at = tl.value("captured_at", 0.0);
    s.dropped_events = tl.value("dropped_events", std::size_t{0});
    for (const json& e : tl.at("events")) {
      const std::string kind = e.at("kind").get<std::string>();
      FRUGAL_EXPECTS(kind == "allocate" || kind == "free",
                     "snapshot::from_json: unknown event kind \"" + kind + "\"", error);
      s.timeline.push_back(
          timeline_event{e.at("seconds").get<double>(),
                         kind == "allocate" ? event_kind::allocate : event_kind::free,
                         e.at("bytes").get<std::size_t>(), e.value("tag", ""),
                         e.at("outstanding_bytes").get<std::size_t>(),
                         e.value("upstream_bytes_reserved", std::size_t{0})});
    }
    return s;
  } catch (const json::exception& e) {
    FRUGAL_FAIL(std::string("snapshot::from_json: malformed snapshot: ") + e.what(), error);
  } catch (const std::logic_error& e) {  // std::stoull on a bad base
    FRUGAL_FAIL(std::string("snapshot::from_json: malformed base address: ") + e.what(), error);
  }
}

void snapshot::write_json(const std::filesystem::path& path, int indent) const {
  write_file(path, to_json(indent));
}

void snapshot::write_svg(const std::filesystem::path& path) const { write_file(path, to_svg()); }

// ---------------------------------------------------------------------------------------------
// Snapshots at an out-of-memory failure

std::string detail::oom_snapshot_directory(const std::string& option) {
  if (!option.empty()) return option;
  const char* from_environment = std::getenv("FRUGAL_OOM_SNAPSHOT");
  return from_environment != nullptr ? std::string(from_environment) : std::string();
}

std::string detail::write_oom_snapshot(const std::string& directory, const std::string& prefix,
                                       const resource_stats& stats,
                                       const std::vector<pool_segment_info>& segments,
                                       const oom_snapshot_extra* extra) noexcept {
  try {
    static std::atomic<unsigned> counter{0};
    std::string path = prefix;
    if (path.empty())
      path = (std::filesystem::path(directory) /
              ("frugal-oom-" + std::to_string(::getpid()) + "-" + std::to_string(++counter)))
                 .string();
    snapshot s;
    s.title = "frugal memory snapshot at an out-of-memory failure";
    s.stats = stats;
    std::unordered_map<std::uintptr_t, const std::string*> tags;
    if (extra != nullptr)
      for (const auto& [address, tag] : extra->tags) tags.emplace(address, &tag);
    for (const pool_segment_info& info : segments) {
      snapshot_segment& segment = s.segments.emplace_back();
      segment.base = reinterpret_cast<std::uintptr_t>(info.base);
      segment.size = info.size;
      for (const pool_block_info& b : info.blocks) {
        snapshot_block& block =
            segment.blocks.emplace_back(snapshot_block{b.offset, b.size, b.requested, b.free, {}});
        if (b.free) continue;
        auto it = tags.find(reinterpret_cast<std::uintptr_t>(b.address));
        if (it != tags.end()) block.tag = *it->second;
      }
    }
    if (extra != nullptr) {
      s.timeline = extra->timeline;
      s.dropped_events = extra->dropped_events;
      s.captured_at = extra->captured_at;
    }
    std::error_code ignored;
    std::filesystem::create_directories(directory, ignored);
    s.write_json(path + ".json");
    s.write_svg(path + ".svg");
    oom_snapshot_state& state = oom_snapshots();
    ++state.written;
    state.last = path;
    return "; memory snapshot: " + path + ".json and .svg";
  } catch (const std::exception& e) {
    try {
      return std::string("; no memory snapshot (") + e.what() + ")";
    } catch (...) {
      return {};
    }
  }
}

}  // namespace frugal
