#include <frugal/batch/workspace.hpp>
#include <frugal/tensor/tensor.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <random>
#include <string>

using frugal::batch::workspace;

namespace {

/// Host memory that counts the bytes it holds, its peak and its calls, and refuses past a limit.
struct counting_upstream {
  std::size_t limit = std::numeric_limits<std::size_t>::max();
  std::size_t in_use = 0;
  std::size_t peak = 0;
  int allocations = 0;
  int deallocations = 0;
  frugal::host_resource host;

  void* allocate(std::size_t bytes, std::size_t alignment = frugal::default_alignment) {
    if (bytes > limit - in_use)
      throw frugal::out_of_memory(bytes, "limit " + std::to_string(limit), "counting_upstream");
    void* p = host.allocate(bytes, alignment);
    in_use += bytes;
    peak = std::max(peak, in_use);
    ++allocations;
    return p;
  }
  void deallocate(void* p, std::size_t bytes,
                  std::size_t alignment = frugal::default_alignment) noexcept {
    in_use -= bytes;
    ++deallocations;
    host.deallocate(p, bytes, alignment);
  }
  friend bool operator==(const counting_upstream& a, const counting_upstream& b) noexcept {
    return &a == &b;
  }
  friend void get_property(const counting_upstream&, frugal::host_accessible) noexcept {}
};

constexpr std::size_t kib = 1024;

/// One step of `tokens` tokens that allocates exactly what it prepared.
void run_step(workspace& ws, std::size_t tokens) {
  ws.begin_step(tokens);
  if (tokens > 0) ws.allocate(ws.bytes_for(tokens));
  ws.end_step();
}

}  // namespace

TEST_CASE("workspace: grows to the step's tokens, one chunk, the old one returned first") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 1000, .shrink_after_steps = 3, .granularity = 4 * kib}};
  CHECK(ws.capacity() == 0);
  CHECK(up.in_use == 0);

  // 10 tokens: 10,000 bytes, rounded up to 12 KiB.
  CHECK(ws.begin_step(10) == 12 * kib);
  void* a = ws.allocate(6000);
  void* b = ws.allocate(4000, 64);
  CHECK(a != nullptr);
  CHECK(b != nullptr);
  CHECK(ws.bytes_in_use() >= 10000);
  ws.end_step();
  CHECK(ws.bytes_in_use() == 0);
  CHECK(up.in_use == 12 * kib);
  auto st = ws.stats();
  CHECK(st.bytes_reserved == 12 * kib);
  CHECK(st.high_water_mark == 12 * kib);
  CHECK(st.peak_bytes_in_use >= 10000);
  CHECK(st.grows == 1);
  CHECK(st.steps == 1);

  // A smaller step reuses the chunk: no upstream call.
  const int calls = up.allocations;
  CHECK(ws.begin_step(5) == 12 * kib);
  ws.end_step();
  CHECK(up.allocations == calls);

  // 20 tokens: 20,000 bytes -> 20 KiB. The 12 KiB chunk goes back before the 20 KiB one is
  // taken, so the upstream never holds both.
  CHECK(ws.begin_step(20) == 20 * kib);
  ws.allocate(20000);
  ws.end_step();
  CHECK(up.in_use == 20 * kib);
  CHECK(up.peak == 20 * kib);
  st = ws.stats();
  CHECK(st.bytes_reserved == 20 * kib);
  CHECK(st.high_water_mark == 20 * kib);
  CHECK(st.peak_bytes_reserved == 20 * kib);
  CHECK(st.grows == 2);
  CHECK(st.shrinks == 0);
}

