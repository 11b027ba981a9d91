// The CUDA upstream resources: cuda_resource, cuda_async_resource, pinned_resource and
// cuda_virtual_resource. Device cases skip without a GPU; the compile-time and argument checks
// at the top run everywhere.
#include "gpu/gpu.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/cuda_async_resource.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/cuda_virtual_resource.hpp>
#include <frugal/mr/pinned_resource.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t KiB = std::size_t{1} << 10;
constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t GiB = std::size_t{1} << 30;

/// Sizes from 1 byte to 1 GiB, including ones that are not multiples of anything.
const std::vector<std::size_t> sizes = {1, 3, 255, 256, 257, 4097, MiB + 3, 64 * MiB, GiB};

bool aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

std::size_t device_total_memory() {
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  FRUGAL_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes;
}

/// Proves `bytes` at device-accessible `p` are usable: fill on the device and count them back.
void check_usable(void* p, std::size_t bytes, std::uint8_t value, cudaStream_t stream = nullptr) {
  frugal::device::fill_bytes(p, bytes, value, stream);
  CHECK(frugal::device::count_bytes(p, bytes, value, stream) == bytes);
}

/// Checks an out_of_memory names the request and the resource.
void check_oom_message(const frugal::out_of_memory& e, std::size_t bytes, const char* who) {
  const std::string what = e.what();
  INFO(what);
  CHECK(e.requested_bytes() == bytes);
  CHECK(what.find(std::to_string(bytes)) != std::string::npos);
  CHECK(what.find(who) != std::string::npos);
  CHECK_FALSE(e.state().empty());
}

/// RAII stream for the tests.
struct stream_holder {
  cudaStream_t stream = nullptr;
  stream_holder() { FRUGAL_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  ~stream_holder() { (void)cudaStreamDestroy(stream); }
  stream_holder(const stream_holder&) = delete;
  stream_holder& operator=(const stream_holder&) = delete;
};

/// Records misuse reports instead of printing (and aborting in debug builds).
struct misuse_recorder {
  static inline std::vector<frugal::misuse_kind> kinds;
  static void record(const frugal::misuse_report& report) noexcept { kinds.push_back(report.kind); }
  frugal::misuse_handler previous;
  misuse_recorder() : previous(frugal::set_misuse_handler(&record)) { kinds.clear(); }
  ~misuse_recorder() { frugal::set_misuse_handler(previous); }
  misuse_recorder(const misuse_recorder&) = delete;
  misuse_recorder& operator=(const misuse_recorder&) = delete;
};

}  // namespace

// ---- No device needed ---------------------------------------------------------------------------

TEST_CASE("cuda resources: concepts and properties (compile time)", "[gpu][static]") {
  using frugal::device_accessible;
  using frugal::host_accessible;
  STATIC_REQUIRE(frugal::resource_with<frugal::cuda_resource, device_accessible>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<frugal::cuda_resource, host_accessible>);
  STATIC_REQUIRE(frugal::try_allocatable<frugal::cuda_resource>);

  STATIC_REQUIRE(frugal::resource_with<frugal::cuda_async_resource, device_accessible>);
  STATIC_REQUIRE(frugal::stream_ordered_resource<frugal::cuda_async_resource>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<frugal::cuda_async_resource, host_accessible>);
  STATIC_REQUIRE(frugal::try_allocatable<frugal::cuda_async_resource>);

  STATIC_REQUIRE(
      frugal::resource_with<frugal::pinned_resource, host_accessible, device_accessible>);
  STATIC_REQUIRE(frugal::try_allocatable<frugal::pinned_resource>);

  STATIC_REQUIRE(frugal::resource_with<frugal::cuda_virtual_resource, device_accessible>);
  STATIC_REQUIRE_FALSE(frugal::has_property_v<frugal::cuda_virtual_resource, host_accessible>);
  STATIC_REQUIRE(frugal::try_allocatable<frugal::cuda_virtual_resource>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<frugal::cuda_virtual_resource>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<frugal::cuda_virtual_resource>);

  STATIC_REQUIRE(frugal::resource_with<frugal::ref_t<frugal::cuda_resource>, device_accessible>);
  STATIC_REQUIRE(frugal::resource_with<frugal::ref_t<frugal::pinned_resource>, host_accessible,
                                       device_accessible>);
}

