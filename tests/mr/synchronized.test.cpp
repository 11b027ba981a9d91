// Behavioural tests of synchronized: calls are serialized, forwarded unchanged, and a shared pool
// survives two threads. Also the property-forwarding test of every adaptor, whose composed stack
// has synchronized outermost. The conformance suite covers what every resource must do.
#include "mr/adaptor_helpers.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/failure_callback_adaptor.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/limit_adaptor.hpp>
#include <frugal/mr/logging_adaptor.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/synchronized.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <random>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using frugal::host_resource;
using frugal::testing::bad_alignments;
using frugal::testing::counting_resource;
using frugal::testing::fake_device_resource;

// Helpers live in a named namespace (not an anonymous one) so that clang does not warn about
// hidden friends it considers unneeded.
namespace synchronized_tests {
// Host memory whose plain counters would be corrupted by concurrent calls; it also detects any
// overlap of two calls directly, with an atomic flag.
struct overlap_detecting_resource {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::size_t allocations = 0;
  std::size_t deallocations = 0;
  std::size_t bytes_in_use = 0;
  host_resource host;

  void enter() noexcept {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
  }
  void leave() noexcept { inside.fetch_sub(1); }
  void* allocate(std::size_t bytes, std::size_t alignment = frugal::default_alignment) {
    enter();
    void* p = host.allocate(bytes, alignment);
    ++allocations;
    bytes_in_use += bytes;
    leave();
    return p;
  }
  void deallocate(void* p, std::size_t bytes,
                  std::size_t alignment = frugal::default_alignment) noexcept {
    enter();
    host.deallocate(p, bytes, alignment);
    ++deallocations;
    bytes_in_use -= bytes;
    leave();
  }
  friend bool operator==(const overlap_detecting_resource& a,
                         const overlap_detecting_resource& b) noexcept {
    return &a == &b;
  }
  friend void get_property(const overlap_detecting_resource&, frugal::host_accessible) noexcept {}
};

template <class R>
concept has_stats = requires(const R& r) {
  { r.stats() } -> std::same_as<frugal::resource_stats>;
};
}  // namespace synchronized_tests

using synchronized_tests::has_stats;
using synchronized_tests::overlap_detecting_resource;

TEST_CASE("adaptors take their properties from the upstream") {
  using device = fake_device_resource;
  STATIC_REQUIRE(frugal::resource_with<frugal::stats_adaptor<device>, frugal::device_accessible>);
  STATIC_REQUIRE(
      frugal::resource_with<frugal::tracking_adaptor<device>, frugal::device_accessible>);
  STATIC_REQUIRE(frugal::resource_with<frugal::limit_adaptor<device>, frugal::device_accessible>);
  STATIC_REQUIRE(frugal::resource_with<frugal::logging_adaptor<device>, frugal::device_accessible>);
  STATIC_REQUIRE(frugal::resource_with<frugal::synchronized<device>, frugal::device_accessible>);
  STATIC_REQUIRE(
      frugal::resource_with<frugal::failure_callback_adaptor<device>, frugal::device_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::stats_adaptor<device>, frugal::host_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::tracking_adaptor<device>, frugal::host_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::limit_adaptor<device>, frugal::host_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::logging_adaptor<device>, frugal::host_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::synchronized<device>, frugal::host_accessible>);
  STATIC_REQUIRE_FALSE(
      frugal::has_property_v<frugal::failure_callback_adaptor<device>, frugal::host_accessible>);
  // ...through any depth of composition, and with try_allocate at every level.
  using stack =
      frugal::synchronized<frugal::stats_adaptor<frugal::limit_adaptor<frugal::tracking_adaptor<
          frugal::logging_adaptor<frugal::failure_callback_adaptor<device>>>>>>;
  STATIC_REQUIRE(frugal::resource_with<stack, frugal::device_accessible>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<stack, frugal::host_accessible>);
  STATIC_REQUIRE(frugal::try_allocatable<stack>);
}

