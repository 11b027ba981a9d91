#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/sim/first_fit.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using frugal::sim::first_fit_device;

namespace {

constexpr std::size_t kib = 1024;
constexpr std::size_t mib = kib * kib;

std::size_t misuse_count = 0;
void count_misuse(const frugal::misuse_report&) noexcept { ++misuse_count; }

/// A heap over unbacked address space: any access would fault, which proves it is never touched.
struct unbacked {
  frugal::virtual_resource space{{.reserve_bytes = 64 * mib, .commit = false}};
  first_fit_device<frugal::ref_t<frugal::virtual_resource>> heap{frugal::ref(space), 64 * mib};
};

std::uintptr_t offset(const unbacked& h, const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) - reinterpret_cast<std::uintptr_t>(h.space.base());
}

}  // namespace

TEST_CASE("first_fit_device places each request at the lowest free address", "[sim][first_fit]") {
  unbacked h;
  void* a = h.heap.allocate(1 * mib);
  void* b = h.heap.allocate(100);  // rounded to 256 bytes
  void* c = h.heap.allocate(2 * mib);
  CHECK(offset(h, a) == 0);
  CHECK(offset(h, b) == 1 * mib);
  CHECK(offset(h, c) == 1 * mib + 256);
  CHECK(h.heap.stats().bytes_in_use == 3 * mib + 100);
  CHECK(h.heap.reserved() == 3 * mib + 256);

  h.heap.deallocate(a, 1 * mib);
  void* d = h.heap.allocate(512 * kib);  // fits the hole at 0: first fit, not best fit
  CHECK(offset(h, d) == 0);
  void* e = h.heap.allocate(768 * kib);  // does not fit the 512 KiB left there: goes on top
  CHECK(offset(h, e) == 3 * mib + 256);
  CHECK(h.heap.is_valid());
  for (auto [p, n] : {std::pair{b, std::size_t{100}}, {c, 2 * mib}, {d, 512 * kib}, {e, 768 * kib}})
    h.heap.deallocate(p, n);
  CHECK(h.heap.stats().bytes_in_use == 0);
  CHECK(h.heap.free_ranges() == 1);  // everything merged back
  CHECK(h.heap.reserved() == 0);
  CHECK(h.heap.stats().peak_bytes_reserved == 3 * mib + 256 + 768 * kib);
  CHECK(h.heap.is_valid());
}

TEST_CASE("first_fit_device coalesces with both neighbours", "[sim][first_fit]") {
  unbacked h;
  void* a = h.heap.allocate(mib);
  void* b = h.heap.allocate(mib);
  void* c = h.heap.allocate(mib);
  void* guard = h.heap.allocate(mib);
  h.heap.deallocate(a, mib);
  h.heap.deallocate(c, mib);
  CHECK(h.heap.free_ranges() == 3);  // a, c, and the top
  h.heap.deallocate(b, mib);
  CHECK(h.heap.free_ranges() == 2);
  CHECK(h.heap.stats().largest_free_block == 64 * mib - 4 * mib);
  void* big = h.heap.allocate(3 * mib);  // the merged hole at the bottom
  CHECK(offset(h, big) == 0);
  h.heap.deallocate(big, 3 * mib);
  h.heap.deallocate(guard, mib);
  CHECK(h.heap.free_ranges() == 1);
  CHECK(h.heap.is_valid());
}

TEST_CASE("first_fit_device honours alignments above its granularity", "[sim][first_fit]") {
  unbacked h;
  void* small = h.heap.allocate(256);
  void* aligned = h.heap.allocate(4096, 64 * kib);
  CHECK(offset(h, aligned) % (64 * kib) == 0);
  CHECK(offset(h, aligned) == 64 * kib);
  void* filler = h.heap.allocate(1024);  // the aligned-away gap stays usable
  CHECK(offset(h, filler) == 256);
  CHECK(h.heap.is_valid());
  h.heap.deallocate(small, 256);
  h.heap.deallocate(aligned, 4096);
  h.heap.deallocate(filler, 1024);
  CHECK(h.heap.free_ranges() == 1);
}

