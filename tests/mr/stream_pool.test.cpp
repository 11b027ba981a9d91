#include "mr/fake_streams.hpp"
#include "mr/test_resources.hpp"

#include <frugal/mr/stream_pool.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

using frugal::pool_options;
using frugal::ref_t;
using frugal::stream_pool_resource;
using frugal::testing::budget_resource;
using frugal::testing::capture_misuse;
using frugal::testing::fake_stream_policy;
using frugal::testing::fake_streams;

namespace {
constexpr std::size_t KiB = 1024, MiB = std::size_t{1} << 20;
constexpr int A = 1, B = 2, C = 3;
using fake_pool = stream_pool_resource<ref_t<budget_resource>, fake_stream_policy>;
}  // namespace

TEST_CASE("stream pool: a block freed on a stream is reused by it at once, without waits") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device}};
  void* p = pool.allocate_async(100 * KiB, 256, A);
  pool.deallocate_async(p, 100 * KiB, 256, A);
  CHECK(device.records == 1);  // the free records A's event
  void* q = pool.allocate_async(90 * KiB, 256, A);
  CHECK(q == p);
  CHECK(device.waits == 0);
  CHECK(device.synchronizes == 0);
  CHECK(pool.stats().bytes_in_use == 90 * KiB);
  CHECK(pool.is_valid());
  pool.deallocate_async(q, 90 * KiB, 256, A);
  CHECK(pool.free_by_stream().at(0).bytes == 100 * KiB);
}

TEST_CASE("stream pool: another stream gets a freed block only after waiting on the free's event") {
  budget_resource upstream;
  fake_streams device;
  // One block's worth of memory: B can only be served with the block A freed.
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.initial_size = MiB, .max_size = MiB}};
  void* p = pool.allocate_async(MiB, 256, A);
  device.enqueue(A);  // a kernel on A uses p
  const std::uint64_t freed_at = device.position(A);
  pool.deallocate_async(p, MiB, 256, A);
  CHECK_FALSE(device.has_seen(B, A, freed_at));
  void* q = pool.allocate_async(MiB, 256, B);
  CHECK(q == p);
  CHECK(device.waits == 1);
  CHECK(device.has_seen(B, A, freed_at));  // B's work on q runs after A's work on p
  CHECK(device.synchronizes == 0);
  CHECK(device.errors.empty());
  pool.deallocate_async(q, MiB, 256, B);
  CHECK(pool.is_valid());
}

TEST_CASE("stream pool: before failing, other streams' free blocks are merged") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.initial_size = MiB, .max_size = MiB}};
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(pool.allocate_async(256 * KiB, 256, A));
  for (void* p : blocks) pool.deallocate_async(p, 256 * KiB, 256, A);
  // A holds four free quarter blocks; none serves 1 MiB and the cap forbids growth: the pool
  // synchronizes on A's event and merges them into one free MiB.
  void* big = pool.allocate_async(MiB, 256, B);
  CHECK(big == blocks[0]);
  CHECK(device.synchronizes == 1);
  CHECK(pool.free_by_stream().at(0).bytes == 0);
  CHECK(device.errors.empty());
  CHECK(pool.is_valid());

  pool.deallocate_async(big, MiB, 256, B);
  CHECK(pool.is_valid());
}

TEST_CASE("stream pool: the out-of-memory error says what each stream had free") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.initial_size = MiB, .max_size = MiB}};
  std::vector<void*> q;
  for (int i = 0; i < 4; ++i) q.push_back(pool.allocate_async(256 * KiB, 256, A));
  pool.deallocate_async(q[2], 256 * KiB, 256, A);
  pool.deallocate_async(q[3], 256 * KiB, 256, A);
  pool.deallocate_async(q[0], 256 * KiB, 256, B);
  const auto before = pool.stats();
  try {
    // q[1] stays live: merged, the free memory is 256 KiB and 512 KiB, never 768 KiB at once.
    (void)pool.allocate_async(768 * KiB, 256, C);
    FAIL("768 KiB were allocated beside a live 256 KiB in a 1 MiB pool");
  } catch (const frugal::out_of_memory& e) {
    const std::string what = e.what();
    CHECK(what.find("stream_pool_resource") != std::string::npos);
    CHECK(what.find("free per stream before merging: stream 1 512.00 KiB in 2 blocks, stream 2 "
                    "256.00 KiB in 1 blocks") != std::string::npos);
  }
  CHECK(device.synchronizes == 2);  // both streams were merged before giving up
  CHECK(pool.stats().bytes_in_use == before.bytes_in_use);
  CHECK(pool.stats().allocations == 1);
  CHECK(pool.is_valid());
  pool.deallocate_async(q[1], 256 * KiB, 256, A);
}

