// Snapshots written at an out-of-memory failure: asked for by pool_options / tracking_options or
// by the environment variable FRUGAL_OOM_SNAPSHOT, written before the exception leaves.
#include "mr/test_resources.hpp"

#include <frugal/mr/pool.hpp>
#include <frugal/mr/snapshot.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using frugal::pool_resource;
using frugal::snapshot;
using frugal::tracking_adaptor;
using host_pool = pool_resource<frugal::host_resource>;

namespace {

constexpr std::size_t MiB = 1024 * 1024;

/// An empty directory removed at the end of the test.
struct scratch_directory {
  std::filesystem::path path;
  explicit scratch_directory(const char* name)
      : path(std::filesystem::temp_directory_path() /
             (std::string("frugal-") + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
  }
  ~scratch_directory() { std::filesystem::remove_all(path); }
  std::size_t count(const std::string& extension) const {
    if (!std::filesystem::exists(path)) return 0;
    std::size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(path))
      n += entry.path().extension() == extension ? 1 : 0;
    return n;
  }
  std::filesystem::path only(const std::string& extension) const {
    for (const auto& entry : std::filesystem::directory_iterator(path))
      if (entry.path().extension() == extension) return entry.path();
    return {};
  }
};

/// Sets FRUGAL_OOM_SNAPSHOT for the lifetime of the object.
struct snapshot_environment {
  explicit snapshot_environment(const std::filesystem::path& directory) {
    ::setenv("FRUGAL_OOM_SNAPSHOT", directory.c_str(), 1);
  }
  ~snapshot_environment() { ::unsetenv("FRUGAL_OOM_SNAPSHOT"); }
};

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The message of the out_of_memory that allocate(bytes) throws.
template <class R>
std::string failure(R& r, std::size_t bytes) {
  try {
    (void)r.allocate(bytes);
  } catch (const frugal::out_of_memory& e) {
    return e.what();
  }
  FAIL("the allocation did not fail");
  return {};
}

}  // namespace

TEST_CASE("oom snapshot: the pool option writes JSON and SVG before the exception leaves") {
  scratch_directory directory("oom-option");
  host_pool pool{
      frugal::host_resource{},
      {.initial_size = 2 * MiB, .max_size = 2 * MiB, .oom_snapshot_dir = directory.path.string()}};
  void* keep = pool.allocate(MiB + 1000);
  const std::string what = failure(pool, MiB);
  REQUIRE(directory.count(".json") == 1);
  REQUIRE(directory.count(".svg") == 1);
  const auto json = directory.only(".json");
  CHECK(what.find("memory snapshot: " + json.string().substr(0, json.string().size() - 5) +
                  ".json and .svg") != std::string::npos);
  const snapshot s = snapshot::from_json(read(json));
  REQUIRE(s.segments.size() == 1);
  CHECK(s.segments[0].size == 2 * MiB);
  REQUIRE(s.segments[0].blocks.size() == 2);
  CHECK(s.segments[0].blocks[0].requested == MiB + 1000);
  CHECK(s.segments[0].blocks[1].free);
  CHECK(s.stats.bytes_in_use == MiB + 1000);
  CHECK(read(directory.only(".svg")).find("<svg") != std::string::npos);
  pool.deallocate(keep, MiB + 1000);
}

TEST_CASE("oom snapshot: FRUGAL_OOM_SNAPSHOT asks for it without changing code") {
  scratch_directory directory("oom-env");
  host_pool pool{frugal::host_resource{}, {.initial_size = MiB, .max_size = MiB}};
  // Unset: no snapshot, no note.
  CHECK(failure(pool, 2 * MiB).find("memory snapshot") == std::string::npos);
  CHECK(directory.count(".json") == 0);
  {
    snapshot_environment environment(directory.path);
    CHECK(failure(pool, 2 * MiB).find("memory snapshot: " + directory.path.string()) !=
          std::string::npos);
    CHECK(failure(pool, 3 * MiB).find("memory snapshot") != std::string::npos);
  }
  CHECK(directory.count(".json") == 2);  // one per failure
  CHECK(directory.count(".svg") == 2);
  CHECK(failure(pool, 2 * MiB).find("memory snapshot") == std::string::npos);
  CHECK(pool.stats().bytes_in_use == 0);
}

TEST_CASE("oom snapshot: a tracker over the pool rewrites the pool's snapshot with its tags") {
  scratch_directory directory("oom-tracker");
  snapshot_environment environment(directory.path);
  host_pool pool{frugal::host_resource{}, {.initial_size = 2 * MiB, .max_size = 2 * MiB}};
  tracking_adaptor<frugal::ref_t<host_pool>> tracker{frugal::ref(pool), {.record_timeline = true}};
  void* weights = tracker.allocate(MiB, 256, "weights");
  const std::string what = failure(tracker, 2 * MiB);
  CHECK(what.find("top tags: weights") != std::string::npos);
  REQUIRE(directory.count(".json") == 1);  // the pool's, rewritten: not a second file
  const std::string json_path = directory.only(".json").string();
  const std::string prefix = json_path.substr(0, json_path.size() - 5);
  const auto first = what.find("memory snapshot: " + prefix);
  CHECK(first != std::string::npos);
  CHECK(what.find("memory snapshot", first + 1) == std::string::npos);  // named once
  const snapshot s = snapshot::from_json(read(json_path));
  REQUIRE(s.segments.size() == 1);
  CHECK(s.segments[0].blocks[0].tag == "weights");
  CHECK(s.timeline.size() == 1);
  CHECK(read(directory.only(".svg")).find("weights") != std::string::npos);
  tracker.deallocate(weights, MiB);
}

TEST_CASE("oom snapshot: a tracker over another upstream writes the timeline") {
  scratch_directory directory("oom-tracker-budget");
  frugal::testing::budget_resource upstream(MiB);
  tracking_adaptor<frugal::ref_t<frugal::testing::budget_resource>> tracker{
      frugal::ref(upstream),
      {.record_timeline = true, .oom_snapshot_dir = directory.path.string()}};
  void* a = tracker.allocate(1000, 256, "a");
  const std::string what = failure(tracker, 2 * MiB);
  CHECK(what.find("memory snapshot: " + directory.path.string()) != std::string::npos);
  REQUIRE(directory.count(".json") == 1);
  const snapshot s = snapshot::from_json(read(directory.only(".json")));
  CHECK(s.segments.empty());  // no pool: nothing to draw but the timeline
  CHECK(s.timeline.size() == 1);
  CHECK(s.stats.bytes_in_use == 1000);
  tracker.deallocate(a, 1000);
}
