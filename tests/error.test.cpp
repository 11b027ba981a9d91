#include <frugal/error.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

TEST_CASE("FRUGAL_EXPECTS throws the named type with file:line and the message") {
  auto fails = [] { FRUGAL_EXPECTS(1 + 1 == 3, "arithmetic is broken", frugal::invalid_argument); };
  try {
    fails();
    FAIL("no exception");
  } catch (const frugal::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("error.test.cpp:") != std::string::npos);
    CHECK(what.find("arithmetic is broken") != std::string::npos);
  }
  CHECK_NOTHROW([] { FRUGAL_EXPECTS(true, "never", frugal::error); }());
}

TEST_CASE("error types derive from the standard ones") {
  CHECK_THROWS_AS(throw frugal::invalid_argument("x"), frugal::error);
  CHECK_THROWS_AS(throw frugal::cuda_error("x"), std::runtime_error);
  CHECK_THROWS_AS(throw frugal::out_of_memory(1, "s"), std::bad_alloc);
}

TEST_CASE("out_of_memory names the request and the state") {
  const frugal::out_of_memory oom(3u << 20, "in use 1.00 MiB, reserved 2.00 MiB", "pool_resource");
  const std::string what = oom.what();
  CHECK(oom.requested_bytes() == (3u << 20));
  CHECK(oom.state() == "in use 1.00 MiB, reserved 2.00 MiB");
  CHECK(what ==
        "out of memory: pool_resource could not allocate 3145728 bytes (3.00 MiB); "
        "in use 1.00 MiB, reserved 2.00 MiB");
}

TEST_CASE("out_of_memory names the resource that failed in who()") {
  const frugal::out_of_memory oom(64, "in use 0 B", "arena_resource");
  CHECK(oom.who() == "arena_resource");
  CHECK(frugal::out_of_memory(1, "s").who() == "frugal");
  try {
    FRUGAL_OUT_OF_MEMORY(128, "reserved 0 B", "block_resource");
    FAIL("no exception");
  } catch (const frugal::out_of_memory& e) {
    CHECK(e.who() == "block_resource");
    CHECK(e.requested_bytes() == 128);
    CHECK(e.state() == "reserved 0 B");
    CHECK(std::string(e.what()) ==
          "out of memory: block_resource could not allocate 128 bytes (128 B); reserved 0 B");
  }
}

TEST_CASE("FRUGAL_FAIL throws the named type with file:line and the message") {
  try {
    FRUGAL_FAIL("no such policy", frugal::invalid_argument);
  } catch (const frugal::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("error.test.cpp:") != std::string::npos);
    CHECK(what.ends_with(": no such policy"));
    return;
  }
  FAIL("no exception");
}

TEST_CASE("FRUGAL_FAIL_AT puts the caller's place first") {
  CHECK_THROWS_AS(FRUGAL_FAIL_AT("t.csv:3", "no size", frugal::error), frugal::error);
  try {
    FRUGAL_FAIL_AT("t.csv:3", "no size", frugal::error);
  } catch (const frugal::error& e) {
    CHECK(std::string(e.what()) == "t.csv:3: no size");
  }
}

TEST_CASE("format_bytes picks a binary unit") {
  CHECK(frugal::format_bytes(0) == "0 B");
  CHECK(frugal::format_bytes(1023) == "1023 B");
  CHECK(frugal::format_bytes(1024) == "1.00 KiB");
  CHECK(frugal::format_bytes(1536) == "1.50 KiB");
  CHECK(frugal::format_bytes(std::size_t{80} << 30) == "80.00 GiB");
}

namespace {
std::vector<frugal::misuse_report> g_reports;
void record(const frugal::misuse_report& r) noexcept { g_reports.push_back(r); }
}  // namespace

TEST_CASE("misuse reports reach the installed handler, which can be restored") {
  g_reports.clear();
  auto previous = frugal::set_misuse_handler(&record);
  int object = 0;
  frugal::detail::report_misuse(frugal::misuse_kind::double_free, "pool_resource", &object, 64,
                                "double free of a 64-byte block");
  REQUIRE(g_reports.size() == 1);
  CHECK(g_reports[0].kind == frugal::misuse_kind::double_free);
  CHECK(g_reports[0].pointer == &object);
  CHECK(g_reports[0].bytes == 64);
  CHECK(g_reports[0].message == "pool_resource: double free of a 64-byte block");
  CHECK(frugal::set_misuse_handler(previous) == &record);
}

TEST_CASE("the library reports its version") { CHECK(std::string(frugal::version()) == "0.1.0"); }

// FRUGAL_CUDA_TRY names the CUDA runtime's functions unqualified, so a stand-in for the runtime's
// error state shows what the macro does on a host without CUDA: it reports the failed call and
// clears the last error, so that the next `FRUGAL_CUDA_TRY(cudaGetLastError())` (after a
// successful launch) does not throw the same failure again.
namespace stand_in_cuda {

enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
cudaError_t last_error = cudaSuccess;  // what the runtime keeps per thread

cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : "cudaErrorMemoryAllocation";
}
const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "out of memory";
}
/// A call that fails the way cudaMallocAsync does when its pool is exhausted.
cudaError_t failing_allocation() {
  last_error = cudaErrorMemoryAllocation;
  return cudaErrorMemoryAllocation;
}
cudaError_t succeeding_call() { return cudaSuccess; }

TEST_CASE("FRUGAL_CUDA_TRY reports a failed call and clears the pending error") {
  last_error = cudaSuccess;
  try {
    FRUGAL_CUDA_TRY(failing_allocation());
    FAIL("no exception");
  } catch (const frugal::cuda_error& e) {
    const std::string what = e.what();
    CHECK(what.find("error.test.cpp:") != std::string::npos);
    CHECK(what.find("failing_allocation() failed: cudaErrorMemoryAllocation: out of memory") !=
          std::string::npos);
  }
  CHECK(last_error == cudaSuccess);
  // The check after the next launch sees no stale failure.
  CHECK_NOTHROW([] { FRUGAL_CUDA_TRY(cudaGetLastError()); }());
  // A successful call leaves a pending error alone (it is not the macro's to report).
  last_error = cudaErrorMemoryAllocation;
  CHECK_NOTHROW([] { FRUGAL_CUDA_TRY(succeeding_call()); }());
  CHECK(last_error == cudaErrorMemoryAllocation);
  CHECK_THROWS_AS([] { FRUGAL_CUDA_TRY(cudaGetLastError()); }(), frugal::cuda_error);
  CHECK(last_error == cudaSuccess);
}

}  // namespace stand_in_cuda
