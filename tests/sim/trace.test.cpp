#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/logging_adaptor.hpp>
#include <frugal/sim/trace.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

using namespace frugal::sim;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;
constexpr std::size_t gib = std::size_t{1} << 30;

trace parse(const std::string& text, std::string name = "t.csv") {
  std::istringstream in(text);
  return parse_rmm_log(in, std::move(name));
}

/// The message of the frugal::error that parsing `text` throws ("" when it parses).
std::string parse_error(const std::string& text) {
  try {
    (void)parse(text);
  } catch (const frugal::error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

const std::string header = "Thread,Time,Action,Pointer,Size,Stream\n";

trace_event alloc(std::uint64_t p, std::size_t n) {
  return {trace_action::allocate, p, n, 1, 0, 0, 0};
}
trace_event release(std::uint64_t p, std::size_t n) {
  return {trace_action::free, p, n, 1, 0, 0, 0};
}

}  // namespace

TEST_CASE("parse_rmm_log reads RMM's CSV", "[sim][trace]") {
  const trace t = parse(header +
                        "140213,1634567890.123456,allocate,0x7f3a40000000,256,0x0\n"
                        "140213,1634567890.123502,allocate failure,0x0,1099511627776,0x0\r\n"
                        "\n"
                        " 7 , 09:15:26.5 , free , 0x7f3a40000000 , 256 , 12\n"
                        "7,1.5,allocate,4096,1,0xff");  // no final newline; decimal pointer
  REQUIRE(t.events.size() == 4);
  CHECK(t.source == "t.csv");
  CHECK(t.allocations == 2);
  CHECK(t.frees == 1);
  CHECK(t.logged_failures == 1);
  const trace_event& a = t.events[0];
  CHECK(a.action == trace_action::allocate);
  CHECK(a.thread == 140213);
  CHECK(a.time == Approx(1634567890.123456));
  CHECK(a.pointer == 0x7f3a40000000);
  CHECK(a.size == 256);
  CHECK(a.stream == 0);
  CHECK(a.line == 2);
  CHECK(t.events[1].action == trace_action::allocate_failure);
  CHECK(t.events[1].size == (std::size_t{1} << 40));
  CHECK(t.events[2].action == trace_action::free);
  CHECK(t.events[2].time == Approx(9 * 3600 + 15 * 60 + 26.5));
  CHECK(t.events[2].stream == 12);
  CHECK(t.events[2].line == 5);
  CHECK(t.events[3].pointer == 4096);
  CHECK(t.events[3].stream == 0xff);
}

TEST_CASE("parse_rmm_log reads what logging_adaptor writes, and write_rmm_log round-trips",
          "[sim][trace]") {
  std::ostringstream log;
  {
    frugal::logging_adaptor logged{frugal::host_resource{}, log};
    void* a = logged.allocate(1000);
    void* b = logged.allocate(3 * mib);
    logged.deallocate(a, 1000);
    logged.deallocate(b, 3 * mib);
  }
  const trace t = parse(log.str());
  REQUIRE(t.events.size() == 4);
  CHECK(t.events[0].size == 1000);
  CHECK(t.events[2].pointer == t.events[0].pointer);
  CHECK(t.events[3].action == trace_action::free);

  std::ostringstream again;
  write_rmm_log(again, t.events);
  const trace u = parse(again.str());
  REQUIRE(u.events.size() == t.events.size());
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    CHECK(u.events[i].pointer == t.events[i].pointer);
    CHECK(u.events[i].size == t.events[i].size);
    CHECK(u.events[i].action == t.events[i].action);
    CHECK(u.events[i].time == Approx(t.events[i].time));
  }
}

