// Behavioural tests of logging_adaptor: the CSV it writes (RMM's format), to a stream or a file,
// from one thread or many. The conformance suite covers what every resource must do; these cover
// what the adaptor adds, and every bad-input rule.
#include "mr/adaptor_helpers.hpp"

#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/logging_adaptor.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

using frugal::host_resource;
using frugal::testing::bad_alignments;
using frugal::testing::counting_resource;
using frugal::testing::hex;
using frugal::testing::lines_of;

namespace {
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

struct log_line {
  std::string thread, time, action, pointer, size, stream;
};

// Parses the log, checking the header and the shape of every line.
std::vector<log_line> parse_log(const std::string& text) {
  const auto lines = lines_of(text);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines[0] == "Thread,Time,Action,Pointer,Size,Stream");
  static const std::regex number("[0-9]+");
  static const std::regex time("[0-9]+\\.[0-9]{6}");
  static const std::regex pointer("0x[0-9a-f]+");
  std::vector<log_line> parsed;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    INFO("line " << i << ": " << lines[i]);
    const auto fields = split(lines[i], ',');
    REQUIRE(fields.size() == 6);
    log_line line{fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]};
    CHECK(std::regex_match(line.thread, number));
    CHECK(std::regex_match(line.time, time));
    CHECK(
        (line.action == "allocate" || line.action == "free" || line.action == "allocate failure"));
    CHECK(std::regex_match(line.pointer, pointer));
    CHECK(std::regex_match(line.size, number));
    CHECK(line.stream == "0x0");
    parsed.push_back(line);
  }
  return parsed;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

TEST_CASE("logging_adaptor writes RMM's CSV: allocate, free, allocate failure") {
  counting_resource upstream;
  upstream.capacity = 4096;
  std::ostringstream out;
  const double start = now_seconds();
  frugal::logging_adaptor logged{frugal::ref(upstream), out};
  CHECK(out.str() == "Thread,Time,Action,Pointer,Size,Stream\n");

  void* a = logged.allocate(256);
  void* b = logged.allocate(1000, 64);
  logged.deallocate(a, 256);
  CHECK_THROWS_AS(logged.allocate(1 << 20), frugal::out_of_memory);  // logged, then rethrown
  CHECK(logged.try_allocate(1 << 20) == nullptr);
  void* c = logged.try_allocate(16);
  REQUIRE(c != nullptr);
  logged.deallocate(b, 1000, 64);
  logged.deallocate(c, 16);
  logged.flush();
  const double end = now_seconds();

  const auto lines = parse_log(out.str());
  REQUIRE(lines.size() == 8);
  const std::vector<std::tuple<std::string, std::string, std::string>> expected{
      {"allocate", hex(a), "256"},
      {"allocate", hex(b), "1000"},
      {"free", hex(a), "256"},
      {"allocate failure", "0x0", "1048576"},
      {"allocate failure", "0x0", "1048576"},
      {"allocate", hex(c), "16"},
      {"free", hex(b), "1000"},
      {"free", hex(c), "16"}};
  const std::string thread = lines[0].thread;
  double previous_time = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    INFO("line " << i + 1);
    CHECK(lines[i].action == std::get<0>(expected[i]));
    CHECK(lines[i].pointer == std::get<1>(expected[i]));
    CHECK(lines[i].size == std::get<2>(expected[i]));
    CHECK(lines[i].thread == thread);
    const double time = std::stod(lines[i].time);
    CHECK(time >= start - 1);
    CHECK(time <= end + 1);
    CHECK(time >= previous_time);
    previous_time = time;
  }
}

TEST_CASE("logging_adaptor: zero bytes, nullptr and bad alignment are not logged") {
  std::ostringstream out;
  frugal::logging_adaptor<host_resource> logged{host_resource{}, out};
  CHECK(logged.allocate(0) == nullptr);
  CHECK(logged.try_allocate(0) == nullptr);
  logged.deallocate(nullptr, 0);
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(logged.allocate(64, alignment), frugal::invalid_argument);
    CHECK(logged.try_allocate(64, alignment) == nullptr);
  }
  CHECK(out.str() == "Thread,Time,Action,Pointer,Size,Stream\n");
}

TEST_CASE("logging_adaptor logs to a file, and throws frugal::error if it cannot open one") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("frugal_logging_test_" +
                     std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())) +
                     "_" + std::to_string(now_seconds()) + ".csv");
  {
    frugal::logging_adaptor<host_resource> logged{host_resource{}, path.string()};
    void* p = logged.allocate(4096, 4096);
    logged.deallocate(p, 4096, 4096);
    logged.flush();
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const auto lines = parse_log(text.str());
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].action == "allocate");
    CHECK(lines[0].pointer == hex(p));
    CHECK(lines[0].size == "4096");
    CHECK(lines[1].action == "free");
  }
  std::filesystem::remove(path);

  const std::string bad_path = "/nonexistent-frugal-directory/log.csv";
  CHECK_THROWS_AS(frugal::logging_adaptor<host_resource>(host_resource{}, bad_path), frugal::error);
  CHECK_THROWS_WITH(frugal::logging_adaptor<host_resource>(host_resource{}, bad_path),
                    Catch::Contains(bad_path));
}

TEST_CASE("logging_adaptor: concurrent threads never interleave within a line") {
  std::ostringstream out;
  // host_resource is thread safe, so only the log needs the adaptor's lock.
  frugal::logging_adaptor<host_resource> logged{host_resource{}, out};
  constexpr int threads = 4;
  constexpr int rounds = 500;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&logged, t] {
      for (int i = 0; i < rounds; ++i) {
        const std::size_t bytes = 16 + static_cast<std::size_t>(t);
        logged.deallocate(logged.allocate(bytes), bytes);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const auto lines = parse_log(out.str());
  REQUIRE(lines.size() == 2 * threads * rounds);
  std::set<std::string> thread_ids;
  std::map<std::string, std::set<std::string>> sizes_by_thread;
  for (const auto& line : lines) {
    thread_ids.insert(line.thread);
    sizes_by_thread[line.thread].insert(line.size);
  }
  CHECK(thread_ids.size() == threads);
  for (const auto& [thread, sizes] : sizes_by_thread) CHECK(sizes.size() == 1);  // one size each
}

TEST_CASE("logging_adaptor equals only itself and moves its log with it") {
  std::ostringstream out;
  frugal::logging_adaptor<host_resource> a{host_resource{}, out};
  frugal::logging_adaptor<host_resource> b{host_resource{}, out};
  CHECK(a == a);
  CHECK(a != b);
  frugal::logging_adaptor moved{std::move(a)};
  moved.deallocate(moved.allocate(8), 8);
  CHECK(parse_log(out.str().substr(out.str().find('\n') + 1)).size() == 2);  // b's header first
}
