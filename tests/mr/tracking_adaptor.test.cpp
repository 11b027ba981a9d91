// Behavioural tests of tracking_adaptor: its records, tags, reports, leak handler and misuse
// reports, and expect_no_outstanding. The conformance suite covers what every resource must do;
// these cover what the adaptor adds, and every bad-input rule.
#include "mr/adaptor_helpers.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using frugal::host_resource;
using frugal::testing::bad_alignments;
using frugal::testing::capture_misuse;
using frugal::testing::counting_resource;
using frugal::testing::hex;
using frugal::testing::lines_of;

TEST_CASE("tracking_adaptor records pointer, size, alignment, tag and order") {
  counting_resource upstream;
  frugal::tracking_adaptor tracker{frugal::ref(upstream)};
  void* a = tracker.allocate(100, 64, "weights");
  void* b = tracker.allocate(200);
  void* c = tracker.try_allocate(300, 512, "kv");
  REQUIRE(c != nullptr);
  CHECK(tracker.outstanding_count() == 3);
  CHECK(tracker.outstanding_bytes() == 600);

  const auto records = tracker.outstanding();
  REQUIRE(records.size() == 3);
  CHECK(records[0].pointer == a);
  CHECK(records[0].bytes == 100);
  CHECK(records[0].alignment == 64);
  CHECK(records[0].tag == "weights");
  CHECK(records[0].sequence == 0);
  CHECK(records[0].backtrace.empty());
  CHECK(records[1].pointer == b);
  CHECK(records[1].bytes == 200);
  CHECK(records[1].alignment == frugal::default_alignment);
  CHECK(records[1].tag.empty());
  CHECK(records[1].sequence == 1);
  CHECK(records[2].pointer == c);
  CHECK(records[2].tag == "kv");
  CHECK(records[2].sequence == 2);

  REQUIRE(tracker.find(b) != nullptr);
  CHECK(tracker.find(b)->bytes == 200);
  tracker.deallocate(b, 200);
  CHECK(tracker.find(b) == nullptr);
  CHECK(tracker.outstanding_count() == 2);
  CHECK(tracker.outstanding_bytes() == 400);
  CHECK(upstream.deallocate_calls == 1);

  void* d = tracker.allocate(1);
  CHECK(tracker.find(d)->sequence == 3);  // sequence numbers are never reused
  tracker.deallocate(a, 100, 64);
  tracker.deallocate(c, 300, 512);
  tracker.deallocate(d, 1);
  CHECK(tracker.outstanding_count() == 0);
  CHECK(tracker.outstanding_bytes() == 0);
  CHECK(upstream.in_use == 0);
}

TEST_CASE("tracking_adaptor: scoped_tag tags untagged allocations and nests") {
  frugal::tracking_adaptor<host_resource> tracker{host_resource{}};
  std::vector<std::pair<void*, std::size_t>> live;
  {
    frugal::scoped_tag outer{tracker, "outer"};
    live.emplace_back(tracker.allocate(10), 10);
    {
      frugal::scoped_tag inner{tracker, "inner"};
      live.emplace_back(tracker.allocate(20), 20);
      live.emplace_back(tracker.allocate(30, 256, "explicit"), 30);
      live.emplace_back(tracker.try_allocate(35), 35);
    }
    live.emplace_back(tracker.allocate(40), 40);
  }
  CHECK(tracker.default_tag().empty());
  live.emplace_back(tracker.allocate(50), 50);

  const auto records = tracker.outstanding();
  REQUIRE(records.size() == 6);
  CHECK(records[0].tag == "outer");
  CHECK(records[1].tag == "inner");
  CHECK(records[2].tag == "explicit");
  CHECK(records[3].tag == "inner");
  CHECK(records[4].tag == "outer");
  CHECK(records[5].tag.empty());
  for (auto [p, bytes] : live) tracker.deallocate(p, bytes);
  CHECK(tracker.outstanding_count() == 0);
}