TEST_CASE("parse_rmm_log names the line and the problem of bad input", "[sim][trace]") {
  CHECK(contains(parse_error(""), "t.csv:1: empty trace"));
  CHECK(contains(parse_error("Thread,Time,Action,Pointer,Size\n"), "t.csv:1: wrong header"));
  CHECK(contains(parse_error("thread,time,action,pointer,size,stream\n"), "wrong header"));
  const std::string row = "1,2.0,allocate,0x10,256,0x0\n";
  CHECK(contains(parse_error(header + row + "1,2.0,allocate,0x10\n"),
                 "t.csv:3: malformed row: expected 6 fields"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0x10,256,0x0,extra\n"), "got 7"));
  CHECK(contains(parse_error(header + "1,2.0,alloc,0x10,256,0x0\n"), "t.csv:2: unknown action"));
  CHECK(contains(parse_error(header + "x,2.0,allocate,0x10,256,0x0\n"), "bad Thread"));
  CHECK(contains(parse_error(header + "1,soon,allocate,0x10,256,0x0\n"), "bad Time"));
  CHECK(contains(parse_error(header + "1,25:00:00,allocate,0x10,256,0x0\n"), "bad Time"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0xZZ,256,0x0\n"), "bad Pointer"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0x10,-5,0x0\n"), "bad Size"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0x10,0x100,0x0\n"), "bad Size"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0x10,99999999999999999999999,0x0\n"),
                 "bad Size"));
  CHECK(contains(parse_error(header + "1,2.0,allocate,0x10,256,\n"), "bad Stream"));
  // A last line without its newline is called out as a possible truncation.
  CHECK(contains(parse_error(header + row + "1,2.0,allo"), "t.csv:3:"));
  CHECK(contains(parse_error(header + row + "1,2.0,allo"), "truncated?"));
}

TEST_CASE("parse_rmm_log survives a log truncated at every byte", "[sim][trace]") {
  const std::string text = header +
                           "140213,1634567890.123456,allocate,0x7f3a40000000,256,0x0\n"
                           "140213,1634567890.123502,allocate failure,0x0,4096,0x0\n"
                           "140213,1634567890.123602,free,0x7f3a40000000,256,0x0\n";
  std::size_t parsed = 0, refused = 0;
  for (std::size_t n = 0; n <= text.size(); ++n) {
    const std::string cut = text.substr(0, n);
    try {
      const trace t = parse(cut);
      ++parsed;
      CHECK(t.events.size() <= 3);
    } catch (const frugal::error& e) {
      ++refused;
      const std::string what = e.what();
      // Every error names a line of the input that exists.
      const std::size_t lines = 1 + std::count(cut.begin(), cut.end(), '\n');
      bool named = false;
      for (std::size_t l = 1; l <= lines; ++l)
        named = named || contains(what, "t.csv:" + std::to_string(l) + ":");
      CHECK(named);
    }
  }
  CHECK(parsed + refused == text.size() + 1);
  CHECK(refused > 0);
  CHECK(parsed > 0);
}

TEST_CASE("replay counts peaks, live bytes and warnings", "[sim][trace]") {
  std::vector<trace_event> events = {alloc(1, 10 * mib),
                                     alloc(2, 20 * mib),
                                     release(1, 10 * mib),
                                     alloc(3, 5 * mib),
                                     release(9, 64),       // unknown pointer
                                     release(3, 6 * mib),  // size mismatch
                                     alloc(2, 1 * mib),    // still live
                                     {trace_action::allocate_failure, 0, gib, 1, 0, 0, 0}};
  for (std::size_t i = 0; i < events.size(); ++i) events[i].line = i + 2;
  for (allocator_kind kind : {allocator_kind::pool, allocator_kind::arena,
                              allocator_kind::first_fit, allocator_kind::malloc}) {
    DYNAMIC_SECTION(to_string(kind)) {
      const replay_result r = replay(events, kind);
      CHECK(r.allocator == to_string(kind));
      CHECK(r.events == 7);
      CHECK(r.allocations == 4);
      CHECK(r.frees == 2);
      CHECK(r.peak_bytes_in_use == 30 * mib);
      CHECK(r.peak_bytes_reserved >= 30 * mib);
      CHECK(r.failed_allocations == 0);
      CHECK(r.live_bytes_at_end == 21 * mib);  // the older block of pointer 2 leaked, plus 1 MiB
      CHECK(r.live_allocations_at_end == 2);
      CHECK(r.logged_failures == 1);
      CHECK(r.unknown_frees == 1);
      CHECK(r.size_mismatches == 1);
      CHECK(r.duplicate_allocations == 1);
      CHECK(r.warnings == 3);
      REQUIRE(r.warning_messages.size() == 3);
      CHECK(contains(r.warning_messages[0], "line 6: free of 0x9"));
      CHECK(r.events_per_second > 0);
      REQUIRE_FALSE(r.timeline.empty());
      CHECK(r.timeline.back().event == events.size() - 1);
    }
  }
}

