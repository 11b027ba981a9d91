// write_kv_device against write_kv byte for byte, and paged_decode_device against the CPU
// paged_attention, over random page tables with NaN in every slot no sequence owns. The argument
// checks run without a device.
#include "gpu/gpu.hpp"

#include <frugal/error.hpp>
#include <frugal/kv/attention.hpp>
#include <frugal/kv/attention_kernels.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/host_resource.hpp>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

namespace kv = frugal::kv;

/// A device buffer holding a copy of `host`, freed at scope end.
template <class T>
struct device_copy {
  T* p = nullptr;
  explicit device_copy(const std::vector<T>& host) {
    void* memory = nullptr;
    FRUGAL_CUDA_TRY(cudaMalloc(&memory, std::max<std::size_t>(host.size(), 1) * sizeof(T)));
    p = static_cast<T*>(memory);
    if (!host.empty())
      FRUGAL_CUDA_TRY(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~device_copy() { cudaFree(p); }
  device_copy(const device_copy&) = delete;
  device_copy& operator=(const device_copy&) = delete;
};

std::vector<float> scales_for(const kv::layout& l) {
  std::vector<float> s(l.scales_per_layer());
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = 0.02f + 0.001f * static_cast<float>(i);
  return s;
}

/// A random batch: sequences on shuffled pages of a pool poisoned with 0xFF (NaN for the float
/// types), written with write_kv on the host, then copied to the device pool as they are.
struct batch_on_pages {
  frugal::host_resource host;
  frugal::cuda_resource gpu;
  kv::page_pool host_pool, device_pool;
  kv::flashinfer_page_table table;
  std::vector<float> scales;
  std::size_t max_pages = 0;

  batch_on_pages(const kv::layout& l, const std::vector<std::size_t>& lengths, std::uint64_t seed)
      : host_pool(l, pages_for(l, lengths), host),
        device_pool(l, pages_for(l, lengths), gpu),
        scales(scales_for(l)) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::memset(host_pool.memory().data(), 0xFF, host_pool.memory().size());
    std::vector<kv::page_id> free_pages(host_pool.num_pages());
    std::iota(free_pages.begin(), free_pages.end(), 0u);
    std::shuffle(free_pages.begin(), free_pages.end(), rng);
    table.indptr.push_back(0);
    const std::size_t row = std::size_t{l.num_kv_heads} * l.head_dim;
    for (const std::size_t n : lengths) {
      const std::size_t pages = (n + l.page_size - 1) / l.page_size;
      max_pages = std::max(max_pages, pages);
      std::vector<std::int64_t> slots(n);
      for (std::size_t p = 0; p < pages; ++p) {
        table.indices.push_back(static_cast<std::int32_t>(free_pages.back()));
        free_pages.pop_back();
      }
      const auto first = table.indices.end() - static_cast<std::ptrdiff_t>(pages);
      for (std::size_t t = 0; t < n; ++t)
        slots[t] = std::int64_t{first[static_cast<std::ptrdiff_t>(t / l.page_size)]} * l.page_size +
                   static_cast<std::int64_t>(t % l.page_size);
      std::vector<float> k(n * row), v(n * row);
      for (float& x : k) x = normal(rng);
      for (float& x : v) x = normal(rng);
      kv::write_kv(host_pool, 0, k, v, slots, scales);
      table.indptr.push_back(static_cast<std::int32_t>(table.indices.size()));
      table.last_page_len.push_back(static_cast<std::int32_t>((n - 1) % l.page_size + 1));
    }
    FRUGAL_CUDA_TRY(cudaMemcpy(device_pool.memory().data(), host_pool.memory().data(),
                               host_pool.memory().size(), cudaMemcpyHostToDevice));
  }

  static std::uint32_t pages_for(const kv::layout& l, const std::vector<std::size_t>& lengths) {
    std::size_t pages = 0;
    for (const std::size_t n : lengths) pages += (n + l.page_size - 1) / l.page_size;
    return static_cast<std::uint32_t>(2 * pages + 3);
  }
};

}  // namespace

