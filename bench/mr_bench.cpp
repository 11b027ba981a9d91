// Allocator benchmarks: frugal's resources against their peers in the same run.
#include <frugal/frugal.hpp>

#include <benchmark/benchmark.h>

#include <cstdlib>

namespace {
void BM_host_allocate_free(benchmark::State& state, const char*) {
  frugal::host_resource host;
  for (auto _ : state) {
    void* p = host.allocate(4096);
    benchmark::DoNotOptimize(p);
    host.deallocate(p, 4096);
  }
}
void BM_malloc_free(benchmark::State& state, const char*) {
  for (auto _ : state) {
    void* p = std::malloc(4096);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
}
BENCHMARK_CAPTURE(BM_host_allocate_free, frugal_host, "4 KiB");
BENCHMARK_CAPTURE(BM_malloc_free, malloc, "4 KiB");
}  // namespace

BENCHMARK_MAIN();