TEST_CASE("synchronized: two threads hammering one resource never overlap inside it") {
  overlap_detecting_resource target;
  frugal::synchronized<frugal::stats_adaptor<frugal::ref_t<overlap_detecting_resource>>> shared{
      std::in_place, frugal::ref(target)};
  constexpr int rounds = 20000;
  std::atomic<int> failed_allocations{0};  // Catch2 assertions are not thread safe
  auto hammer = [&shared, &failed_allocations](std::size_t seed) {
    std::vector<std::pair<void*, std::size_t>> held;
    for (int i = 0; i < rounds; ++i) {
      const std::size_t bytes = 1 + (seed * 7919 + static_cast<std::size_t>(i) * 104729) % 512;
      void* p = (i % 2 == 0) ? shared.allocate(bytes) : shared.try_allocate(bytes, 64);
      if (p == nullptr) {
        failed_allocations.fetch_add(1);
        return held;
      }
      held.emplace_back(p, bytes);
      if (held.size() > 8) {
        auto [q, size] = held.front();
        held.erase(held.begin());
        const std::size_t alignment = ((i - 8) % 2 == 0) ? frugal::default_alignment : 64;
        shared.deallocate(q, size, alignment);
      }
      if (i % 1000 == 0) (void)shared.stats();
    }
    return held;
  };
  std::vector<std::pair<void*, std::size_t>> left_a, left_b;
  std::thread a([&] { left_a = hammer(1); });
  std::thread b([&] { left_b = hammer(2); });
  a.join();
  b.join();
  REQUIRE(failed_allocations.load() == 0);
  CHECK(target.overlaps.load() == 0);
  CHECK(target.allocations == 2 * rounds);
  CHECK(target.deallocations == 2 * (rounds - 8));
  const auto s = shared.stats();
  CHECK(s.allocations == 16);
  CHECK(s.bytes_in_use == target.bytes_in_use);
  CHECK(shared.with_lock([](auto& stats) { return stats.total_allocations(); }) == 2 * rounds);
  for (auto& left : {left_a, left_b}) {
    for (std::size_t k = 0; k < left.size(); ++k) {
      const int i = rounds - static_cast<int>(left.size()) + static_cast<int>(k);
      shared.deallocate(left[k].first, left[k].second, i % 2 == 0 ? frugal::default_alignment : 64);
    }
  }
  CHECK(shared.stats().bytes_in_use == 0);
  CHECK(target.bytes_in_use == 0);
}

TEST_CASE("synchronized forwards calls, stats() only when the upstream has it") {
  STATIC_REQUIRE_FALSE(has_stats<frugal::synchronized<host_resource>>);
  STATIC_REQUIRE(has_stats<frugal::synchronized<frugal::stats_adaptor<host_resource>>>);
  STATIC_REQUIRE_FALSE(std::is_move_constructible_v<frugal::synchronized<host_resource>>);

  counting_resource upstream;
  upstream.capacity = 1000;
  frugal::synchronized shared{frugal::ref(upstream)};
  void* p = shared.allocate(600, 64);
  CHECK(upstream.allocate_calls == 1);
  CHECK_THROWS_AS(shared.allocate(600), frugal::out_of_memory);
  CHECK(shared.try_allocate(600) == nullptr);
  for (std::size_t alignment : bad_alignments) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(shared.allocate(64, alignment), frugal::invalid_argument);
    CHECK(shared.try_allocate(64, alignment) == nullptr);
  }
  CHECK(shared.allocate(0) == nullptr);
  shared.deallocate(nullptr, 0);
  CHECK(upstream.allocate_calls == 3);
  shared.deallocate(p, 600, 64);
  CHECK(upstream.deallocate_calls == 1);
  CHECK(upstream.in_use == 0);
  CHECK(&shared.upstream().get() == &upstream);

  frugal::synchronized other{frugal::ref(upstream)};
  CHECK(shared == shared);
  CHECK(shared != other);

  // In place, for an upstream that cannot be moved; const with_lock.
  const frugal::synchronized<frugal::synchronized<host_resource>> nested{std::in_place,
                                                                         host_resource{}};
  CHECK(nested.with_lock([](const auto& inner) { return &inner; }) == &nested.upstream());
}