TEST_CASE("replay: malloc reserves what is in use; first-fit reserves its high-water offset",
          "[sim][trace]") {
  const std::vector<trace_event> events = {alloc(1, mib), alloc(2, mib), release(1, mib),
                                           alloc(3, 2 * mib)};
  const replay_result m = replay(events, allocator_kind::malloc);
  CHECK(m.peak_bytes_reserved == m.peak_bytes_in_use);
  CHECK(m.peak_bytes_in_use == 3 * mib);
  const replay_result f = replay(events, allocator_kind::first_fit);
  CHECK(f.peak_bytes_in_use == 3 * mib);
  CHECK(f.peak_bytes_reserved == 4 * mib);  // the 1 MiB hole could not take 2 MiB
  CHECK(f.bytes_reserved_at_end == 4 * mib);
}

TEST_CASE("replay under a cap counts refused allocations and skips their frees", "[sim][trace]") {
  const std::vector<trace_event> events = {alloc(1, 6 * mib),   alloc(2, 6 * mib),
                                           release(2, 6 * mib), release(1, 6 * mib),
                                           alloc(3, 8 * mib),   release(3, 8 * mib)};
  for (allocator_kind kind :
       {allocator_kind::pool, allocator_kind::first_fit, allocator_kind::malloc}) {
    DYNAMIC_SECTION(to_string(kind)) {
      const replay_result r = replay(events, kind, 10 * mib);
      CHECK(r.cap == 10 * mib);
      CHECK(r.failed_allocations == 1);
      CHECK(r.failed_bytes == 6 * mib);
      CHECK(r.first_failure_event == 1);
      CHECK(r.warnings == 0);  // the free of the refused pointer is not a warning
      CHECK(r.frees == 2);
      CHECK(r.peak_bytes_in_use == 8 * mib);
      CHECK(r.peak_bytes_reserved <= 10 * mib);
      CHECK(r.live_bytes_at_end == 0);
    }
  }
  // The arena reclaims only the most recent block: 6 MiB, then 8 MiB on top, passes 10 MiB.
  const std::vector<trace_event> stacked = {alloc(1, 6 * mib), alloc(2, mib), release(1, 6 * mib),
                                            alloc(3, 6 * mib)};
  const replay_result a = replay(stacked, allocator_kind::arena, 10 * mib);
  CHECK(a.failed_allocations == 1);
  const replay_result p = replay(stacked, allocator_kind::pool, 10 * mib);
  CHECK(p.failed_allocations == 0);
}

TEST_CASE("replay rejects what it cannot do", "[sim][trace]") {
  const std::vector<trace_event> events = {alloc(1, 256)};
  CHECK_THROWS_AS(replay(events, allocator_kind::cuda), frugal::invalid_argument);
  CHECK_THROWS_AS(replay(events, allocator_kind::pool, 0), frugal::invalid_argument);
  CHECK(parse_allocator_kind("first-fit") == allocator_kind::first_fit);
  CHECK(parse_allocator_kind("first_fit") == allocator_kind::first_fit);
  CHECK_THROWS_WITH(parse_allocator_kind("tlsf"), Catch::Contains("known: pool, arena"));
  const replay_result empty = replay({}, allocator_kind::pool);
  CHECK(empty.events == 0);
  CHECK(empty.timeline.empty());
}

TEST_CASE("replay timeline keeps the peaks of every bucket", "[sim][trace]") {
  std::vector<trace_event> events;
  for (std::uint64_t i = 1; i <= 1000; ++i) {
    events.push_back(alloc(i, i * 1024));
    events.push_back(release(i, i * 1024));
  }
  replay_options o;
  o.timeline_points = 10;
  const replay_result r = replay(events, allocator_kind::malloc, no_cap, o);
  REQUIRE(r.timeline.size() == 10);
  CHECK(r.timeline.back().event == 1999);
  CHECK(r.timeline.back().bytes_in_use == 1000 * 1024);
  std::size_t peak = 0;
  for (const auto& s : r.timeline) peak = std::max(peak, s.bytes_in_use);
  CHECK(peak == r.peak_bytes_in_use);
}

