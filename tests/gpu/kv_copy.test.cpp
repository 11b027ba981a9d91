// The batched page-copy kernel against copy_pages_host, byte for byte: random pages, random copy
// lists, the destination poisoned first so that a missed byte shows; raw-pointer copies of odd
// page sizes (the byte-wise tail) against memcpy and the kernel's host emulation.
#include "gpu/gpu.hpp"
#include "kv/random_copy_ops.hpp"

#include <frugal/error.hpp>
#include <frugal/kv/copy_kernel.hpp>
#include <frugal/kv/detail/copy_pages.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pinned_resource.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

using frugal::kv::copy_op;
using frugal::kv::page_id;
using frugal::kv::page_pool;

constexpr std::uint8_t poison = 0xCD;

void fill_random(std::span<std::byte> bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::byte& b : bytes) b = static_cast<std::byte>(rng());
}

std::vector<std::byte> to_host(const page_pool& pool) {
  std::vector<std::byte> bytes(pool.memory().size());
  FRUGAL_CUDA_TRY(
      cudaMemcpy(bytes.data(), pool.memory().data(), bytes.size(), cudaMemcpyDeviceToHost));
  return bytes;
}

/// Device pools and their host twins with the same random source pages and a poisoned
/// destination; copy() runs the kernel on the device pools and copy_pages_host on the twins.
struct pools {
  frugal::cuda_resource gpu;
  frugal::host_resource host;
  page_pool device_src, device_dst, host_src, host_dst;

  pools(const frugal::kv::layout& l, std::uint32_t src_pages, std::uint32_t dst_pages)
      : device_src(l, src_pages, gpu),
        device_dst(l, dst_pages, gpu),
        host_src(l, src_pages, host),
        host_dst(l, dst_pages, host) {
    fill_random(host_src.memory(), 42);
    std::memset(host_dst.memory().data(), poison, host_dst.memory().size());
    FRUGAL_CUDA_TRY(cudaMemcpy(device_src.memory().data(), host_src.memory().data(),
                               host_src.memory().size(), cudaMemcpyHostToDevice));
    frugal::device::fill_bytes(device_dst.memory().data(), device_dst.memory().size(), poison);
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  }
};

frugal::kv::layout llama_like() {  // 4 layers of an 8-KV-head, 128-dim model: 256 KiB pages
  return {.num_layers = 4, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
}

}  // namespace

TEST_CASE("kv copy kernel: random pages match copy_pages_host byte for byte", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  pools p{llama_like(), 64, 96};
  const auto ops = random_ops(80, 64, 96, 7);
  frugal::kv::copy_pages_host(p.host_src, p.host_dst, ops);
  frugal::kv::copy_pages_device(p.device_src, p.device_dst, ops);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  const auto device = to_host(p.device_dst);
  REQUIRE(device.size() == p.host_dst.memory().size());
  CHECK(std::memcmp(device.data(), p.host_dst.memory().data(), device.size()) == 0);
  // Pages no op wrote keep the poison; the source is untouched.
  CHECK(std::memcmp(to_host(p.device_src).data(), p.host_src.memory().data(),
                    p.host_src.memory().size()) == 0);
}

TEST_CASE("kv copy kernel: every access width and odd page sizes", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  // fp8 with head_dim 3: 2 x 16 x 2 x 3 = 192 bytes per layer, 3 layers = 576 bytes, and a
  // 1-layer, 1-head, 7-dim int8 layout gives 224; the fp16 one 4 KiB. Strides are 256-aligned.
  const frugal::kv::layout layouts[] = {
      {.num_layers = 3,
       .num_kv_heads = 2,
       .head_dim = 3,
       .page_size = 16,
       .dtype = frugal::kv::dtype::fp8_e4m3},
      {.num_layers = 1,
       .num_kv_heads = 1,
       .head_dim = 7,
       .page_size = 16,
       .dtype = frugal::kv::dtype::int8},
      {.num_layers = 2, .num_kv_heads = 2, .head_dim = 16, .page_size = 16},
  };
  for (const auto& l : layouts) {
    for (const int width : {16, 8, 4, 2, 1}) {
      for (const std::size_t chunk : {std::size_t{64}, std::size_t{16} << 10}) {
        CAPTURE(l.page_bytes(), width, chunk);
        pools p{l, 40, 50};
        const auto ops = random_ops(45, 40, 50, 100 + width);
        frugal::kv::copy_pages_host(p.host_src, p.host_dst, ops);
        frugal::kv::copy_pages_device(p.device_src, p.device_dst, ops, nullptr,
                                      {.threads_per_block = 64,
                                       .vec_bytes = width,
                                       .bytes_per_block = chunk,
                                       .max_blocks_x = 7});
        FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
        const auto device = to_host(p.device_dst);
        CHECK(std::memcmp(device.data(), p.host_dst.memory().data(), device.size()) == 0);
      }
    }
  }
}