TEST_CASE("cuda resources: argument checks and equality need no device", "[gpu][static]") {
  frugal::cuda_resource gpu0{0};
  frugal::cuda_async_resource async0{nullptr, 0};
  frugal::pinned_resource pinned;
  // Zero bytes and bad alignments are answered before any CUDA call.
  CHECK(gpu0.allocate(0) == nullptr);
  CHECK(async0.allocate(0) == nullptr);
  CHECK(async0.allocate_async(0, 256, cuda::stream_ref{cudaStream_t{}}) == nullptr);
  CHECK(pinned.allocate(0) == nullptr);
  for (std::size_t alignment :
       {std::size_t{0}, std::size_t{3}, std::size_t{48}, std::size_t{512}}) {
    INFO("alignment " << alignment);
    CHECK_THROWS_AS(gpu0.allocate(64, alignment), frugal::invalid_argument);
    CHECK_THROWS_AS(async0.allocate(64, alignment), frugal::invalid_argument);
    CHECK_THROWS_AS(pinned.allocate(64, alignment), frugal::invalid_argument);
    CHECK(gpu0.try_allocate(64, alignment) == nullptr);
    CHECK(async0.try_allocate(64, alignment) == nullptr);
    CHECK(pinned.try_allocate(64, alignment) == nullptr);
  }
  gpu0.deallocate(nullptr, 0);
  async0.deallocate(nullptr, 0);
  pinned.deallocate(nullptr, 0);

  CHECK(gpu0 == frugal::cuda_resource{0});
  CHECK(gpu0 != frugal::cuda_resource{1});
  CHECK(gpu0.device() == 0);
  CHECK(async0 == frugal::cuda_async_resource{nullptr, 0});
  CHECK(async0 != frugal::cuda_async_resource(nullptr, 1));
  CHECK(pinned == frugal::pinned_resource{});
  // Default construction is implicit (usable in aggregates) and never throws, device or not.
  struct holder {
    frugal::cuda_resource gpu;
    frugal::cuda_async_resource async;
    frugal::pinned_resource pinned;
  };
  const holder h{};
  CHECK(h.gpu.device() >= 0);
  CHECK(h.async.stream() == nullptr);
  CHECK(h.async.device() == h.gpu.device());

  if (frugal::device::count() == 0) {
    // No driver or no device: the driver functions or the device cannot be found.
    CHECK_THROWS_AS(frugal::cuda_virtual_resource({.reserve_bytes = GiB}), frugal::cuda_error);
    CHECK(gpu0.try_allocate(64) == nullptr);
    CHECK_THROWS_AS(gpu0.allocate(64), frugal::cuda_error);
  }
}

// ---- cuda_resource ------------------------------------------------------------------------------

TEST_CASE("cuda_resource: sizes 1 B to 1 GiB and alignments up to 256", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_resource gpu;
  for (std::size_t bytes : sizes) {
    for (std::size_t alignment = 1; alignment <= 256; alignment *= 4) {
      INFO("bytes " << bytes << " alignment " << alignment);
      void* p = gpu.allocate(bytes, alignment);
      REQUIRE(p != nullptr);
      CHECK(aligned(p, alignment));
      cudaPointerAttributes attributes{};
      REQUIRE(cudaPointerGetAttributes(&attributes, p) == cudaSuccess);
      CHECK(attributes.type == cudaMemoryTypeDevice);
      CHECK(attributes.device == gpu.device());
      gpu.deallocate(p, bytes, alignment);
    }
    void* p = gpu.allocate(bytes);
    check_usable(p, bytes, 0x5A);
    gpu.deallocate(p, bytes);
  }
  void* p = gpu.try_allocate(MiB);
  REQUIRE(p != nullptr);
  FRUGAL_CUDA_TRY(cudaMemset(p, 0x11, MiB));
  CHECK(frugal::device::count_bytes(p, MiB, 0x11) == MiB);
  gpu.deallocate(p, MiB);
}