TEST_CASE("synchronized: two threads hammer a shared pool") {
  // pool_resource is not thread safe and cannot be moved: built in place, shared by the lock.
  frugal::synchronized<frugal::pool_resource<host_resource>> shared{std::in_place, host_resource{}};
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::seconds(2);
  constexpr int max_rounds = 10'000'000;  // per thread; the deadline usually ends the run first
  constexpr std::size_t max_live = 256;   // per thread: at most 16 MiB of 64 KiB blocks

  // What one thread saw; Catch2 assertions are not thread safe, so the main thread checks it.
  struct outcome {
    int rounds = 0;
    int allocations = 0;
    int failed_allocations = 0;
    int misaligned = 0;
    int overwritten = 0;  // a head or tail byte changed while the block was ours
    int invalid_pool = 0;
  };
  struct live_block {
    unsigned char* p;
    std::size_t bytes, alignment;
  };
  // Each thread stamps the first and last byte of its blocks with its own pair of bytes, so a
  // block handed to both threads at once shows up as a stamp of the wrong thread.
  constexpr unsigned char heads[] = {0x5a, 0xa5};
  constexpr unsigned char tails[] = {0xc3, 0x3c};

  auto hammer = [&](int thread) {
    outcome out;
    std::mt19937_64 rng(0x5eed + static_cast<std::uint64_t>(thread));
    std::vector<live_block> live;
    live.reserve(max_live);
    auto release = [&](std::size_t k) {
      const live_block b = live[k];
      if (b.p[0] != heads[thread] || (b.bytes > 1 && b.p[b.bytes - 1] != tails[thread]))
        ++out.overwritten;
      shared.deallocate(b.p, b.bytes, b.alignment);
      live[k] = live.back();
      live.pop_back();
    };
    for (; out.rounds < max_rounds && clock::now() < deadline; ++out.rounds) {
      const bool grow = live.empty() || (live.size() < max_live && rng() % 100 < 55);
      if (!grow) {
        release(rng() % live.size());
        continue;
      }
      const std::size_t bytes = 1 + rng() % (std::size_t{1} << (rng() % 17));  // 1 B..64 KiB
      const std::size_t alignment = std::size_t{1} << (rng() % 13);            // 1..4096
      void* p = nullptr;
      if (rng() % 2 == 0) {
        p = shared.try_allocate(bytes, alignment);
      } else {
        try {
          p = shared.allocate(bytes, alignment);
        } catch (...) {
          p = nullptr;
        }
      }
      if (p == nullptr) {
        ++out.failed_allocations;
        continue;
      }
      ++out.allocations;
      if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0) ++out.misaligned;
      auto* bytes_of_p = static_cast<unsigned char*>(p);
      bytes_of_p[0] = heads[thread];
      if (bytes > 1) bytes_of_p[bytes - 1] = tails[thread];
      live.push_back({bytes_of_p, bytes, alignment});
      if (out.rounds % 4096 == 0) {
        (void)shared.stats();
        if (!shared.with_lock([](const auto& pool) { return pool.is_valid(); })) ++out.invalid_pool;
      }
    }
    while (!live.empty()) release(live.size() - 1);
    return out;
  };

  outcome a, b;
  std::thread first([&] { a = hammer(0); });
  std::thread second([&] { b = hammer(1); });
  first.join();
  second.join();

  for (const outcome& out : {a, b}) {
    INFO("rounds " << out.rounds << ", allocations " << out.allocations);
    CHECK(out.allocations > 0);
    CHECK(out.failed_allocations == 0);
    CHECK(out.misaligned == 0);
    CHECK(out.overwritten == 0);
    CHECK(out.invalid_pool == 0);
  }
  const auto s = shared.stats();
  CHECK(s.bytes_in_use == 0);
  CHECK(s.allocations == 0);
  CHECK(s.peak_bytes_in_use > 0);
  CHECK(shared.with_lock([](const auto& pool) { return pool.is_valid(); }));
}
