// Behavioural tests of failure_callback_adaptor: on out_of_memory the callback runs once and at
// most one retry follows. The conformance suite covers what every resource must do; these cover
// what the adaptor adds, and every bad-input rule.
#include "mr/adaptor_helpers.hpp"

#include <frugal/mr/failure_callback_adaptor.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

using frugal::host_resource;
using frugal::testing::bad_alignments;
using frugal::testing::counting_resource;

TEST_CASE("failure_callback_adaptor: the callback frees memory and the one retry succeeds") {
  counting_resource upstream;
  upstream.capacity = 1024;
  void* cache = upstream.allocate(1000);  // something the callback can evict
  std::vector<std::size_t> calls;
  frugal::failure_callback_adaptor adaptor{frugal::ref(upstream), [&](std::size_t bytes) {
                                             calls.push_back(bytes);
                                             if (cache == nullptr) return false;
                                             upstream.deallocate(cache, 1000);
                                             cache = nullptr;
                                             return true;
                                           }};
  void* p = adaptor.allocate(512);
  REQUIRE(p != nullptr);
  CHECK(calls == std::vector<std::size_t>{512});
  CHECK(upstream.allocate_calls == 3);  // the cache, the failure, the retry

  void* q = adaptor.allocate(256);  // fits: no callback
  CHECK(calls.size() == 1);
  adaptor.deallocate(q, 256);
  adaptor.deallocate(p, 512);
  adaptor.deallocate(nullptr, 0);
  CHECK(upstream.in_use == 0);
}

TEST_CASE("failure_callback_adaptor: a failed retry or a refusing callback propagates the error") {
  counting_resource upstream;
  upstream.capacity = 100;
  int calls = 0;
  bool answer = true;
  frugal::failure_callback_adaptor adaptor{frugal::ref(upstream), [&](std::size_t bytes) {
                                             ++calls;
                                             CHECK(bytes == 200);
                                             return answer;  // frees nothing
                                           }};
  SECTION("callback says retry; the retry fails too") {
    try {
      (void)adaptor.allocate(200);
      FAIL("allocation succeeded");
    } catch (const frugal::out_of_memory& e) {
      CHECK(e.requested_bytes() == 200);
      CHECK_THAT(std::string(e.what()), Catch::Contains("counting_resource"));
    }
    CHECK(calls == 1);                    // once, not in a loop
    CHECK(upstream.allocate_calls == 2);  // the failure and one retry
    CHECK(adaptor.try_allocate(200) == nullptr);
    CHECK(calls == 2);
    CHECK(upstream.allocate_calls == 4);
  }
  SECTION("callback says give up") {
    answer = false;
    CHECK_THROWS_AS(adaptor.allocate(200), frugal::out_of_memory);
    CHECK(calls == 1);
    CHECK(upstream.allocate_calls == 1);  // no retry
    CHECK(adaptor.try_allocate(200) == nullptr);
    CHECK(calls == 2);
    CHECK(upstream.allocate_calls == 2);
  }
  CHECK(upstream.in_use == 0);
}

TEST_CASE("failure_callback_adaptor::try_allocate retries once without throwing") {
  counting_resource upstream;
  upstream.capacity = 1024;
  void* cache = upstream.allocate(1000);
  int calls = 0;
  frugal::failure_callback_adaptor adaptor{frugal::ref(upstream), [&](std::size_t) {
                                             ++calls;
                                             upstream.deallocate(cache, 1000);
                                             return true;
                                           }};
  void* p = adaptor.try_allocate(512, 64);
  REQUIRE(p != nullptr);
  CHECK(calls == 1);
  adaptor.deallocate(p, 512, 64);

  frugal::failure_callback_adaptor throwing{frugal::ref(upstream), [](std::size_t) -> bool {
                                              throw std::runtime_error("callback failed");
                                            }};
  upstream.capacity = 0;
  CHECK(throwing.try_allocate(8) == nullptr);  // a throwing callback counts as "no"
  CHECK_THROWS_AS(throwing.allocate(8), std::runtime_error);
}

TEST_CASE("failure_callback_adaptor: bad input never reaches the callback") {
  counting_resource upstream;
  int calls = 0;
  frugal::failure_callback_adaptor adaptor{frugal::ref(upstream), [&](std::size_t) {
                                             ++calls;
                                             return true;
                                           }};
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(adaptor.allocate(64, alignment), frugal::invalid_argument);
    CHECK(adaptor.try_allocate(64, alignment) == nullptr);
  }
  CHECK(adaptor.allocate(0) == nullptr);
  CHECK(calls == 0);
  CHECK(upstream.allocate_calls == 0);

  CHECK_THROWS_AS(frugal::failure_callback_adaptor<host_resource>(host_resource{}, nullptr),
                  frugal::invalid_argument);
}