namespace {

/// Copies 35 random pages of `page_bytes` bytes between raw device buffers (bases `src_offset` /
/// `dst_offset` bytes past cudaMalloc's 256-byte alignment) with the kernel; true when every
/// destination byte equals memcpy's result and the host emulation of the same launch
/// (detail::copy_pages_emulated on host buffers with the same offsets).
bool raw_copy_matches(std::size_t page_bytes, std::size_t src_stride, std::size_t dst_stride,
                      std::size_t src_offset, std::size_t dst_offset,
                      const frugal::kv::copy_kernel_tuning& tuning, std::uint64_t seed) {
  const std::uint32_t src_pages = 30, dst_pages = 40;
  const std::size_t src_bytes = src_pages * src_stride + src_offset;
  const std::size_t dst_bytes = dst_pages * dst_stride + dst_offset;
  std::vector<std::byte> host_src(src_bytes), expected(dst_bytes);
  fill_random(host_src, seed);
  std::memset(expected.data(), poison, expected.size());
  const auto ops = random_ops(35, src_pages, dst_pages, seed + 1);
  for (const copy_op& op : ops)
    std::memcpy(expected.data() + dst_offset + op.dst * dst_stride,
                host_src.data() + src_offset + op.src * src_stride, page_bytes);

  // The emulation runs on host copies placed at the same offsets from a 256-byte boundary.
  std::vector<std::byte> emulated_src(src_bytes + 256), emulated_dst(dst_bytes + 256);
  auto aligned = [](std::vector<std::byte>& v) {
    const auto a = reinterpret_cast<std::uintptr_t>(v.data());
    return v.data() + (256 - a % 256) % 256;
  };
  std::byte* esrc = aligned(emulated_src);
  std::byte* edst = aligned(emulated_dst);
  std::memcpy(esrc, host_src.data(), src_bytes);
  std::memset(edst, poison, dst_bytes);
  frugal::kv::detail::copy_pages_emulated(esrc + src_offset, edst + dst_offset, src_stride,
                                          dst_stride, page_bytes, ops.data(), ops.size(), tuning);
  const bool emulation_ok = std::memcmp(edst, expected.data(), dst_bytes) == 0;

  void *src_memory = nullptr, *dst_memory = nullptr, *ops_memory = nullptr;
  FRUGAL_CUDA_TRY(cudaMalloc(&src_memory, src_bytes));
  FRUGAL_CUDA_TRY(cudaMalloc(&dst_memory, dst_bytes));
  FRUGAL_CUDA_TRY(cudaMalloc(&ops_memory, ops.size() * sizeof(copy_op)));
  auto* src = static_cast<std::byte*>(src_memory);
  auto* dst = static_cast<std::byte*>(dst_memory);
  auto* ops_device = static_cast<copy_op*>(ops_memory);
  FRUGAL_CUDA_TRY(cudaMemcpy(src, host_src.data(), src_bytes, cudaMemcpyHostToDevice));
  FRUGAL_CUDA_TRY(cudaMemset(dst, poison, dst_bytes));
  FRUGAL_CUDA_TRY(
      cudaMemcpy(ops_device, ops.data(), ops.size() * sizeof(copy_op), cudaMemcpyHostToDevice));
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());  // the kernel below runs on the legacy stream too
  frugal::kv::copy_pages_device(src + src_offset, dst + dst_offset, src_stride, dst_stride,
                                page_bytes, ops_device, ops.size(), nullptr, tuning);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  std::vector<std::byte> device(dst_bytes);
  FRUGAL_CUDA_TRY(cudaMemcpy(device.data(), dst, device.size(), cudaMemcpyDeviceToHost));
  FRUGAL_CUDA_TRY(cudaFree(src));
  FRUGAL_CUDA_TRY(cudaFree(dst));
  FRUGAL_CUDA_TRY(cudaFree(ops_device));
  CHECK(emulation_ok);
  return std::memcmp(device.data(), expected.data(), device.size()) == 0;
}

}  // namespace

TEST_CASE("kv copy kernel: raw pointers with unaligned bases and strides", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  // Page 1,000 bytes, strides 1,004 and 1,012, bases offset by 4 and 2 bytes: the kernel must
  // fall back to narrower accesses and still match memcpy.
  CHECK(raw_copy_matches(1000, 1004, 1012, 4, 2, {}, 9));
}