TEST_CASE("cuda_resource: zero bytes, alignment limit and equality", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_resource a;
  frugal::cuda_resource b;
  CHECK(a.allocate(0) == nullptr);
  CHECK(a.try_allocate(0) == nullptr);
  CHECK_THROWS_AS(a.allocate(64, 512), frugal::invalid_argument);
  CHECK(a == b);  // same (current) device
  int current = -1;
  FRUGAL_CUDA_TRY(cudaGetDevice(&current));
  CHECK(a.device() == current);
  // Memory from one instance may be freed by another equal one.
  void* p = a.allocate(4096);
  b.deallocate(p, 4096);
  if (frugal::device::count() >= 2) {
    frugal::cuda_resource other{current == 0 ? 1 : 0};
    CHECK(a != other);
    void* q = other.allocate(4096);  // on the other device, whatever is current
    cudaPointerAttributes attributes{};
    REQUIRE(cudaPointerGetAttributes(&attributes, q) == cudaSuccess);
    CHECK(attributes.device == other.device());
    int still = -1;
    FRUGAL_CUDA_TRY(cudaGetDevice(&still));
    CHECK(still == current);  // the current device is restored
    other.deallocate(q, 4096);
  }
}

TEST_CASE("cuda_resource: a request beyond device memory throws out_of_memory", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_resource gpu;
  const std::size_t bytes = 2 * device_total_memory();
  try {
    (void)gpu.allocate(bytes);
    FAIL("allocating twice the device memory succeeded");
  } catch (const frugal::out_of_memory& e) {
    check_oom_message(e, bytes, "cuda_resource");
    CHECK(e.state().find("free of") != std::string::npos);  // cudaMemGetInfo was available
  }
  CHECK(cudaGetLastError() == cudaSuccess);  // the error was cleared
  CHECK(gpu.try_allocate(bytes) == nullptr);
  CHECK(cudaGetLastError() == cudaSuccess);
  void* p = gpu.allocate(MiB);  // still works
  check_usable(p, MiB, 0x01);
  gpu.deallocate(p, MiB);
}

// ---- cuda_async_resource ------------------------------------------------------------------------

TEST_CASE("cuda_async_resource: synchronous use, sizes and alignments", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  stream_holder s;
  frugal::cuda_async_resource gpu{s.stream};
  CHECK(gpu.stream() == s.stream);
  for (std::size_t bytes : sizes) {
    for (std::size_t alignment = 1; alignment <= 256; alignment *= 16) {
      INFO("bytes " << bytes << " alignment " << alignment);
      void* p = gpu.allocate(bytes, alignment);
      REQUIRE(p != nullptr);
      CHECK(aligned(p, alignment));
      gpu.deallocate(p, bytes, alignment);
    }
    // allocate synchronizes, so the legacy default stream may use the memory at once.
    void* p = gpu.allocate(bytes);
    check_usable(p, bytes, 0xC3, nullptr);
    gpu.deallocate(p, bytes);
  }
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(s.stream));
  CHECK(gpu.allocate(0) == nullptr);
  CHECK_THROWS_AS(gpu.allocate(64, 512), frugal::invalid_argument);
}

TEST_CASE("cuda_async_resource: allocate_async and deallocate_async on a created stream", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  stream_holder s;
  stream_holder other;
  frugal::cuda_async_resource gpu;  // default stream; the *_async calls name their own
  const cuda::stream_ref stream{s.stream};
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t bytes : {std::size_t{1}, 4097 * KiB, 256 * MiB}) {
    void* p = gpu.allocate_async(bytes, 256, stream);
    REQUIRE(p != nullptr);
    CHECK(aligned(p, 256));
    frugal::device::fill_bytes(p, bytes, 0x7E, s.stream);  // ordered after the allocation
    blocks.emplace_back(p, bytes);
  }
  for (auto [p, bytes] : blocks)
    CHECK(frugal::device::count_bytes(p, bytes, 0x7E, s.stream) == bytes);
  for (auto [p, bytes] : blocks) gpu.deallocate_async(p, bytes, 256, stream);
  CHECK(gpu.allocate_async(0, 256, stream) == nullptr);
  CHECK_THROWS_AS(gpu.allocate_async(64, 1024, stream), frugal::invalid_argument);
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(s.stream));

  // Equality: same stream and device.
  CHECK(frugal::cuda_async_resource{s.stream} == frugal::cuda_async_resource{s.stream});
  CHECK(frugal::cuda_async_resource{s.stream} != frugal::cuda_async_resource{other.stream});
  CHECK(frugal::cuda_async_resource{s.stream} != gpu);
  CHECK(frugal::cuda_async_resource{s.stream}.device() == gpu.device());
}