TEST_CASE("tracking_adaptor::report groups by tag, largest first") {
  frugal::tracking_adaptor<host_resource> tracker{host_resource{}};
  CHECK(tracker.report() == "tracking_adaptor: no outstanding allocations\n");
  void* w1 = tracker.allocate(1000, 256, "weights");   // #0
  void* u = tracker.allocate(10);                      // #1
  void* kv = tracker.allocate(5000, 256, "kv cache");  // #2
  void* w2 = tracker.allocate(1000, 256, "weights");   // #3

  const std::string report = tracker.report();
  INFO(report);
  const auto lines = lines_of(report);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "tracking_adaptor: 4 outstanding allocations, 7010 bytes (6.85 KiB)");
  auto fields = [](const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string word; in >> word;) words.push_back(word);
    return words;
  };
  CHECK(fields(lines[1]) == std::vector<std::string>{"tag", "count", "bytes", "oldest"});
  CHECK(fields(lines[2]) ==
        std::vector<std::string>{"kv", "cache", "1", "5000", "(4.88", "KiB)", "#2"});
  CHECK(fields(lines[3]) ==
        std::vector<std::string>{"weights", "2", "2000", "(1.95", "KiB)", "#0"});
  CHECK(fields(lines[4]) == std::vector<std::string>{"(untagged)", "1", "10", "(10", "B)", "#1"});

  tracker.deallocate(w1, 1000);
  tracker.deallocate(u, 10);
  tracker.deallocate(kv, 5000);
  tracker.deallocate(w2, 1000);
}

TEST_CASE("tracking_adaptor captures backtraces only when asked, and symbolizes them") {
  frugal::tracking_adaptor<host_resource> plain{host_resource{}};
  void* p = plain.allocate(64);
  CHECK(plain.find(p)->backtrace.empty());
  CHECK_THAT(plain.report(), !Catch::Contains("backtraces"));
  plain.deallocate(p, 64);

  frugal::tracking_adaptor<host_resource> traced{
      host_resource{}, frugal::tracking_options{.capture_backtraces = true}};
  CHECK(traced.options().capture_backtraces);
  void* q = traced.allocate(64, 256, "traced");
  const auto& stack = traced.find(q)->backtrace;
  CHECK_FALSE(stack.empty());
  CHECK(stack.size() <= 32);
  const std::string report = traced.report();
  INFO(report);
  CHECK_THAT(report, Catch::Contains("backtraces of the oldest outstanding allocations:"));
  CHECK_THAT(report, Catch::Contains("#0 " + hex(q) + " 64 bytes (tag \"traced\")"));
  CHECK(lines_of(report).size() >= 4 + stack.size());  // summary, header, row, title, frames
  traced.deallocate(q, 64);
}

TEST_CASE("tracking_adaptor: unknown pointers and double frees are reported, not passed on") {
  capture_misuse capture;
  auto& reports = capture_misuse::reports();
  counting_resource upstream;
  frugal::tracking_adaptor tracker{frugal::ref(upstream)};
  void* keep = tracker.allocate(32);

  int not_ours = 0;
  tracker.deallocate(&not_ours, 4);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[0].pointer == &not_ours);
  CHECK(reports[0].bytes == 4);
  CHECK(std::string(reports[0].resource) == "tracking_adaptor");
  CHECK_THAT(reports[0].message, Catch::Contains("unknown pointer " + hex(&not_ours)));
  CHECK(upstream.deallocate_calls == 0);
  CHECK(tracker.outstanding_count() == 1);

  void* p = tracker.allocate(16);
  tracker.deallocate(p, 16);
  CHECK(upstream.deallocate_calls == 1);
  tracker.deallocate(p, 16);  // double free
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[1].pointer == p);
  CHECK_THAT(reports[1].message, Catch::Contains("already freed"));
  CHECK(upstream.deallocate_calls == 1);
  CHECK(tracker.outstanding_count() == 1);
  CHECK(tracker.outstanding_bytes() == 32);

  tracker.deallocate(nullptr, 0);  // not misuse
  CHECK(reports.size() == 2);
  tracker.deallocate(keep, 32);
}