TEST_CASE("first_fit_device fragments: free bytes enough, no hole large enough",
          "[sim][first_fit]") {
  frugal::host_resource host;
  first_fit_device heap{frugal::ref(host), 8 * kib};
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(heap.allocate(kib));
  for (int i = 0; i < 8; i += 2) heap.deallocate(blocks[i], kib);  // 4 KiB free, in 1 KiB holes
  const auto before = heap.stats();
  CHECK(before.bytes_in_use == 4 * kib);
  CHECK(before.largest_free_block == kib);
  CHECK(heap.try_allocate(2 * kib) == nullptr);
  CHECK(heap.failures() == 1);
  CHECK_THROWS_AS(heap.allocate(2 * kib), frugal::out_of_memory);
  CHECK(heap.failures() == 2);
  CHECK(heap.stats() == before);  // a failure changes nothing else
  CHECK(heap.is_valid());
  try {
    (void)heap.allocate(2 * kib);
  } catch (const frugal::out_of_memory& e) {
    CHECK(std::string(e.what()).find("largest free block 1.00 KiB") != std::string::npos);
  }
  for (int i = 1; i < 8; i += 2) heap.deallocate(blocks[i], kib);
  CHECK(heap.stats().bytes_in_use == 0);
}

TEST_CASE("first_fit_device rejects bad input and changes nothing", "[sim][first_fit]") {
  unbacked h;
  void* a = h.heap.allocate(kib);
  const auto before = h.heap.stats();
  CHECK(h.heap.allocate(0) == nullptr);
  CHECK_THROWS_AS(h.heap.allocate(kib, 3), frugal::invalid_argument);
  CHECK(h.heap.try_allocate(kib, 3) == nullptr);
  CHECK(h.heap.try_allocate(65 * mib) == nullptr);  // larger than the range
  CHECK(h.heap.stats() == before);

  misuse_count = 0;
  const auto previous = frugal::set_misuse_handler(count_misuse);
  int local = 0;
  h.heap.deallocate(&local, kib);                            // not from this heap
  h.heap.deallocate(static_cast<std::byte*>(a) + 256, kib);  // not a block start
  h.heap.deallocate(a, 2 * kib);                             // wrong size
  frugal::set_misuse_handler(previous);
  CHECK(misuse_count == 3);
  CHECK(h.heap.stats() == before);
  CHECK(h.heap.is_valid());
  h.heap.deallocate(a, kib);
  CHECK_THROWS_AS((first_fit_device{frugal::host_resource{}, 100}), frugal::invalid_argument);
}

TEST_CASE("first_fit_device stays valid under random traffic", "[sim][first_fit]") {
  unbacked h;
  std::mt19937_64 rng(7);
  std::vector<std::pair<void*, std::size_t>> live;
  std::size_t in_use = 0;
  for (int i = 0; i < 4000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      const std::size_t n = 1 + rng() % (256 * kib);
      if (void* p = h.heap.try_allocate(n, std::size_t{256} << (rng() % 3))) {
        live.emplace_back(p, n);
        in_use += n;
      }
    } else {
      const std::size_t k = rng() % live.size();
      h.heap.deallocate(live[k].first, live[k].second);
      in_use -= live[k].second;
      live[k] = live.back();
      live.pop_back();
    }
    if (i % 200 == 0) REQUIRE(h.heap.is_valid());
  }
  CHECK(h.heap.stats().bytes_in_use == in_use);
  CHECK(h.heap.stats().peak_bytes_reserved >= h.heap.reserved());
  for (auto [p, n] : live) h.heap.deallocate(p, n);
  CHECK(h.heap.free_ranges() == 1);
  CHECK(h.heap.is_valid());
}