TEST_CASE("cuda_async_resource: a request beyond device memory throws out_of_memory", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  stream_holder s;
  frugal::cuda_async_resource gpu{s.stream};
  const std::size_t bytes = 2 * device_total_memory();
  try {
    (void)gpu.allocate(bytes);
    FAIL("allocating twice the device memory succeeded");
  } catch (const frugal::out_of_memory& e) {
    check_oom_message(e, bytes, "cuda_async_resource");
  }
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(gpu.try_allocate(bytes) == nullptr);
  void* p = gpu.allocate(MiB);
  check_usable(p, MiB, 0x02, s.stream);
  gpu.deallocate(p, MiB);
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(s.stream));
}

// ---- pinned_resource ----------------------------------------------------------------------------

TEST_CASE("pinned_resource: host writes, device reads and writes, host reads back", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::pinned_resource pinned;
  frugal::cuda_resource gpu;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{4097}, 64 * MiB}) {
    INFO("bytes " << bytes);
    auto* host = static_cast<unsigned char*>(pinned.allocate(bytes));
    REQUIRE(host != nullptr);
    CHECK(aligned(host, 256));
    cudaPointerAttributes attributes{};
    REQUIRE(cudaPointerGetAttributes(&attributes, host) == cudaSuccess);
    CHECK(attributes.type == cudaMemoryTypeHost);

    std::memset(host, 0x3C, bytes);  // host writes
    void* device = gpu.allocate(bytes);
    FRUGAL_CUDA_TRY(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
    CHECK(frugal::device::count_bytes(device, bytes, 0x3C) == bytes);
    CHECK(frugal::device::count_bytes(host, bytes, 0x3C) == bytes);  // the device reads it directly

    frugal::device::fill_bytes(device, bytes, 0xD2);
    FRUGAL_CUDA_TRY(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
    CHECK(host[0] == 0xD2);
    CHECK(host[bytes - 1] == 0xD2);
    CHECK(host[bytes / 2] == 0xD2);
    gpu.deallocate(device, bytes);
    pinned.deallocate(host, bytes);
  }
  CHECK(pinned.allocate(0) == nullptr);
  void* p = pinned.allocate(100, 128);
  CHECK(aligned(p, 128));
  frugal::pinned_resource{}.deallocate(p, 100, 128);  // equal instances free each other's memory
}

// ---- cuda_virtual_resource ----------------------------------------------------------------------

TEST_CASE("cuda_virtual_resource: reserves address space and commits on demand", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_virtual_resource gpu{{.reserve_bytes = 4 * GiB + 1}};
  const std::size_t g = gpu.granularity();
  REQUIRE(g >= frugal::cuda_virtual_resource::unit_bytes);
  CHECK(gpu.reserved_address_space() % g == 0);
  CHECK(gpu.reserved_address_space() >= 4 * GiB + 1);
  CHECK(gpu.committed_bytes() == 0);
  int current = -1;
  FRUGAL_CUDA_TRY(cudaGetDevice(&current));
  CHECK(gpu.device() == current);
  CHECK(gpu.is_valid());

  // Sizes from 1 byte to 1 GiB, each filled and counted on the device.
  for (std::size_t bytes : sizes) {
    INFO("bytes " << bytes);
    void* p = gpu.allocate(bytes);
    REQUIRE(p != nullptr);
    CHECK(aligned(p, 256));
    CHECK(gpu.committed_bytes() >= bytes);
    check_usable(p, bytes, 0x99);
    gpu.deallocate(p, bytes);
    CHECK(gpu.is_valid());
  }
  CHECK(gpu.stats().bytes_in_use == 0);
  CHECK(gpu.stats().allocations == 0);
  CHECK(gpu.stats().peak_bytes_in_use == GiB);
  CHECK(gpu.committed_bytes() >= GiB);  // nothing is decommitted before trim()
  CHECK(gpu.trim() >= GiB);
  CHECK(gpu.committed_bytes() == 0);

  // Alignments up to the granularity; beyond it, invalid_argument.
  for (std::size_t alignment = 1; alignment <= g; alignment *= 8) {
    void* p = gpu.allocate(100, alignment);
    CHECK(aligned(p, alignment));
    gpu.deallocate(p, 100, alignment);
  }
  CHECK_THROWS_AS(gpu.allocate(100, 2 * g), frugal::invalid_argument);
  CHECK_THROWS_AS(gpu.allocate(100, 3), frugal::invalid_argument);
  CHECK(gpu.try_allocate(100, 3) == nullptr);
  CHECK(gpu.allocate(0) == nullptr);
  gpu.deallocate(nullptr, 0);
  CHECK(gpu.is_valid());
}

TEST_CASE(
    "cuda_virtual_resource: live ranges are disjoint, keep their bytes, and trim frees "
    "only unused granules",
    "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_virtual_resource gpu{{.reserve_bytes = GiB}};
  const std::size_t g = gpu.granularity();
  struct block {
    void* p;
    std::size_t bytes;
    std::uint8_t value;
  };
  std::vector<block> blocks;
  const std::size_t request[] = {1, 3 * MiB, 100 * KiB, 17 * MiB + 5, 4096, 2 * g, 1};
  std::uint8_t value = 1;
  for (std::size_t bytes : request) {
    void* p = gpu.allocate(bytes);
    REQUIRE(p != nullptr);
    frugal::device::fill_bytes(p, bytes, value);
    blocks.push_back({p, bytes, value++});
  }
  std::size_t in_use = 0;
  for (const auto& b : blocks) in_use += b.bytes;
  auto s = gpu.stats();
  CHECK(s.bytes_in_use == in_use);
  CHECK(s.allocations == blocks.size());
  CHECK(s.bytes_reserved == gpu.committed_bytes());
  CHECK(s.bytes_in_use <= s.bytes_reserved);
  CHECK(gpu.is_valid());

  // No two live ranges overlap, and every range lies inside the reservation.
  const auto base = reinterpret_cast<std::uintptr_t>(gpu.base());
  std::map<std::uintptr_t, std::size_t> live;
  for (const auto& b : blocks) live.emplace(reinterpret_cast<std::uintptr_t>(b.p), b.bytes);
  REQUIRE(live.size() == blocks.size());
  for (auto it = live.begin(); it != live.end(); ++it) {
    CHECK(it->first >= base);
    CHECK(it->first + it->second <= base + gpu.reserved_address_space());
    if (auto next = std::next(it); next != live.end()) CHECK(it->first + it->second <= next->first);
  }
  // Every range still holds its own value: nothing overwrote anything.
  for (const auto& b : blocks) CHECK(frugal::device::count_bytes(b.p, b.bytes, b.value) == b.bytes);

  // Free every other block; committed memory stays until trim(), which releases something but
  // never a granule a live block touches.
  const std::size_t committed_before = gpu.committed_bytes();
  for (std::size_t i = 1; i < blocks.size(); i += 2) gpu.deallocate(blocks[i].p, blocks[i].bytes);
  CHECK(gpu.committed_bytes() == committed_before);
  const std::size_t released = gpu.trim();
  CHECK(released > 0);
  CHECK(gpu.committed_bytes() == committed_before - released);
  CHECK(gpu.is_valid());
  for (std::size_t i = 0; i < blocks.size(); i += 2)
    CHECK(frugal::device::count_bytes(blocks[i].p, blocks[i].bytes, blocks[i].value) ==
          blocks[i].bytes);
  for (std::size_t i = 0; i < blocks.size(); i += 2) gpu.deallocate(blocks[i].p, blocks[i].bytes);
  gpu.trim();
  CHECK(gpu.committed_bytes() == 0);
  CHECK(gpu.stats().bytes_in_use == 0);
  CHECK(gpu.stats().largest_free_block == gpu.reserved_address_space());
}

TEST_CASE("cuda_virtual_resource: random allocations never overlap", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_virtual_resource gpu{{.reserve_bytes = 2 * GiB}};
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::size_t> size_of(1, 4 * MiB);
  std::map<std::uintptr_t, std::size_t> live;
  std::vector<std::pair<void*, std::size_t>> order;
  for (int i = 0; i < 1000; ++i) {
    if (!order.empty() && rng() % 3 == 0) {
      const std::size_t k = rng() % order.size();
      const auto [p, bytes] = order[k];
      order[k] = order.back();
      order.pop_back();
      live.erase(reinterpret_cast<std::uintptr_t>(p));
      gpu.deallocate(p, bytes);
      if (rng() % 10 == 0) gpu.trim();
      continue;
    }
    const std::size_t bytes = size_of(rng);
    const std::size_t alignment = std::size_t{1} << (rng() % 13);
    void* p = gpu.allocate(bytes, alignment);
    REQUIRE(p != nullptr);
    REQUIRE(aligned(p, alignment));
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    auto next = live.lower_bound(address);
    if (next != live.end()) REQUIRE(address + bytes <= next->first);
    if (next != live.begin()) REQUIRE(std::prev(next)->first + std::prev(next)->second <= address);
    live.emplace(address, bytes);
    order.emplace_back(p, bytes);
  }
  REQUIRE(gpu.is_valid());
  // Fill every live block with its own pattern and check each one afterwards.
  std::uint8_t v = 0;
  for (auto [p, bytes] : order) frugal::device::fill_bytes(p, bytes, ++v);
  v = 0;
  for (auto [p, bytes] : order) CHECK(frugal::device::count_bytes(p, bytes, ++v) == bytes);
  for (auto [p, bytes] : order) gpu.deallocate(p, bytes);
  CHECK(gpu.stats().bytes_in_use == 0);
  gpu.trim();
  CHECK(gpu.committed_bytes() == 0);
  CHECK(gpu.is_valid());
}

// Commits 2 MiB granules until the device refuses, so nearly all of its memory is taken for a
// moment: tagged [fills-gpu], which ctest runs alone (tests/gpu/CMakeLists.txt).
TEST_CASE("cuda_virtual_resource: out of address space and out of device memory",
          "[gpu][fills-gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  {
    frugal::cuda_virtual_resource gpu{{.reserve_bytes = 64 * MiB}};
    void* keep = gpu.allocate(48 * MiB);
    const auto before = gpu.stats();
    try {
      (void)gpu.allocate(32 * MiB);
      FAIL("allocating past the reserved address space succeeded");
    } catch (const frugal::out_of_memory& e) {
      check_oom_message(e, 32 * MiB, "cuda_virtual_resource");
    }
    CHECK(gpu.try_allocate(GiB) == nullptr);
    CHECK(gpu.stats() == before);
    gpu.deallocate(keep, 48 * MiB);
  }
  {
    // Reserving more than the device holds is fine; committing it is not.
    const std::size_t total = device_total_memory();
    frugal::cuda_virtual_resource gpu{{.reserve_bytes = 2 * total}};
    void* keep = gpu.allocate(MiB);
    const auto before = gpu.stats();
    const std::size_t bytes = total + total / 2;
    try {
      (void)gpu.allocate(bytes);
      FAIL("committing more than the device memory succeeded");
    } catch (const frugal::out_of_memory& e) {
      check_oom_message(e, bytes, "cuda_virtual_resource");
    }
    CHECK(gpu.stats() == before);  // the granules committed before the failure were undone
    CHECK(gpu.committed_bytes() == before.bytes_reserved);
    CHECK(gpu.is_valid());
    check_usable(keep, MiB, 0x42);
    gpu.deallocate(keep, MiB);
  }
}