TEST_CASE("write_kv_device writes the bytes write_kv writes", "[gpu][attention]") {
  FRUGAL_REQUIRE_DEVICE();
  const kv::dtype type = GENERATE(kv::dtype::fp32, kv::dtype::fp16, kv::dtype::bf16,
                                  kv::dtype::fp8_e4m3, kv::dtype::fp8_e5m2, kv::dtype::int8);
  const kv::order order = GENERATE(kv::order::nhd, kv::order::hnd);
  const kv::layout l{.num_layers = 2,
                     .num_kv_heads = 4,
                     .head_dim = 24,
                     .page_size = 16,
                     .dtype = type,
                     .order = order,
                     .scales = kv::scale_granularity::per_head};
  frugal::host_resource host;
  frugal::cuda_resource gpu;
  kv::page_pool host_pool{l, 20, host}, device_pool{l, 20, gpu};
  std::memset(host_pool.memory().data(), 0xCD, host_pool.memory().size());
  FRUGAL_CUDA_TRY(cudaMemset(device_pool.memory().data(), 0xCD, device_pool.memory().size()));
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::int64_t> slots(150);
  std::vector<std::int64_t> all(20 * 16);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  std::copy_n(all.begin(), slots.size(), slots.begin());
  slots[7] = -1;  // padding: skipped by both
  std::vector<float> k(slots.size() * 4 * 24), v(k.size());
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  k[5] = NAN;
  v[9] = 1e30f;  // saturates (fp8) or clamps (int8) the same way on both
  const auto scales = scales_for(l);
  kv::write_kv(host_pool, 1, k, v, slots, scales);
  const device_copy<float> dk(k), dv(v);
  const device_copy<std::int64_t> ds(slots);
  kv::write_kv_device(device_pool, 1, dk.p, dv.p, ds.p, slots.size(), scales);
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  std::vector<std::byte> device(device_pool.memory().size());
  FRUGAL_CUDA_TRY(cudaMemcpy(device.data(), device_pool.memory().data(), device.size(),
                             cudaMemcpyDeviceToHost));
  CHECK(std::memcmp(device.data(), host_pool.memory().data(), device.size()) == 0);
}

