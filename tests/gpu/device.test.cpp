// Device utilities (frugal/device.hpp), and what every CUDA failure must leave behind: an
// exception, no pending error in the runtime, and no stream-ordered memory. One case runs
// without a device (every CUDA call then fails); the exhausted-pool case needs one.
#include "gpu/gpu.hpp"

#include <frugal/error.hpp>
#include <frugal/kv/copy_kernel.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/quant/kernels.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <new>
#include <vector>

TEST_CASE("device: fill_bytes and count_bytes agree", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  const std::size_t bytes = (std::size_t{1} << 24) + 17;
  void* p = nullptr;
  FRUGAL_CUDA_TRY(cudaMalloc(&p, bytes));
  frugal::device::fill_bytes(p, bytes, 0xAB);
  frugal::device::fill_bytes(p, 17, 0x00);
  CHECK(frugal::device::count_bytes(p, bytes, 0xAB) == bytes - 17);
  CHECK(frugal::device::count_bytes(p, bytes, 0x00) == 17);
  FRUGAL_CUDA_TRY(cudaFree(p));
}

TEST_CASE("FRUGAL_CUDA_TRY leaves no pending error behind", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  (void)cudaGetLastError();
  void* p = nullptr;
  // 2^62 bytes: out of memory on any device, an error the runtime also keeps as the last one.
  CHECK_THROWS_AS([&] { FRUGAL_CUDA_TRY(cudaMalloc(&p, std::size_t{1} << 62)); }(),
                  frugal::cuda_error);
  CHECK(cudaPeekAtLastError() == cudaSuccess);
  // The next launch's own check passes.
  void* q = nullptr;
  FRUGAL_CUDA_TRY(cudaMalloc(&q, 256));
  CHECK_NOTHROW(frugal::device::fill_bytes(q, 256, 0));
  FRUGAL_CUDA_TRY(cudaFree(q));
}

TEST_CASE("without a device the launchers throw cuda_error", "[gpu]") {
  if (frugal::device::count() != 0) {
    // On a device these calls would succeed; the exhausted-pool case below takes the failure
    // paths there.
    SUCCEED("a device is present");
    return;
  }
  // Without a driver the runtime returns its initialization error from every call, the
  // error queries included, so whether the last error was cleared can only be asked when the
  // runtime could clear it (a driver without a device). tests/error.test.cpp checks the macro's
  // clearing on any host.
  (void)cudaGetLastError();
  const bool clearable = cudaPeekAtLastError() == cudaSuccess;
  auto no_pending_error = [&] { return !clearable || cudaPeekAtLastError() == cudaSuccess; };
  alignas(256) static std::uint8_t fake[1024];  // never dereferenced: every call fails first
  CHECK_THROWS_AS(frugal::device::count_bytes(fake, 16, 0), frugal::cuda_error);
  CHECK(no_pending_error());
  CHECK_THROWS_AS(frugal::device::fill_bytes(fake, 16, 0), frugal::cuda_error);
  CHECK(no_pending_error());
  CHECK_THROWS_AS(frugal::quant::quantize_device(frugal::quant::format::int8,
                                                 reinterpret_cast<const float*>(fake), 4, 32,
                                                 reinterpret_cast<std::byte*>(fake + 512)),
                  frugal::cuda_error);
  CHECK(no_pending_error());
  const frugal::kv::copy_op op{0, 1};
  CHECK_THROWS_AS(frugal::kv::copy_pages_device(reinterpret_cast<const std::byte*>(fake),
                                                reinterpret_cast<std::byte*>(fake + 512), 64, 64,
                                                64, &op, 1, nullptr),
                  frugal::cuda_error);
  CHECK(no_pending_error());
}

