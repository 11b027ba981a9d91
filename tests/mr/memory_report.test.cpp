// Tests of frugal::memory_report: the counters of any resource with stats(), fragmentation, and
// the tag table of a tracking adaptor, alone or over a pool.
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/memory_report.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

using frugal::memory_report;
using host_pool = frugal::pool_resource<frugal::host_resource>;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

/// The words of the report line that starts with `label` (after its indent), or {} if none.
std::vector<std::string> row(const std::string& report, const std::string& label) {
  std::istringstream in(report);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  " + label + " ", 0) != 0) continue;
    std::istringstream words(line.substr(2 + label.size()));
    std::vector<std::string> result;
    for (std::string word; words >> word;) result.push_back(word);
    return result;
  }
  return {};
}

}  // namespace

TEST_CASE("memory_report of a pool: counters, peaks, free bytes and fragmentation") {
  host_pool pool{frugal::host_resource{}, {.initial_size = MiB, .chunk_size = MiB}};
  void* a = pool.allocate(256 * KiB);
  void* b = pool.allocate(256 * KiB);
  void* c = pool.allocate(256 * KiB);
  pool.deallocate(b, 256 * KiB);  // free: b's 256 KiB hole and the 256 KiB tail

  const std::string report = memory_report(pool, "kv pool");
  INFO(report);
  CHECK_THAT(report, Catch::StartsWith("memory report: kv pool\n"));
  CHECK(row(report, "in use") == std::vector<std::string>{"512.00", "KiB", "524288", "bytes"});
  CHECK(row(report, "peak in use") == std::vector<std::string>{"768.00", "KiB", "786432", "bytes"});
  CHECK(row(report, "reserved") == std::vector<std::string>{"1.00", "MiB", "1048576", "bytes"});
  CHECK(row(report, "peak reserved") ==
        std::vector<std::string>{"1.00", "MiB", "1048576", "bytes"});
  CHECK(row(report, "free (reserved - in use)") ==
        std::vector<std::string>{"512.00", "KiB", "524288", "bytes"});
  CHECK(row(report, "largest free block") ==
        std::vector<std::string>{"256.00", "KiB", "262144", "bytes"});
  CHECK(row(report, "fragmentation") ==
        std::vector<std::string>{"50.0%", "1", "-", "largest", "free", "block", "/", "free"});
  CHECK(row(report, "live allocations") == std::vector<std::string>{"2"});
  CHECK_THAT(report, !Catch::Contains("tracking_adaptor"));

  CHECK(memory_report(frugal::ref(pool), "kv pool") == report);  // through a ref
  CHECK_THAT(memory_report(pool), Catch::StartsWith("memory report\n"));
  pool.deallocate(a, 256 * KiB);
  pool.deallocate(c, 256 * KiB);
  CHECK(row(memory_report(pool), "fragmentation")[0] == "0.0%");  // one free block: the chunk
}

TEST_CASE("memory_report of a resource without free bytes says fragmentation is n/a") {
  frugal::stats_adaptor counted{frugal::host_resource{}};
  void* p = counted.allocate(1000);
  const std::string report = memory_report(counted);
  INFO(report);
  CHECK(row(report, "in use") == std::vector<std::string>{"1000", "B", "1000", "bytes"});
  CHECK(row(report, "fragmentation") == std::vector<std::string>{"n/a", "no", "free", "bytes"});
  counted.deallocate(p, 1000);
}

TEST_CASE("memory_report of a tracker over a pool shows the pool's counters and the top tags") {
  host_pool pool{frugal::host_resource{}, {.chunk_size = MiB}};
  frugal::tracking_adaptor tracker{frugal::ref(pool)};
  std::vector<std::pair<void*, std::size_t>> live;
  live.emplace_back(tracker.allocate(300 * KiB, 256, "weights"), 300 * KiB);
  live.emplace_back(tracker.allocate(100 * KiB, 256, "kv"), 100 * KiB);
  live.emplace_back(tracker.allocate(150 * KiB, 256, "kv"), 150 * KiB);
  live.emplace_back(tracker.allocate(10), 10);

  const std::string report = memory_report(tracker, "serving");
  INFO(report);
  CHECK(row(report, "in use")[2] == std::to_string(550 * KiB + 10));
  CHECK(row(report, "reserved") == std::vector<std::string>{"1.00", "MiB", "1048576", "bytes"});
  CHECK(row(report, "live allocations") == std::vector<std::string>{"4"});
  CHECK_THAT(report, Catch::Contains("outstanding through tracking_adaptor: 4 allocations, " +
                                     std::to_string(550 * KiB + 10) + " bytes (550.01 KiB)\n"));
  // The tag table of report(), largest first.
  const auto table_at = report.find("tag ");
  REQUIRE(table_at != std::string::npos);
  const std::string table = report.substr(table_at);
  const auto weights = table.find("weights"), kv = table.find("kv "),
             untagged = table.find("(untagged)");
  CHECK(weights < kv);
  CHECK(kv < untagged);
  CHECK_THAT(table, Catch::Contains("307200 (300.00 KiB)"));
  CHECK_THAT(table, Catch::Contains("256000 (250.00 KiB)"));

  // With fewer rows than tags, the rest are summed into one row.
  const std::string short_report = memory_report(tracker, "serving", 1);
  INFO(short_report);
  CHECK_THAT(short_report, Catch::Contains("weights"));
  CHECK_THAT(short_report, !Catch::Contains("kv "));
  CHECK_THAT(short_report,
             Catch::Contains("(2 more tags)") && Catch::Contains("256010 (250.01 KiB)       #1"));

  for (auto [p, bytes] : live) tracker.deallocate(p, bytes);
  const std::string empty = memory_report(tracker);
  CHECK_THAT(empty,
             Catch::Contains("outstanding through tracking_adaptor: 0 allocations, 0 bytes"));
  CHECK_THAT(empty, !Catch::Contains("count"));
}

TEST_CASE("memory_report of a tracker over an upstream without stats() shows the tags only") {
  frugal::tracking_adaptor<frugal::host_resource> tracker{frugal::host_resource{}};
  void* p = tracker.allocate(64, 256, "solo");
  const std::string report = memory_report(tracker);
  INFO(report);
  CHECK(row(report, "reserved").empty());
  CHECK_THAT(report, Catch::Contains("1 allocation, 64 bytes (64 B)"));
  CHECK_THAT(report, Catch::Contains("solo"));
  tracker.deallocate(p, 64);
}
