// Where did the memory go? A serving-like allocation pattern (weights, a KV cache that grows and
// shrinks as requests come and go, per-step activations) runs through a tracked pool. Then: the
// memory report, the out-of-memory message a too-large request gets, and a snapshot written as
// JSON and SVG (open snapshot.svg in a browser; docs/snapshot.svg was made by this program).
//   example_snapshot [output directory, default "."]
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/memory_report.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/snapshot.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;

struct block {
  void* pointer;
  std::size_t bytes;
  int steps_left;  // for a request's KV cache: decode steps until it finishes
};

/// A fixed pseudo-random sequence, so the picture is the same on every run.
std::uint32_t next_random() {
  static std::uint32_t state = 12345;
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : ".";
  using pool_t = frugal::pool_resource<frugal::host_resource>;
  // The pool lives inside the tracker (pools do not move, so it is built in place); 64 MiB
  // chunks, at most three of them.
  frugal::tracking_adaptor<pool_t> tracker{
      std::in_place,
      {.record_timeline = true},
      frugal::host_resource{},
      frugal::pool_options{.chunk_size = 64 * MiB, .max_size = 192 * MiB}};

  // Weights: loaded once, kept for the life of the server.
  std::vector<block> weights;
  for (int layer = 0; layer < 6; ++layer)
    weights.push_back({tracker.allocate(7 * MiB, 256, "weights"), 7 * MiB, 0});

  // Serving: requests arrive, each holds KV cache that grows as it decodes and is freed when it
  // finishes; every step allocates activations and a workspace and frees them at its end.
  std::vector<block> kv_cache;
  for (int step = 0; step < 60; ++step) {
    if (step < 44 && next_random() % 3 != 0) {  // a request arrives: prefill its KV cache
      const std::size_t bytes = (2 + next_random() % 9) * MiB + next_random() % 4096;
      kv_cache.push_back({tracker.allocate(bytes, 256, "kv cache"), bytes,
                          12 + static_cast<int>(next_random() % 30)});
    }
    std::vector<block> step_blocks;
    step_blocks.push_back({tracker.allocate(4 * MiB, 256, "workspace"), 4 * MiB, 0});
    for (int i = 0; i < 3; ++i) {
      const std::size_t bytes = (1 + next_random() % 3) * MiB;
      step_blocks.push_back({tracker.allocate(bytes, 256, "activations"), bytes, 0});
    }
    if (step % 5 == 4 && !kv_cache.empty()) {  // a long request grows its cache by a block
      const std::size_t bytes = 3 * MiB;
      kv_cache.push_back({tracker.allocate(bytes, 256, "kv cache"), bytes, 20});
    }
    for (const block& b : step_blocks) tracker.deallocate(b.pointer, b.bytes);
    for (std::size_t i = 0; i < kv_cache.size();) {  // finished requests free their cache
      if (--kv_cache[i].steps_left > 0) {
        ++i;
        continue;
      }
      tracker.deallocate(kv_cache[i].pointer, kv_cache[i].bytes);
      kv_cache[i] = kv_cache.back();
      kv_cache.pop_back();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the decode step itself
  }
  // One activation retained past its step: the report names it, as it would name a leak.
  void* retained = tracker.allocate(2 * MiB, 256, "layer3.mlp.up");

  std::printf("%s\n", frugal::memory_report(tracker, "serving pool").c_str());

  // Plenty of memory is free in total, but not in one piece: the request fails, and says why.
  try {
    void* big = tracker.allocate(64 * MiB, 256, "kv cache");
    tracker.deallocate(big, 64 * MiB);
  } catch (const frugal::out_of_memory& e) {
    std::printf("%s\n\n", e.what());
  }

  frugal::snapshot snap = frugal::snapshot::capture(tracker);
  snap.title = "frugal snapshot: a serving pool after 60 decode steps";
  snap.write_json(out_dir / "snapshot.json");
  snap.write_svg(out_dir / "snapshot.svg");
  std::printf("wrote %s and %s\n", (out_dir / "snapshot.json").string().c_str(),
              (out_dir / "snapshot.svg").string().c_str());

  tracker.deallocate(retained, 2 * MiB);
  for (const block& b : kv_cache) tracker.deallocate(b.pointer, b.bytes);
  for (const block& b : weights) tracker.deallocate(b.pointer, b.bytes);
  frugal::expect_no_outstanding(tracker, "at exit");
}