TEST_CASE("serving_trace is deterministic, balanced and within its budget", "[sim][trace]") {
  serving_trace_options o;
  o.gpu_memory = 24 * gib;
  o.steps = 150;
  const auto a = serving_trace(o);
  const auto b = serving_trace(o);
  CHECK(a == b);
  o.seed = 2;
  CHECK(serving_trace(o) != a);
  CHECK(a.size() > 150 * 4 * o.layers);

  std::unordered_map<std::uint64_t, std::size_t> live;
  std::size_t in_use = 0, peak = 0;
  for (const trace_event& e : a) {
    if (e.action == trace_action::allocate) {
      REQUIRE(live.emplace(e.pointer, e.size).second);
      in_use += e.size;
      peak = std::max(peak, in_use);
    } else {
      REQUIRE(live.count(e.pointer) == 1);
      REQUIRE(live[e.pointer] == e.size);
      in_use -= e.size;
      live.erase(e.pointer);
    }
  }
  CHECK(peak <= static_cast<std::size_t>(o.target_utilization * double(o.gpu_memory)));
  CHECK(in_use > 0);  // the weights stay live
  const replay_result r = replay(a, allocator_kind::pool);
  CHECK(r.warnings == 0);
  CHECK(r.live_bytes_at_end == in_use);

  o.target_utilization = 0.15;  // below the weights' share (sizes scale with gpu_memory)
  CHECK_THROWS_WITH(serving_trace(o), Catch::Contains("too small"));
  o.target_utilization = 1.5;
  CHECK_THROWS_AS(serving_trace(o), frugal::invalid_argument);
  o.target_utilization = 0.9;
  o.gpu_memory = 0;
  CHECK_THROWS_AS(serving_trace(o), frugal::invalid_argument);
  o.gpu_memory = 24 * gib;
  // Fixed lengths are exact: a request beyond max_len is refused, not clipped.
  o.lengths = {.kind = frugal::sim::workload::fixed, .max_len = 600};
  CHECK_THROWS_WITH(serving_trace(o),
                    Catch::Contains("fixed lengths 512 + 128 exceed max_len 600"));
  o.lengths.max_len = 640;
  CHECK(serving_trace(o).size() > 150 * 4 * o.layers);
  o.lengths = {.sigma = 0};
  CHECK_THROWS_AS(serving_trace(o), frugal::invalid_argument);
}

TEST_CASE("serving_trace draws its lengths from the workload", "[sim][trace]") {
  serving_trace_options o;
  o.gpu_memory = 24 * gib;
  o.steps = 100;
  const auto sharegpt = serving_trace(o);
  o.lengths.kind = frugal::sim::workload::alpaca;
  const auto alpaca = serving_trace(o);
  o.lengths.kind = frugal::sim::workload::fixed;
  const auto fixed = serving_trace(o);
  CHECK(sharegpt != alpaca);
  CHECK(alpaca != fixed);
  // Per request, a state of (prompt + output) x 4 + 256 bytes is allocated, scaled with the
  // device; fixed requests all have the same one.
  const auto count_sizes = [](const std::vector<trace_event>& events) {
    std::unordered_map<std::size_t, std::size_t> sizes;
    for (const trace_event& e : events)
      if (e.action == trace_action::allocate) ++sizes[e.size];
    return sizes.size();
  };
  CHECK(count_sizes(fixed) < count_sizes(sharegpt));
}

TEST_CASE("serving_trace fragments first-fit at the budget more than frugal's pool",
          "[sim][trace]") {
  serving_trace_options o;  // 80 GiB, the default steps
  const auto events = serving_trace(o);
  CHECK(events.size() > 100000);
  CHECK(events.size() < 300000);
  const replay_result naive = replay(events, allocator_kind::first_fit, o.gpu_memory);
  const replay_result pool = replay(events, allocator_kind::pool, o.gpu_memory);
  const replay_result uncapped = replay(events, allocator_kind::first_fit);
  CHECK(naive.peak_bytes_in_use <= o.gpu_memory * 9 / 10);
  CHECK(naive.failed_allocations > 0);
  CHECK(pool.failed_allocations < naive.failed_allocations);
  // Without a cap, first-fit spreads over more than the device holds.
  CHECK(uncapped.peak_bytes_reserved > o.gpu_memory);
  CHECK(uncapped.peak_bytes_reserved > uncapped.peak_bytes_in_use * 11 / 10);
}