TEST_CASE("stream pool: freeing on a stream the pool has never seen adds it") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.initial_size = MiB, .max_size = MiB}};
  void* p = pool.allocate_async(MiB, 256, A);  // A itself is not known until it frees
  CHECK(pool.free_by_stream().empty());
  pool.deallocate_async(p, MiB, 256, C);  // handed over to C, which frees it
  REQUIRE(pool.free_by_stream().size() == 1);
  CHECK(pool.free_by_stream()[0].stream == C);
  CHECK(device.creates == 1);
  void* q = pool.allocate_async(MiB, 256, C);
  CHECK(q == p);
  CHECK(device.waits == 0);
  pool.deallocate_async(q, MiB, 256, C);
  void* r = pool.allocate_async(MiB, 256, A);  // now A must wait on C
  CHECK(r == p);
  CHECK(device.waits == 1);
  pool.deallocate_async(r, MiB, 256, A);
  CHECK(pool.is_valid());
}

TEST_CASE("stream pool: release_stream before destroying a stream keeps its blocks usable") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.initial_size = MiB, .max_size = MiB}};
  void* p = pool.allocate_async(MiB, 256, A);
  device.enqueue(A);
  const std::uint64_t freed_at = device.position(A);
  pool.deallocate_async(p, MiB, 256, A);
  // The rule: release_stream(A), then destroy A.
  pool.release_stream(A);
  device.destroy_stream(A);
  CHECK(device.synchronizes == 1);
  CHECK(device.destroys == 1);  // A's event
  CHECK(pool.free_by_stream().empty());
  void* q = pool.allocate_async(MiB, 256, B);  // from the shared pool: no wait on A's event
  CHECK(q == p);
  CHECK(device.waits == 0);
  CHECK(device.has_seen(B, A, freed_at));  // the host synchronized on A's work
  CHECK(device.errors.empty());            // nothing touched the destroyed stream or its event
  pool.release_stream(A);                  // an unknown stream is ignored
  pool.deallocate_async(q, MiB, 256, B);
  CHECK(pool.is_valid());
}

TEST_CASE("stream pool: misuse through the async path is reported and changes nothing") {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device}};
  capture_misuse misuse;
  void* p = pool.allocate_async(1000, 256, A);
  void* q = pool.allocate_async(2000, 256, A);
  pool.deallocate_async(q, 2000, 256, A);
  const auto before = pool.stats();
  const auto free_before = pool.free_by_stream();
  int local = 0;
  pool.deallocate_async(&local, 8, 256, A);                        // unknown pointer
  pool.deallocate_async(q, 2000, 256, B);                          // double free, on another stream
  pool.deallocate_async(p, 999, 256, A);                           // size mismatch
  pool.deallocate_async(static_cast<char*>(p) + 256, 10, 256, A);  // inside a live block
  const auto& reports = misuse.reports();
  REQUIRE(reports.size() == 4);
  CHECK(reports[0].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(reports[1].kind == frugal::misuse_kind::double_free);
  CHECK(reports[2].kind == frugal::misuse_kind::size_mismatch);
  CHECK(reports[3].kind == frugal::misuse_kind::unknown_pointer);
  CHECK(pool.stats() == before);
  CHECK(pool.free_by_stream().size() == free_before.size());
  CHECK(pool.free_by_stream()[0].bytes == free_before[0].bytes);
  CHECK(device.records == 1);  // no event was recorded for a refused free
  CHECK_THROWS_AS(pool.allocate_async(10, 3, A), frugal::invalid_argument);
  CHECK(pool.try_allocate_async(10, 3, A) == nullptr);
  CHECK(pool.stats() == before);
  CHECK(pool.is_valid());
  pool.deallocate_async(p, 1000, 256, A);
}