TEST_CASE("kv copy kernel: odd page sizes copy their byte-wise tail", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  // 1001 and 1003 bytes with 256-aligned bases and 16-byte multiple strides: 62 words of 16
  // bytes, then a tail of 9 or 11 bytes that only the tail loop copies. Small chunks put the
  // words in several blocks along y; the tail belongs to the blocks with y == 0.
  for (const std::size_t page_bytes : {std::size_t{1001}, std::size_t{1003}}) {
    for (const std::size_t chunk : {std::size_t{64}, std::size_t{16} << 10}) {
      for (const int width : {16, 8, 4}) {
        CAPTURE(page_bytes, chunk, width);
        const frugal::kv::copy_kernel_tuning tuning{.threads_per_block = 64,
                                                    .vec_bytes = width,
                                                    .bytes_per_block = chunk,
                                                    .max_blocks_x = 7};
        CHECK(raw_copy_matches(page_bytes, 1008, 1024, 0, 0, tuning, page_bytes + chunk));
      }
    }
  }
}

TEST_CASE("kv copy kernel: a dependent copy list in one pool runs in order", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  // Copy-on-write chains: 0 -> 1, then 1 -> 2 (reads what the first op wrote), then 3 -> 0
  // (writes what the first op read), then 4 -> 2 (writes what an earlier op wrote).
  pools p{llama_like(), 8, 8};
  // One pool for both ends: the device twin is device_src, the host twin host_src.
  const std::vector<copy_op> ops = {{0, 1}, {1, 2}, {3, 0}, {4, 2}, {5, 6}};
  frugal::kv::copy_pages_host(p.host_src, p.host_src, ops);
  frugal::kv::copy_pages_device(p.device_src, p.device_src, ops);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  const auto device = to_host(p.device_src);
  CHECK(std::memcmp(device.data(), p.host_src.memory().data(), device.size()) == 0);
}

TEST_CASE("kv copy kernel: swap to a pinned host pool and back", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::pinned_resource pinned;
  pools p{llama_like(), 16, 16};
  page_pool host_tier{llama_like(), 16, pinned};
  std::memset(host_tier.memory().data(), poison, host_tier.memory().size());
  const auto out = random_ops(12, 16, 16, 21);
  frugal::kv::copy_pages_device(p.device_src, host_tier, out);  // device -> pinned host
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  frugal::kv::copy_pages_host(p.host_src, p.host_dst, out);
  CHECK(std::memcmp(host_tier.memory().data(), p.host_dst.memory().data(),
                    host_tier.memory().size()) == 0);
  std::vector<copy_op> back;  // host page -> a fresh device page, as swap_in does
  for (const copy_op& op : out) back.push_back({op.dst, op.src});
  frugal::kv::copy_pages_device(host_tier, p.device_dst, back);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  std::vector<std::byte> expected(p.host_dst.memory().size());
  std::memset(expected.data(), poison, expected.size());
  for (const copy_op& op : back)
    std::memcpy(expected.data() + op.dst * p.host_dst.page_stride(), host_tier.page_address(op.src),
                llama_like().page_bytes());
  CHECK(std::memcmp(to_host(p.device_dst).data(), expected.data(), expected.size()) == 0);
}

TEST_CASE("kv copy kernel: bad input is refused before any copy", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  pools p{llama_like(), 4, 4};
  const std::vector<copy_op> outside = {{0, 1}, {0, 4}};
  CHECK_THROWS_AS(frugal::kv::copy_pages_device(p.device_src, p.device_dst, outside),
                  frugal::invalid_argument);
  const std::vector<copy_op> one = {{0, 1}};
  // Pageable host memory cannot be reached by a kernel.
  CHECK_THROWS_AS(frugal::kv::copy_pages_device(p.host_src, p.device_dst, one),
                  frugal::invalid_argument);
  page_pool other{{.num_layers = 1, .num_kv_heads = 8, .head_dim = 128, .page_size = 16}, 4, p.gpu};
  CHECK_THROWS_AS(frugal::kv::copy_pages_device(p.device_src, other, one),
                  frugal::invalid_argument);
  CHECK_THROWS_AS(
      frugal::kv::copy_pages_device(p.device_src, p.device_dst, one, nullptr, {.vec_bytes = 3}),
      frugal::invalid_argument);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  const auto device = to_host(p.device_dst);
  CHECK(std::all_of(device.begin(), device.end(),
                    [](std::byte b) { return b == std::byte{poison}; }));
}