TEST_CASE("paged_decode_device equals the CPU paged_attention", "[gpu][attention]") {
  FRUGAL_REQUIRE_DEVICE();
  const kv::dtype type = GENERATE(kv::dtype::fp32, kv::dtype::fp16, kv::dtype::bf16,
                                  kv::dtype::fp8_e4m3, kv::dtype::fp8_e5m2, kv::dtype::int8);
  const std::uint32_t ratio = GENERATE(1u, 4u, 8u);
  const std::uint32_t page_size = GENERATE(1u, 16u);
  const std::uint32_t pages_per_split = GENERATE(2u, 32u);
  const std::int32_t window = GENERATE(-1, 100);
  const kv::layout l{.num_layers = 1,
                     .num_kv_heads = 2,
                     .head_dim = 64,
                     .page_size = page_size,
                     .dtype = type,
                     .order = page_size == 1 ? kv::order::nhd : kv::order::hnd};
  const std::vector<std::size_t> lengths{1, 17, 300, 1000, 33, 2000};
  batch_on_pages b{l, lengths, 11};
  const std::size_t batch = lengths.size(), heads = 2 * ratio;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> q(batch * heads * 64);
  for (float& x : q) x = normal(rng);
  std::vector<std::int32_t> qo(batch + 1);
  std::iota(qo.begin(), qo.end(), 0);
  const kv::attention_options options{.num_qo_heads = static_cast<std::uint32_t>(heads),
                                      .window_left = window};
  std::vector<float> want(q.size());
  kv::paged_attention(b.host_pool, 0, q, qo, b.table, want, options, b.scales);

  const device_copy<float> dq(q);
  const device_copy<std::int32_t> indptr(b.table.indptr), indices(b.table.indices),
      last(b.table.last_page_len);
  std::vector<float> poisoned(q.size(), NAN);
  const device_copy<float> dout(poisoned);
  kv::paged_decode_device(b.device_pool, 0, dq.p, {indptr.p, indices.p, last.p}, batch, b.max_pages,
                          dout.p, options, b.scales, nullptr, {.pages_per_split = pages_per_split});
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
  std::vector<float> got(q.size());
  FRUGAL_CUDA_TRY(
      cudaMemcpy(got.data(), dout.p, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  double worst = 0;
  for (std::size_t r = 0; r < got.size(); r += 64) {
    double err = 0, mag = 0;
    for (std::size_t d = 0; d < 64; ++d) {
      const double diff = std::abs(double{got[r + d]} - want[r + d]);
      err = std::isnan(diff) ? INFINITY : std::max(err, diff);
      mag = std::max(mag, std::abs(double{want[r + d]}));
    }
    worst = std::max(worst, err / std::max(mag, 1e-30));
  }
  INFO(kv::to_string(type) << " ratio " << ratio << " page " << page_size << " split "
                           << pages_per_split << " window " << window << ": " << worst);
  CHECK(worst <= 2e-5);
}

TEST_CASE("attention kernels check their arguments without a device", "[gpu][attention]") {
  // Every check below comes before the first CUDA call, so it runs on any machine.
  frugal::host_resource host;
  const kv::layout l{
      .num_layers = 2, .num_kv_heads = 2, .head_dim = 8, .page_size = 4, .dtype = kv::dtype::int8};
  kv::page_pool pool{l, 4, host};
  const std::vector<float> scales{1, 1}, too_few{1}, negative{1, -1};
  CHECK_THROWS_WITH(kv::write_kv_device(pool, 2, nullptr, nullptr, nullptr, 1, scales),
                    Catch::Contains("layer 2 of a 2-layer cache"));
  CHECK_THROWS_WITH(kv::write_kv_device(pool, 0, nullptr, nullptr, nullptr, 1, too_few),
                    Catch::Contains("takes 2 scales per layer, 1 given"));
  CHECK_THROWS_AS(kv::write_kv_device(pool, 0, nullptr, nullptr, nullptr, 1, negative),
                  frugal::invalid_argument);
  const kv::device_page_table none{};
  CHECK_THROWS_WITH(
      kv::paged_decode_device(pool, 0, nullptr, none, 1, 1, nullptr, {.num_qo_heads = 3}, scales),
      Catch::Contains("positive multiple of num_kv_heads"));
  CHECK_THROWS_WITH(kv::paged_decode_device(pool, 0, nullptr, none, 1, 1, nullptr,
                                            {.num_qo_heads = 2 * 33}, scales),
                    Catch::Contains("at most 32 query heads per KV head"));
  CHECK_THROWS_WITH(kv::paged_decode_device(pool, 0, nullptr, none, 1, 1, nullptr,
                                            {.num_qo_heads = 2, .causal = false}, scales),
                    Catch::Contains("causal"));
  CHECK_THROWS_WITH(
      kv::paged_decode_device(pool, 0, nullptr, none, 1, 1, nullptr, {.num_qo_heads = 2}, scales,
                              nullptr, {.pages_per_split = 0}),
      Catch::Contains("pages_per_split is zero"));
  const kv::layout wide{.num_layers = 1, .num_kv_heads = 1, .head_dim = 512, .page_size = 4};
  kv::page_pool wide_pool{wide, 1, host};
  CHECK_THROWS_WITH(
      kv::paged_decode_device(wide_pool, 0, nullptr, none, 1, 1, nullptr, {.num_qo_heads = 1}),
      Catch::Contains("head_dim above 256"));
}