namespace {

/// Random allocations and frees on random streams, with completions, releases and a cap. Every
/// 256-byte granule remembers the stream and position of its last free; a block handed to a
/// stream must be ordered after every other stream's last free of each of its granules.
void stream_fuzz(std::uint64_t seed, int operations) {
  budget_resource upstream;
  fake_streams device;
  fake_pool pool{frugal::ref(upstream), fake_stream_policy{&device},
                 pool_options{.max_size = 8 * MiB}};
  std::mt19937_64 rng(seed);
  struct held {
    void* p;
    std::size_t bytes;
    int stream;
  };
  std::vector<held> live;
  std::unordered_map<std::uintptr_t, std::pair<int, std::uint64_t>> last_free;  // granule
  int refused = 0;
  for (int op = 0; op < operations; ++op) {
    const int stream = 1 + static_cast<int>(rng() % 3);
    const std::uint64_t dice = rng() % 100;
    if (dice < 2) {
      device.complete_all();
    } else if (dice < 3) {
      pool.release_stream(stream);  // not destroyed: it may come back
    } else if (!live.empty() && dice < 50) {
      const std::size_t k = rng() % live.size();
      const held h = live[k];
      live[k] = live.back();
      live.pop_back();
      // Half the frees happen on the stream that used the block, half on another one (after
      // the program ordered them itself, as a stream hand-over does).
      const int on = rng() % 2 == 0 ? h.stream : stream;
      if (on != h.stream) {  // the program's own hand-over: `on` waits for the user's work
        const std::size_t e = device.create();
        device.record(e, h.stream);
        device.wait(on, e);
        device.destroy(e);
      }
      const std::uint64_t at = device.enqueue(on);
      const auto base = reinterpret_cast<std::uintptr_t>(h.p);
      for (std::uintptr_t g = base; g < base + h.bytes; g += 256) last_free[g] = {on, at};
      pool.deallocate_async(h.p, h.bytes, 256, on);
    } else {
      const std::size_t bytes = 1 + rng() % (rng() % 8 == 0 ? 2 * MiB : 64 * KiB);
      void* p = pool.try_allocate_async(bytes, 256, stream);
      if (p == nullptr) {
        ++refused;
      } else {
        const auto base = reinterpret_cast<std::uintptr_t>(p);
        for (std::uintptr_t g = base; g < base + bytes; g += 256) {
          auto it = last_free.find(g);
          if (it != last_free.end())
            REQUIRE(device.has_seen(stream, it->second.first, it->second.second));
        }
        device.enqueue(stream);  // a kernel writes the block
        live.push_back({p, bytes, stream});
      }
    }
    REQUIRE(pool.is_valid());
    REQUIRE(device.errors.empty());
  }
  CHECK(refused > 0);  // the cap was reached, with merges before each refusal
  for (const held& h : live) pool.deallocate_async(h.p, h.bytes, 256, h.stream);
  pool.merge_all();
  CHECK(pool.pool().stats().bytes_in_use == 0);
}

}  // namespace

TEST_CASE("stream pool: random streams never share a block before a wait") {
  stream_fuzz(1, 20000);
  stream_fuzz(2, 20000);
}

TEST_CASE("stream pool: long random streams", "[long]") {
  for (std::uint64_t seed = 10; seed < 15; ++seed) stream_fuzz(seed, 200000);
}

TEST_CASE("stream pool: over virtual memory the shared pool grows in place") {
  frugal::virtual_resource space{{.reserve_bytes = std::size_t{1} << 30, .commit = false}};
  fake_streams device;
  stream_pool_resource<ref_t<frugal::virtual_resource>, fake_stream_policy> pool{
      frugal::ref(space), fake_stream_policy{&device}};
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(pool.allocate_async(3 * MiB, 256, 1 + i % 2));
  CHECK(pool.pool().segments().size() == 1);
  for (int i = 0; i < 8; ++i) pool.deallocate_async(blocks[i], 3 * MiB, 256, 1 + i % 2);
  pool.merge_all();
  CHECK(pool.pool().stats().largest_free_block == pool.pool().stats().bytes_reserved);
  CHECK(pool.is_valid());
}