TEST_CASE("workspace: gives memory back after shrink_after_steps steps below the mark") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 1000, .shrink_after_steps = 3, .granularity = 4 * kib}};
  run_step(ws, 20);  // the mark: 20 KiB
  REQUIRE(ws.stats().high_water_mark == 20 * kib);

  SECTION("three steps below: keep the largest of them") {
    run_step(ws, 4);  // 4 KiB
    CHECK(ws.stats().steps_below == 1);
    run_step(ws, 8);  // 8,000 -> 8 KiB
    CHECK(ws.stats().steps_below == 2);
    CHECK(up.in_use == 20 * kib);  // not yet
    run_step(ws, 2);               // 4 KiB; third step below: shrink to 8 KiB
    const auto st = ws.stats();
    CHECK(st.bytes_reserved == 8 * kib);
    CHECK(st.high_water_mark == 8 * kib);
    CHECK(st.steps_below == 0);
    CHECK(st.shrinks == 1);
    CHECK(st.peak_bytes_reserved == 20 * kib);
    CHECK(up.in_use == 8 * kib);
    // The next large step grows again.
    run_step(ws, 17);  // 17,000 -> 20 KiB
    CHECK(up.in_use == 20 * kib);
    CHECK(ws.stats().grows == 2);
  }
  SECTION("a step at the mark starts the count again") {
    run_step(ws, 4);
    run_step(ws, 4);
    run_step(ws, 19);  // 19,000 -> 20 KiB: at the mark
    CHECK(ws.stats().steps_below == 0);
    run_step(ws, 4);
    run_step(ws, 4);
    CHECK(up.in_use == 20 * kib);
    run_step(ws, 1);  // third in a row below
    CHECK(up.in_use == 4 * kib);
    CHECK(ws.capacity() == 4 * kib);
  }
  SECTION("steps of no tokens give everything back") {
    run_step(ws, 0);
    run_step(ws, 0);
    run_step(ws, 0);
    CHECK(ws.capacity() == 0);
    CHECK(up.in_use == 0);
    CHECK(ws.stats().high_water_mark == 0);
  }
}

TEST_CASE("workspace: shrink_after_steps = 0 keeps the high-water mark for good") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 1000, .shrink_after_steps = 0, .granularity = 4 * kib}};
  run_step(ws, 30);
  for (int i = 0; i < 100; ++i) run_step(ws, 1);
  CHECK(ws.capacity() == 32 * kib);
  CHECK(up.in_use == 32 * kib);
  CHECK(ws.stats().shrinks == 0);
}

TEST_CASE("workspace: a step that allocates more than it prepared raises the mark") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 1000, .shrink_after_steps = 2, .granularity = 4 * kib}};
  CHECK(ws.begin_step(1) == 4 * kib);
  ws.allocate(10000);  // past the prepared 4 KiB: an extra chunk
  CHECK(ws.capacity() > 4 * kib);
  ws.end_step();
  // The two chunks are folded into one of the step's real need, 10,000 -> 12 KiB.
  CHECK(ws.capacity() == 12 * kib);
  CHECK(up.in_use == 12 * kib);
  CHECK(ws.stats().high_water_mark == 12 * kib);
  CHECK(ws.stats().peak_bytes_in_use == 10000);
}

TEST_CASE("workspace: extra bytes per step and the RAII step") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 100, .granularity = 256}};
  {
    auto step = ws.scoped_step(10, 1000);  // 1,000 + 1,000 -> 2,048
    CHECK(step.capacity() == 2048);
    CHECK(ws.in_step());
    ws.allocate(2000);
  }
  CHECK_FALSE(ws.in_step());
  CHECK(ws.stats().steps == 1);
  CHECK(ws.bytes_for(10, 7) == 1007);
}

TEST_CASE("workspace: a resource for the step's tensors") {
  counting_upstream up;
  workspace ws{up, {.bytes_per_token = 4096, .granularity = 4 * kib}};
  ws.begin_step(4);
  {
    auto x = frugal::make_tensor<float>(ws, 1024);  // 4 KiB
    auto y = frugal::make_tensor<float>(ws, 1024);
    x.data()[0] = 1.0f;
    y.data()[1023] = 2.0f;
    CHECK(ws.bytes_in_use() == 8 * kib);
  }
  // Freed newest first: the arena reclaims both.
  CHECK(ws.bytes_in_use() == 0);
  void* p = ws.allocate(100);
  ws.deallocate(p, 100);
  CHECK(ws.bytes_in_use() == 0);
  ws.end_step();
  workspace other{up, {.bytes_per_token = 1}};
  CHECK_FALSE(ws == other);
  CHECK(ws.host_accessible());
  CHECK_FALSE(ws.device_accessible());
}