TEST_CASE("tracking_adaptor: a size or alignment mismatch is reported and not passed on") {
  capture_misuse capture;
  auto& reports = capture_misuse::reports();
  counting_resource upstream;
  frugal::tracking_adaptor tracker{frugal::ref(upstream)};
  void* p = tracker.allocate(128, 64, "scratch");

  tracker.deallocate(p, 64, 64);
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == frugal::misuse_kind::size_mismatch);
  CHECK(reports[0].pointer == p);
  CHECK(reports[0].bytes == 64);
  CHECK_THAT(reports[0].message,
             Catch::Contains("allocated with 128 bytes") && Catch::Contains("scratch"));
  CHECK(upstream.deallocate_calls == 0);
  REQUIRE(tracker.find(p) != nullptr);
  CHECK(tracker.outstanding_bytes() == 128);

  tracker.deallocate(p, 128, 4096);
  REQUIRE(reports.size() == 2);
  CHECK(reports[1].kind == frugal::misuse_kind::other);
  CHECK_THAT(reports[1].message, Catch::Contains("alignment 4096"));
  CHECK(upstream.deallocate_calls == 0);
  CHECK(tracker.outstanding_count() == 1);

  tracker.deallocate(p, 128, 64);
  CHECK(reports.size() == 2);
  CHECK(upstream.deallocate_calls == 1);
  CHECK(tracker.outstanding_count() == 0);
}

TEST_CASE("tracking_adaptor: bad alignment, zero bytes and upstream failures record nothing") {
  counting_resource upstream;
  upstream.capacity = 1000;
  frugal::tracking_adaptor tracker{frugal::ref(upstream)};
  void* keep = tracker.allocate(900);
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(tracker.allocate(64, alignment), frugal::invalid_argument);
    CHECK_THROWS_AS(tracker.allocate(64, alignment, "tag"), frugal::invalid_argument);
    CHECK(tracker.try_allocate(64, alignment) == nullptr);
  }
  CHECK(tracker.allocate(0) == nullptr);
  CHECK(tracker.allocate(0, 256, "tag") == nullptr);
  CHECK(tracker.try_allocate(0) == nullptr);
  CHECK(upstream.allocate_calls == 1);

  CHECK_THROWS_AS(tracker.allocate(200), frugal::out_of_memory);
  CHECK(tracker.try_allocate(200, 256, "tag") == nullptr);
  CHECK(upstream.allocate_calls == 3);
  CHECK(tracker.outstanding_count() == 1);
  CHECK(tracker.outstanding_bytes() == 900);

  void* p = tracker.allocate(100);
  CHECK(tracker.find(p)->sequence == 1);  // failures take no sequence number
  tracker.deallocate(p, 100);
  tracker.deallocate(keep, 900);
}

TEST_CASE("tracking_adaptor reports leaks at destruction to the leak handler") {
  counting_resource upstream;
  std::vector<frugal::allocation_record> leaked;
  std::string leak_report;
  int calls = 0;
  {
    frugal::tracking_adaptor tracker{frugal::ref(upstream)};
    using tracker_type = decltype(tracker);
    auto previous = tracker.set_leak_handler([&](const tracker_type& t, std::string_view report) {
      ++calls;
      leaked = t.outstanding();
      leak_report = report;
    });
    CHECK_FALSE(static_cast<bool>(previous));  // the default
    void* freed = tracker.allocate(8);
    (void)tracker.allocate(100, 256, "forgotten");
    (void)tracker.allocate(50);
    tracker.deallocate(freed, 8);
  }
  CHECK(calls == 1);
  REQUIRE(leaked.size() == 2);
  CHECK_THAT(leak_report, Catch::Contains("2 outstanding allocations, 150 bytes"));
  CHECK_THAT(leak_report, Catch::Contains("forgotten"));
  CHECK_THAT(leak_report, Catch::Contains("(untagged)"));
  // The adaptor does not free leaks (their owners may still use them); the test does.
  CHECK(upstream.in_use == 150);
  for (const auto& record : leaked)
    upstream.deallocate(record.pointer, record.bytes, record.alignment);

  // No leaks, no call.
  {
    frugal::tracking_adaptor tracker{frugal::ref(upstream)};
    tracker.set_leak_handler([&](const auto&, std::string_view) { ++calls; });
    tracker.deallocate(tracker.allocate(10), 10);
  }
  CHECK(calls == 1);
}

TEST_CASE("tracking_adaptor moves its records with it") {
  counting_resource upstream;
  int leak_calls = 0;
  frugal::tracking_adaptor original{frugal::ref(upstream)};
  original.set_leak_handler([&](const auto&, std::string_view) { ++leak_calls; });
  void* p = original.allocate(64, 256, "moved");
  {
    frugal::tracking_adaptor moved{std::move(original)};
    CHECK(moved.outstanding_count() == 1);
    CHECK(moved.find(p)->tag == "moved");
    CHECK(original.outstanding_count() == 0);
    CHECK(original.outstanding_bytes() == 0);
    moved.deallocate(p, 64);
  }
  CHECK(leak_calls == 0);
  CHECK(upstream.in_use == 0);
}