TEST_CASE("cuda_virtual_resource: equality is identity, moves keep it, misuse is reported",
          "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::cuda_virtual_resource a{{.reserve_bytes = 64 * MiB}};
  frugal::cuda_virtual_resource b{{.reserve_bytes = 64 * MiB}};
  CHECK(a == a);
  CHECK(a != b);
  void* p = a.allocate(1000);
  frugal::cuda_virtual_resource moved = std::move(a);
  CHECK(moved != b);
  check_usable(p, 1000, 0x10);
  {
    misuse_recorder recorder;
    moved.deallocate(p, 999);                            // wrong size
    b.deallocate(p, 1000);                               // another resource's pointer
    moved.deallocate(static_cast<char*>(p) + 256, 744);  // not the start of an allocation
    REQUIRE(misuse_recorder::kinds.size() == 3);
    CHECK(misuse_recorder::kinds[0] == frugal::misuse_kind::size_mismatch);
    CHECK(misuse_recorder::kinds[1] == frugal::misuse_kind::unknown_pointer);
    CHECK(misuse_recorder::kinds[2] == frugal::misuse_kind::unknown_pointer);
    CHECK(moved.stats().allocations == 1);  // nothing changed
    moved.deallocate(p, 1000);
    moved.deallocate(p, 1000);  // double free
    REQUIRE(misuse_recorder::kinds.size() == 4);
    CHECK(misuse_recorder::kinds[3] == frugal::misuse_kind::double_free);
  }
  CHECK(moved.stats().allocations == 0);
  CHECK(moved.is_valid());
}
