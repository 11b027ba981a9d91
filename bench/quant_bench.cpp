// CPU quantization throughput: quantize() and dequantize() per format on one core, against a
// memcpy of the same bytes in the same run.
//
//   BM_quantize/<format>: quantize() of a 4,096 x 1,024 float32 matrix (16 MiB of N(0,1) data)
//     with options.threads = 1. Bytes processed: the 16 MiB of float32 input.
//   BM_dequantize/<format>: dequantize() of that matrix, quantized once beforehand, into 16 MiB
//     of float32. Bytes processed: the same 16 MiB (the float32 the call produces), so the two
//     directions and memcpy read in the same unit: GB/s of float32 data.
//   BM_memcpy/copy: std::memcpy of the 16 MiB input into another 16 MiB buffer.
// Every buffer is written once before timing, and the quantized tensors come from a pool that
// hands the same block back each iteration, so no page faults are timed.
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/quantized_tensor.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

namespace {

namespace quant = frugal::quant;
using quant::format;

constexpr std::size_t rows = 4096, cols = 1024;
constexpr std::int64_t input_bytes = static_cast<std::int64_t>(rows * cols * sizeof(float));

const std::vector<float>& input() {
  static const std::vector<float> data = [] {
    std::vector<float> v(rows * cols);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& x : v) x = normal(rng);
    return v;
  }();
  return data;
}

constexpr quant::options one_core{.mx_round_up_scale = false, .threads = 1};

void BM_quantize(benchmark::State& state, format f) {
  frugal::pool_resource pool{frugal::host_resource{}};
  const auto& x = input();
  { auto warm = quant::quantize(f, x, cols, pool, one_core); }  // the pool keeps the block
  for (auto _ : state) {
    auto q = quant::quantize(f, x, cols, pool, one_core);
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * input_bytes);
}

void BM_dequantize(benchmark::State& state, format f) {
  frugal::host_resource host;
  const auto q = quant::quantize(f, input(), cols, host, one_core);
  std::vector<float> out(rows * cols, 1.0f);
  for (auto _ : state) {
    quant::dequantize(q, out, one_core);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * input_bytes);
}

void BM_memcpy(benchmark::State& state, int) {
  const auto& x = input();
  std::vector<float> out(rows * cols, 1.0f);
  for (auto _ : state) {
    std::memcpy(out.data(), x.data(), static_cast<std::size_t>(input_bytes));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * input_bytes);
}

}  // namespace

BENCHMARK_CAPTURE(BM_memcpy, copy, 0)->Unit(benchmark::kMillisecond);

#define FRUGAL_QUANT_BENCH(f)                                                  \
  BENCHMARK_CAPTURE(BM_quantize, f, format::f)->Unit(benchmark::kMillisecond); \
  BENCHMARK_CAPTURE(BM_dequantize, f, format::f)->Unit(benchmark::kMillisecond)

FRUGAL_QUANT_BENCH(int8);
FRUGAL_QUANT_BENCH(int8_asym);
FRUGAL_QUANT_BENCH(int8_channel);
FRUGAL_QUANT_BENCH(int8_channel_asym);
FRUGAL_QUANT_BENCH(int8_g32);
FRUGAL_QUANT_BENCH(int8_g32_asym);
FRUGAL_QUANT_BENCH(int8_g64);
FRUGAL_QUANT_BENCH(int8_g64_asym);
FRUGAL_QUANT_BENCH(int8_g128);
FRUGAL_QUANT_BENCH(int8_g128_asym);
FRUGAL_QUANT_BENCH(int4_g32);
FRUGAL_QUANT_BENCH(int4_g32_asym);
FRUGAL_QUANT_BENCH(int4_g64);
FRUGAL_QUANT_BENCH(int4_g64_asym);
FRUGAL_QUANT_BENCH(int4_g128);
FRUGAL_QUANT_BENCH(int4_g128_asym);
FRUGAL_QUANT_BENCH(fp8_e4m3);
FRUGAL_QUANT_BENCH(fp8_e5m2);
FRUGAL_QUANT_BENCH(fp8_e4m3_channel);
FRUGAL_QUANT_BENCH(fp8_e5m2_channel);
FRUGAL_QUANT_BENCH(mxfp8);
FRUGAL_QUANT_BENCH(mxfp4);
FRUGAL_QUANT_BENCH(nvfp4);
FRUGAL_QUANT_BENCH(nf4);
FRUGAL_QUANT_BENCH(q8_0);
FRUGAL_QUANT_BENCH(q4_0);

BENCHMARK_MAIN();