TEST_CASE("workspace: bad input is refused and changes nothing") {
  counting_upstream up;
  CHECK_THROWS_AS((workspace{up, {.bytes_per_token = 0}}), frugal::invalid_argument);
  CHECK_THROWS_AS((workspace{up, {.bytes_per_token = 8, .granularity = 100}}),
                  frugal::invalid_argument);
  CHECK_THROWS_AS((workspace{up, {.bytes_per_token = 8, .granularity = 128}}),
                  frugal::invalid_argument);

  workspace ws{up, {.bytes_per_token = 1000, .granularity = 4 * kib, .max_bytes = 64 * kib}};
  CHECK_THROWS_AS(ws.end_step(), frugal::invalid_argument);    // no step open
  CHECK_THROWS_AS(ws.allocate(16), frugal::invalid_argument);  // outside a step
  CHECK(ws.try_allocate(16) == nullptr);
  CHECK_THROWS_AS(ws.bytes_for(std::numeric_limits<std::size_t>::max()), frugal::invalid_argument);

  ws.begin_step(8);
  CHECK_THROWS_AS(ws.begin_step(8), frugal::invalid_argument);     // already open
  CHECK_THROWS_AS(ws.allocate(16, 48), frugal::invalid_argument);  // bad alignment
  CHECK(ws.try_allocate(16, 48) == nullptr);
  CHECK(ws.allocate(0) == nullptr);
  ws.end_step();
  REQUIRE(ws.capacity() == 8 * kib);

  // Past max_bytes: out_of_memory, capacity as it was, no step open.
  try {
    ws.begin_step(100);
    FAIL("a step past max_bytes was prepared");
  } catch (const frugal::out_of_memory& e) {
    CHECK(std::string(e.what()).find("batch::workspace") != std::string::npos);
  }
  CHECK(ws.capacity() == 8 * kib);
  CHECK_FALSE(ws.in_step());

  // The upstream refuses the larger chunk: the old one is taken back, nothing else changes.
  up.limit = 12 * kib;
  const auto before = ws.stats();
  CHECK_THROWS_AS(ws.begin_step(20), frugal::out_of_memory);
  CHECK(ws.capacity() == 8 * kib);
  CHECK(up.in_use == 8 * kib);
  CHECK_FALSE(ws.in_step());
  CHECK(ws.stats().grows == before.grows);
  CHECK(ws.stats().high_water_mark == before.high_water_mark);
  // An allocation past the capacity that the upstream refuses fails alone.
  ws.begin_step(8);
  CHECK_THROWS_AS(ws.allocate(16 * kib), frugal::out_of_memory);
  CHECK(ws.try_allocate(16 * kib) == nullptr);
  CHECK(ws.allocate(8 * kib) != nullptr);  // the prepared capacity is still there
  ws.end_step();
  up.limit = std::numeric_limits<std::size_t>::max();
  CHECK(ws.begin_step(20) == 20 * kib);
  ws.end_step();
}

TEST_CASE("workspace: 10,000 random steps hold exactly what recent steps needed") {
  counting_upstream up;
  constexpr std::uint32_t window = 8;
  constexpr std::size_t granularity = 64 * kib, per_token = 3000;
  workspace ws{
      up, {.bytes_per_token = per_token, .shrink_after_steps = window, .granularity = granularity}};
  std::mt19937_64 rng(17);
  std::size_t largest = 0, mark = 0, run = 0, run_max = 0;
  const auto rounded = [&](std::size_t tokens) {
    return (tokens * per_token + granularity - 1) / granularity * granularity;
  };
  for (int step = 0; step < 10000; ++step) {
    // Bursty: mostly small decode steps, sometimes a prefill burst.
    const std::size_t tokens = rng() % 10 == 0 ? 1 + rng() % 8192 : 1 + rng() % 256;
    const std::size_t need = rounded(tokens);
    CHECK(ws.begin_step(tokens) >= tokens * per_token);
    // Two allocations without padding between them: the first is a multiple of the alignment.
    const std::size_t first = tokens * per_token / 2 / 256 * 256;
    ws.allocate(first);
    ws.allocate(tokens * per_token - first, 256);
    ws.end_step();
    largest = std::max(largest, need);
    // The model of the policy: grow to the need; shrink to the run's largest after `window`
    // steps below the mark.
    if (need > mark) {
      mark = need;
      run = run_max = 0;
    } else if (need == mark) {
      run = run_max = 0;
    } else {
      run_max = std::max(run_max, need);
      if (++run == window) {
        mark = run_max;
        run = run_max = 0;
      }
    }
    REQUIRE(ws.capacity() >= need);
    REQUIRE(ws.capacity() == mark);
    REQUIRE(up.in_use == mark);
  }
  const auto st = ws.stats();
  CHECK(st.peak_bytes_reserved == largest);
  CHECK(up.peak == largest);
  CHECK(st.shrinks > 100);
  CHECK(st.steps == 10000);
}