TEST_CASE("expect_no_outstanding throws frugal::error naming what is outstanding") {
  frugal::tracking_adaptor<host_resource> tracker{host_resource{}};
  CHECK_NOTHROW(frugal::expect_no_outstanding(tracker, "empty"));
  void* p = tracker.allocate(4096, 256, "activations");
  CHECK_THROWS_AS(frugal::expect_no_outstanding(tracker, "after the step"), frugal::error);
  CHECK_THROWS_WITH(frugal::expect_no_outstanding(tracker, "after the step"),
                    Catch::StartsWith("after the step: ") &&
                        Catch::Contains("1 outstanding allocation, 4096 bytes") &&
                        Catch::Contains("activations"));
  tracker.deallocate(p, 4096);
  CHECK_NOTHROW(frugal::expect_no_outstanding(tracker, "after freeing"));
}

// ---- the timeline ------------------------------------------------------------------------------

namespace timeline {
using frugal::event_kind;
using frugal::tracking_adaptor;
using host_pool = frugal::pool_resource<frugal::host_resource>;
constexpr std::size_t MiB = 1024 * 1024;

TEST_CASE("tracking_adaptor timeline: off by default, recorded when asked, capped") {
  host_pool pool{frugal::host_resource{}, {.chunk_size = MiB}};
  {
    tracking_adaptor plain{frugal::ref(pool)};
    plain.deallocate(plain.allocate(64), 64);
    CHECK(plain.timeline().empty());
    CHECK(plain.dropped_events() == 0);
  }
  tracking_adaptor tracker{frugal::ref(pool), {.record_timeline = true, .max_events = 4}};
  void* a = tracker.allocate(1000, 256, "a");
  void* b = tracker.try_allocate(2000, 256, "b");
  REQUIRE(b != nullptr);
  CHECK(tracker.try_allocate(std::size_t{1} << 62) == nullptr);  // failures are not events
  tracker.deallocate(a, 1000);
  void* c = tracker.allocate(3000);
  tracker.deallocate(b, 2000);  // the fifth and sixth events are dropped
  tracker.deallocate(c, 3000);

  const auto& events = tracker.timeline();
  REQUIRE(events.size() == 4);
  CHECK(tracker.dropped_events() == 2);
  CHECK(events[0].kind == event_kind::allocate);
  CHECK(events[0].bytes == 1000);
  CHECK(events[0].tag == "a");
  CHECK(events[0].outstanding_bytes == 1000);
  CHECK(events[0].upstream_bytes_reserved == MiB);  // read through frugal::ref
  CHECK(events[1].outstanding_bytes == 3000);
  CHECK(events[2].kind == event_kind::free);
  CHECK(events[2].tag == "a");
  CHECK(events[2].outstanding_bytes == 2000);
  CHECK(events[3].tag.empty());
  for (std::size_t i = 1; i < events.size(); ++i) CHECK(events[i - 1].seconds <= events[i].seconds);
  CHECK(tracker.elapsed_seconds() >= events.back().seconds);

  tracking_adaptor moved{std::move(tracker)};
  CHECK(moved.timeline().size() == 4);
  CHECK(moved.dropped_events() == 2);
  CHECK(tracker.timeline().empty());  // NOLINT(bugprone-use-after-move): documented state
  moved.clear_timeline();
  CHECK(moved.timeline().empty());
  CHECK(moved.dropped_events() == 0);
}

TEST_CASE("tracking_adaptor timeline over an upstream without stats() records 0 reserved") {
  tracking_adaptor<frugal::host_resource> tracker{frugal::host_resource{},
                                                  {.record_timeline = true}};
  void* p = tracker.allocate(10);
  tracker.deallocate(p, 10);
  REQUIRE(tracker.timeline().size() == 2);
  CHECK(tracker.timeline()[0].upstream_bytes_reserved == 0);
  CHECK(tracker.timeline()[1].outstanding_bytes == 0);
}

}  // namespace timeline