namespace {

/// Makes a stream-ordered pool of at most `max_bytes` the device's current pool, and restores
/// the previous one when it goes.
struct capped_pool {
  int device = 0;
  cudaMemPool_t pool{};
  cudaMemPool_t previous{};
  explicit capped_pool(std::size_t max_bytes) {
    FRUGAL_CUDA_TRY(cudaGetDevice(&device));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    props.maxSize = max_bytes;
    FRUGAL_CUDA_TRY(cudaMemPoolCreate(&pool, &props));
    FRUGAL_CUDA_TRY(cudaDeviceGetMemPool(&previous, device));
    FRUGAL_CUDA_TRY(cudaDeviceSetMemPool(device, pool));
  }
  ~capped_pool() {
    (void)cudaDeviceSynchronize();
    (void)cudaDeviceSetMemPool(device, previous);
    (void)cudaMemPoolDestroy(pool);
  }
  capped_pool(const capped_pool&) = delete;
  capped_pool& operator=(const capped_pool&) = delete;
  std::uint64_t used() const {
    std::uint64_t bytes = 0;
    FRUGAL_CUDA_TRY(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &bytes));
    return bytes;
  }
};

}  // namespace

TEST_CASE("an exhausted stream pool: out_of_memory, no pending error, nothing kept", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  namespace q = frugal::quant;
  constexpr std::size_t MiB = std::size_t{1} << 20;
  frugal::cuda_resource gpu;
  const std::size_t rows = 4, cols = 256;
  const q::layout l = q::layout_of(q::format::int8, rows, cols);
  void* input = gpu.allocate(rows * cols * sizeof(float));
  void* packed = gpu.allocate(l.total_bytes);
  void* counted = gpu.allocate(4096);
  frugal::device::fill_bytes(input, rows * cols * sizeof(float), 0);
  frugal::device::fill_bytes(counted, 4096, 0x5A);
  const frugal::kv::layout kv_layout{
      .num_layers = 1, .num_kv_heads = 1, .head_dim = 16, .page_size = 16};
  frugal::kv::page_pool kv_src(kv_layout, 4, gpu), kv_dst(kv_layout, 4, gpu);
  const std::vector<frugal::kv::copy_op> ops = {{0, 1}, {2, 3}};
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  {
    capped_pool capped(2 * MiB);
    // Take the whole pool, whatever the driver rounds its cap to: 2 MiB pieces, then halves
    // down to 256 bytes, until the pool refuses each size.
    std::vector<void*> filler;
    for (std::size_t piece = 2 * MiB; piece >= 256 && filler.size() < 4096;) {
      void* p = nullptr;
      if (cudaMallocAsync(&p, piece, nullptr) == cudaSuccess) {
        filler.push_back(p);
      } else {
        (void)cudaGetLastError();
        piece /= 2;
      }
    }
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    REQUIRE_FALSE(filler.empty());
    const std::uint64_t full = capped.used();
    CHECK(full > 0);

    CHECK_THROWS_AS(frugal::device::count_bytes(counted, 4096, 0x5A), frugal::out_of_memory);
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    CHECK_THROWS_AS(q::quantize_device(q::format::int8, static_cast<const float*>(input), rows,
                                       cols, static_cast<std::byte*>(packed)),
                    frugal::out_of_memory);
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    CHECK_THROWS_AS(frugal::kv::copy_pages_device(kv_src, kv_dst, ops), frugal::out_of_memory);
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    // A launch that needs no scratch still passes its own error check.
    CHECK_NOTHROW(frugal::device::fill_bytes(counted, 4096, 0x5A));
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(capped.used() == full);

    // With room again, the same calls work and give every byte back to the pool.
    for (void* p : filler) FRUGAL_CUDA_TRY(cudaFreeAsync(p, nullptr));
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(frugal::device::count_bytes(counted, 4096, 0x5A) == 4096);
    CHECK_NOTHROW(q::quantize_device(q::format::int8, static_cast<const float*>(input), rows, cols,
                                     static_cast<std::byte*>(packed)));
    CHECK_NOTHROW(frugal::kv::copy_pages_device(kv_src, kv_dst, ops));
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    CHECK(capped.used() == 0);
  }
  gpu.deallocate(input, rows * cols * sizeof(float));
  gpu.deallocate(packed, l.total_bytes);
  gpu.deallocate(counted, 4096);
}
