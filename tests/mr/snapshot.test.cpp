// Tests of frugal::snapshot (capture, JSON, SVG, files) and of what the tracking adaptor adds for
// it and for out-of-memory diagnostics: the timeline, leak naming and OOM messages with top tags.
#include "mr/test_resources.hpp"

#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/snapshot.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using frugal::event_kind;
using frugal::pool_resource;
using frugal::snapshot;
using frugal::tracking_adaptor;
using host_pool = pool_resource<frugal::host_resource>;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

/// A one-chunk pool laid out as: [0, 1024) used (1000 bytes, "weights"), [1024, 5120) free,
/// [5120, 5632) used (300 bytes, "kv <&\"'>"), [5632, 1 MiB) free.
struct known_pool {
  host_pool pool{frugal::host_resource{}, {.initial_size = MiB, .chunk_size = MiB}};
  tracking_adaptor<frugal::ref_t<host_pool>> tracker{frugal::ref(pool), {.record_timeline = true}};
  void* a = tracker.allocate(1000, 256, "weights");
  void* b = tracker.allocate(4096, 256, "scratch");
  void* c = tracker.allocate(300, 256, "kv <&\"'>");
  known_pool() { tracker.deallocate(b, 4096); }
  ~known_pool() {
    tracker.deallocate(a, 1000);
    tracker.deallocate(c, 300);
  }
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

/// A path in the temporary directory, removed at scope exit.
struct temp_file {
  std::filesystem::path path;
  explicit temp_file(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("frugal_test_" + std::to_string(::getpid()) + "_" + name)) {}
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

}  // namespace

TEST_CASE("snapshot::capture lists segments and blocks with offsets, sizes and tags") {
  known_pool k;
  const snapshot untagged = snapshot::capture(k.pool);
  CHECK(untagged.stats == k.pool.stats());
  CHECK(untagged.timeline.empty());
  REQUIRE(untagged.segments.size() == 1);
  const auto& segment = untagged.segments[0];
  CHECK(segment.base == reinterpret_cast<std::uintptr_t>(k.a));
  CHECK(segment.size == MiB);
  using block = frugal::snapshot_block;
  CHECK(segment.blocks == std::vector<block>{{0, 1024, 1000, false, ""},
                                             {1024, 4096, 0, true, ""},
                                             {5120, 512, 300, false, ""},
                                             {5632, MiB - 5632, 0, true, ""}});

  const snapshot tagged = snapshot::capture(k.pool, k.tracker);
  REQUIRE(tagged.segments.size() == 1);
  const auto& blocks = tagged.segments[0].blocks;
  REQUIRE(blocks.size() == 4);
  CHECK(blocks[0].tag == "weights");
  CHECK(blocks[1].tag.empty());  // free: the freed allocation's tag is gone
  CHECK(blocks[2].tag == "kv <&\"'>");
  CHECK(tagged.timeline == k.tracker.timeline());
  CHECK(tagged.timeline.size() == 4);
  CHECK(tagged.captured_at >= tagged.timeline.back().seconds);
  snapshot again = snapshot::capture(k.tracker);  // through the tracker's ref upstream
  CHECK(again.captured_at >= tagged.captured_at);
  again.captured_at = tagged.captured_at;
  CHECK(again == tagged);
}

TEST_CASE("snapshot::capture through a tracker that holds its pool") {
  tracking_adaptor<host_pool> tracker{
      std::in_place, {}, frugal::host_resource{}, frugal::pool_options{.chunk_size = MiB}};
  void* p = tracker.allocate(100, 256, "only");
  const snapshot s = snapshot::capture(tracker);
  REQUIRE(s.segments.size() == 1);
  CHECK(s.segments[0].blocks[0].tag == "only");
  CHECK(s.segments[0].blocks[0].requested == 100);
  CHECK(s.stats.bytes_in_use == 100);
  tracker.deallocate(p, 100);
}

TEST_CASE("snapshot JSON holds the documented fields and reads back") {
  known_pool k;
  snapshot s = snapshot::capture(k.pool, k.tracker);
  s.title = "test \"title\"";
  const auto root = nlohmann::json::parse(s.to_json());
  CHECK(root["format"] == "frugal.snapshot");
  CHECK(root["version"] == 1);
  CHECK(root["title"] == "test \"title\"");
  CHECK(root["stats"]["bytes_in_use"] == 1300);
  CHECK(root["stats"]["bytes_reserved"] == MiB);
  CHECK(root["stats"]["largest_free_block"] == MiB - 5632);
  CHECK(root["stats"]["allocations"] == 2);
  REQUIRE(root["segments"].size() == 1);
  const auto& segment = root["segments"][0];
  CHECK(segment["size"] == MiB);
  CHECK(segment["base"].get<std::string>().rfind("0x", 0) == 0);
  REQUIRE(segment["blocks"].size() == 4);
  CHECK(segment["blocks"][2]["offset"] == 5120);
  CHECK(segment["blocks"][2]["size"] == 512);
  CHECK(segment["blocks"][2]["requested"] == 300);
  CHECK(segment["blocks"][2]["free"] == false);
  CHECK(segment["blocks"][2]["tag"] == "kv <&\"'>");
  CHECK(segment["blocks"][3]["free"] == true);
  const auto& events = root["timeline"]["events"];
  REQUIRE(events.size() == 4);
  CHECK(events[1]["kind"] == "allocate");
  CHECK(events[1]["tag"] == "scratch");
  CHECK(events[3]["kind"] == "free");
  CHECK(events[3]["bytes"] == 4096);
  CHECK(events[3]["tag"] == "scratch");
  CHECK(events[3]["outstanding_bytes"] == 1300);
  CHECK(events[3]["upstream_bytes_reserved"] == MiB);
  CHECK(root["timeline"]["dropped_events"] == 0);

  CHECK(snapshot::from_json(s.to_json()) == s);
  CHECK(snapshot::from_json(s.to_json(-1)) == s);
}

TEST_CASE("snapshot::from_json refuses what it did not write") {
  const std::string good = snapshot{}.to_json();
  CHECK(snapshot::from_json(good) == snapshot{});
  for (const std::string& bad : {std::string("not json"), std::string("[1, 2]"),
                                 std::string(R"({"format": "other", "version": 1})"),
                                 std::string(R"({"format": "frugal.snapshot", "version": 2})"),
                                 std::string(R"({"format": "frugal.snapshot", "version": 1})")}) {
    INFO(bad);
    CHECK_THROWS_AS(snapshot::from_json(bad), frugal::error);
  }
  auto root = nlohmann::json::parse(good);
  root["timeline"]["events"] = nlohmann::json::array(
      {{{"seconds", 0}, {"kind", "grow"}, {"bytes", 1}, {"outstanding_bytes", 1}}});
  CHECK_THROWS_WITH(snapshot::from_json(root.dump()), Catch::Contains("unknown event kind"));
}

TEST_CASE("snapshot SVG: one rect per block, escaped text, well-formed, written to a file") {
  known_pool k;
  snapshot s = snapshot::capture(k.pool, k.tracker);
  s.title = "pool <1> & \"friends\"";
  const std::string svg = s.to_svg();
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.size() >= 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK(count(svg, "<rect class=\"block ") == 4);
  CHECK(count(svg, "<rect class=\"block used\"") == 2);
  CHECK(count(svg, "<rect class=\"block free\"") == 2);
  CHECK(svg.find("pool &lt;1&gt; &amp; &quot;friends&quot;") != std::string::npos);
  CHECK(svg.find("kv &lt;&amp;&quot;&apos;&gt;") != std::string::npos);
  CHECK(svg.find("kv <&") == std::string::npos);
  CHECK(svg.find("Bytes reserved and in use over time (4 events)") != std::string::npos);
  CHECK(svg.find("MiB") != std::string::npos);

  temp_file file("snapshot.svg");
  s.write_svg(file.path);
  CHECK(read_file(file.path) == svg);
  if (std::system("python3 -c pass >/dev/null 2>&1") == 0) {
    const std::string check =
        "python3 -c \"import sys, xml.dom.minidom; "
        "xml.dom.minidom.parse(sys.argv[1])\" '" +
        file.path.string() + "'";
    CHECK(std::system(check.c_str()) == 0);
  } else {
    WARN("python3 not found: the SVG's well-formedness is checked by ctest's example test only");
  }

  temp_file json_file("snapshot.json");
  s.write_json(json_file.path);
  CHECK(snapshot::from_json(read_file(json_file.path)) == s);
}

TEST_CASE("snapshot SVG of an empty snapshot, and of a timeline without reserved bytes") {
  const std::string empty = snapshot{}.to_svg();
  CHECK(count(empty, "<rect class=\"block ") == 0);
  CHECK(empty.find("over time") == std::string::npos);  // no timeline, no chart

  snapshot s;
  s.timeline = {{0.5, event_kind::allocate, 3 * MiB, "a", 3 * MiB, 0},
                {1.5, event_kind::free, 3 * MiB, "a", 0, 0}};
  s.dropped_events = 7;
  const std::string svg = s.to_svg();
  CHECK(svg.find("the upstream has no stats()") != std::string::npos);
  CHECK(svg.find("7 events not recorded") != std::string::npos);
  CHECK(svg.find("time since tracking began (s)") != std::string::npos);
}

TEST_CASE("snapshot: a file that cannot be written throws frugal::error") {
  const std::filesystem::path missing = "/nonexistent-frugal-dir/x/snapshot.svg";
  CHECK_THROWS_AS(snapshot{}.write_svg(missing), frugal::error);
  CHECK_THROWS_WITH(snapshot{}.write_json(missing), Catch::Contains("cannot write"));
}

TEST_CASE("a planted leak is named in the tracker's report with its tag and size") {
  host_pool pool{frugal::host_resource{}};
  tracking_adaptor tracker{frugal::ref(pool)};
  void* fine = tracker.allocate(4096, 256, "kv");
  void* leaked = tracker.allocate(12345, 256, "layer3.mlp.up");
  tracker.deallocate(fine, 4096);
  const std::string report = tracker.report();
  INFO(report);
  CHECK_THAT(report, Catch::Contains("1 outstanding allocation, 12345 bytes"));
  CHECK_THAT(report, Catch::Contains("layer3.mlp.up") && Catch::Contains("12345 (12.06 KiB)"));
  CHECK_THAT(report, !Catch::Contains("kv"));
  CHECK_THROWS_WITH(frugal::expect_no_outstanding(tracker, "after the step"),
                    Catch::Contains("after the step") && Catch::Contains("layer3.mlp.up"));
  tracker.deallocate(leaked, 12345);
}

TEST_CASE("an out-of-memory through a tracked pool names the numbers and the top tags") {
  tracking_adaptor<host_pool> tracker{std::in_place,
                                      {},
                                      frugal::host_resource{},
                                      frugal::pool_options{.chunk_size = MiB, .max_size = 2 * MiB}};
  std::vector<std::pair<void*, std::size_t>> live;
  live.emplace_back(tracker.allocate(700 * KiB, 256, "kv cache"), 700 * KiB);
  live.emplace_back(tracker.allocate(600 * KiB, 256, "kv cache"), 600 * KiB);
  live.emplace_back(tracker.allocate(300 * KiB, 256, "weights"), 300 * KiB);
  live.emplace_back(tracker.allocate(1000), 1000);
  const auto stats_before = tracker.upstream().stats();
  const auto records_before = tracker.outstanding();

  const std::size_t request = 1500 * KiB;
  try {
    (void)tracker.allocate(request, 256, "big");
    FAIL("expected out_of_memory");
  } catch (const frugal::out_of_memory& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.requested_bytes() == request);
    CHECK_THAT(what, Catch::StartsWith("out of memory: pool_resource could not allocate " +
                                       std::to_string(request) + " bytes (1.46 MiB)"));
    CHECK_THAT(what, Catch::Contains("in use " + frugal::format_bytes(stats_before.bytes_in_use)));
    CHECK_THAT(what, Catch::Contains("reserved 2.00 MiB"));
    CHECK_THAT(what, Catch::Contains("largest free block " +
                                     frugal::format_bytes(stats_before.largest_free_block)));
    CHECK_THAT(what, Catch::Contains("; top tags: kv cache 1.27 MiB (2), weights 300.00 KiB (1), "
                                     "(untagged) 1000 B (1)"));
    CHECK_THAT(e.state(), Catch::EndsWith("(untagged) 1000 B (1)"));
  }
  CHECK(tracker.upstream().stats() == stats_before);  // nothing changed
  CHECK(tracker.outstanding_count() == records_before.size());
  CHECK(tracker.try_allocate(request) == nullptr);

