// Decode attention on the CPU over paged KV: 64 sequences of 2,048 tokens, fp16 KV, 8 KV heads
// of 128 dimensions, 32 query heads (GQA 4), pages of 16 tokens scattered over the pool. Reported
// as KV bytes read per second beside a memcpy of the same bytes in the same run: attention that
// keeps up with memory bandwidth is bound by the bytes of the cache, which is what paging and
// 8-bit KV reduce.
#include <frugal/kv/attention.hpp>
#include <frugal/mr/host_resource.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

namespace {

namespace kv = frugal::kv;

constexpr std::size_t sequences = 64, tokens = 2048;

kv::layout decode_layout(kv::dtype type) {
  return {.num_layers = 1, .num_kv_heads = 8, .head_dim = 128, .page_size = 16, .dtype = type};
}

/// A pool filled with random K/V and a table giving each sequence 128 shuffled pages.
struct decode_batch {
  frugal::host_resource host;
  kv::page_pool pool;
  kv::flashinfer_page_table table;
  std::vector<float> q, out, scales;
  std::vector<std::int32_t> qo;

  explicit decode_batch(kv::dtype type)
      : pool(decode_layout(type), static_cast<std::uint32_t>(sequences * tokens / 16), host) {
    std::mt19937_64 rng(1);
    // Finite codes of every type: each byte's bits 2 and 6 clear (no fp16/fp8 exponent of all
    // ones), eight random bytes per draw.
    auto* bytes = reinterpret_cast<std::uint8_t*>(pool.memory().data());
    for (std::size_t i = 0; i + 8 <= pool.memory().size(); i += 8) {
      const std::uint64_t word = rng() & 0xBBBBBBBBBBBBBBBBull;
      std::memcpy(bytes + i, &word, 8);
    }
    if (type == kv::dtype::fp32) {  // random bits would be denormals and huge values
      auto* floats = reinterpret_cast<float*>(bytes);
      std::normal_distribution<float> normal;
      for (std::size_t i = 0; i < pool.memory().size() / sizeof(float); ++i)
        floats[i] = normal(rng);
    }
    std::vector<std::int32_t> ids(pool.num_pages());
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.indices = ids;
    for (std::size_t s = 0; s <= sequences; ++s)
      table.indptr.push_back(static_cast<std::int32_t>(s * tokens / 16));
    table.last_page_len.assign(sequences, 16);
    q.resize(sequences * 32 * 128);
    std::normal_distribution<float> normal;
    for (float& x : q) x = normal(rng);
    out.resize(q.size());
    qo.resize(sequences + 1);
    std::iota(qo.begin(), qo.end(), 0);
    scales.assign(pool.layout().scales_per_layer(), 0.01f);
  }
  std::size_t kv_bytes() const { return sequences * tokens * 2 * pool.layout().token_bytes(); }
};

void BM_decode_attention(benchmark::State& state, kv::dtype type) {
  decode_batch b(type);
  for (auto _ : state) {
    kv::paged_attention(b.pool, 0, b.q, b.qo, b.table, b.out, {.num_qo_heads = 32}, b.scales);
    benchmark::DoNotOptimize(b.out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * b.kv_bytes()));
}

/// The peer: copying the same number of bytes (the fp16 cache) from one buffer to another.
void BM_decode_attention_memcpy(benchmark::State& state) {
  const std::size_t bytes = sequences * tokens * 2 * decode_layout(kv::dtype::fp16).token_bytes();
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

}  // namespace

BENCHMARK_CAPTURE(BM_decode_attention, frugal_fp16, kv::dtype::fp16)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_attention_memcpy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_decode_attention, frugal_fp8_e4m3, kv::dtype::fp8_e4m3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_decode_attention, frugal_fp32, kv::dtype::fp32)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
