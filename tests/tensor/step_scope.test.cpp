#include "mr/test_resources.hpp"

#include <frugal/mr/arena.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/tensor/step_scope.hpp>

#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <random>

using frugal::make_tensor;
using frugal::step_scope;

TEST_CASE("step_scope: a 10,000-step loop returns to the pre-loop bytes after every step") {
  frugal::testing::budget_resource upstream;
  constexpr std::size_t chunk = 1 << 20;
  frugal::arena_resource arena{frugal::ref(upstream), {.chunk_size = chunk}};
  auto weights = make_tensor<float>(arena, 1000);  // lives across steps: allocated before them
  const std::size_t before = arena.bytes_in_use();
  std::mt19937_64 rng(3);
  std::size_t largest_step = 0;
  for (int step = 0; step < 10000; ++step) {
    {
      step_scope scope{arena};
      const int layers = 1 + static_cast<int>(rng() % 32);
      for (int layer = 0; layer < layers; ++layer) {
        auto activation = make_tensor<float>(scope, 1 + rng() % 2048, 16);
        auto residual = make_tensor<std::uint16_t>(scope, 1 + rng() % 4096);
        activation.view()(0, 0) = 1.0f;  // host memory: writable
      }
      largest_step = std::max(largest_step, scope.bytes_in_use());
      CHECK(scope.bytes_in_use() > 0);
    }
    REQUIRE(arena.bytes_in_use() == before);
  }
  CHECK(arena.high_water_mark() >= before + largest_step);
  // Capacity follows real demand: no more than one step's peak plus one chunk.
  CHECK(arena.stats().bytes_reserved <= arena.high_water_mark() + chunk);
  CHECK(weights.data()[0] == weights.data()[0]);
}

TEST_CASE("step_scope: scopes nest, and a scope is a resource in its own right") {
  frugal::arena_resource arena{frugal::host_resource{}};
  step_scope outer{arena};
  auto kept = make_tensor<double>(outer, 100);
  const std::size_t outer_bytes = outer.bytes_in_use();
  {
    step_scope inner{arena};
    void* raw = inner.allocate(4096);
    CHECK(raw != nullptr);
    auto t = make_tensor<double>(inner, 1000);
    CHECK(inner.bytes_in_use() >= 4096 + 8000);
  }
  CHECK(outer.bytes_in_use() == outer_bytes);
  kept.view()(99) = 1.0;
  STATIC_REQUIRE(frugal::resource_with<step_scope<decltype(arena)>, frugal::host_accessible>);
}

TEST_CASE("step_scope: a tensor made from another resource outlives the step") {
  frugal::arena_resource arena{frugal::host_resource{}};
  frugal::pool_resource pool{frugal::host_resource{}};
  frugal::tensor<float> output;
  {
    step_scope scope{arena};
    auto scratch = make_tensor<float>(scope, 4096);
    output = make_tensor<float>(pool, 16);
    output.view()(3) = 42.0f;
  }
  CHECK(arena.bytes_in_use() == 0);
  CHECK(output.view()(3) == 42.0f);
}

#if FRUGAL_DEBUG_LEVEL >= 1
TEST_CASE("step_scope: using a tensor after its scope ended is caught by the debug check") {
  frugal::arena_resource arena{frugal::host_resource{}};
  frugal::tensor<float> escaped;
  {
    step_scope scope{arena};
    escaped = make_tensor<float>(scope, 16);
  }
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(STDERR_FILENO);     // the assertion message is expected
    float* p = escaped.data();  // aborts
    _exit(p == nullptr ? 2 : 3);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
}
#endif