  for (int i = 0; i < 6; ++i)  // more than five tags: the rest are counted, not named
    live.emplace_back(tracker.allocate(1024, 256, "t" + std::to_string(i)), 1024);
  try {
    (void)tracker.allocate(request);
    FAIL("expected out_of_memory");
  } catch (const frugal::out_of_memory& e) {
    INFO(e.what());
    CHECK_THAT(e.state(), Catch::EndsWith("weights 300.00 KiB (1), t0 1.00 KiB (1), "
                                          "t1 1.00 KiB (1), t2 1.00 KiB (1), +4 more"));
  }
  for (auto [p, bytes] : live) tracker.deallocate(p, bytes);

  try {
    (void)tracker.allocate(3 * MiB);
    FAIL("expected out_of_memory");
  } catch (const frugal::out_of_memory& e) {
    CHECK_THAT(std::string(e.what()), Catch::EndsWith("; top tags: none"));
  }
}

TEST_CASE("an out-of-memory from an upstream without a state still gets the top tags") {
  frugal::testing::budget_resource budget{1000};
  tracking_adaptor tracker{frugal::ref(budget)};
  void* p = tracker.allocate(600, 256, "held");
  CHECK_THROWS_WITH(tracker.allocate(600),
                    Catch::StartsWith("out of memory: budget_resource could not allocate 600") &&
                        Catch::EndsWith("budget exhausted; top tags: held 600 B (1)"));
  tracker.deallocate(p, 600);
}
