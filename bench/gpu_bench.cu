// GPU benchmarks: frugal's device-side pieces against their peers, in one run on one device.
//
//   BM_alloc_random/<peer>/max_size:<n>: RMM-style random allocations (a live set of blocks of
//     uniform random sizes in [1, max_size], allocated and freed in random order) through
//     frugal_pool (pool_resource<cuda_resource>), cuda_malloc (cudaMalloc/cudaFree),
//     cuda_malloc_async (cudaMallocFromPoolAsync/cudaFreeAsync on a pool that keeps its memory)
//     and cub_caching (cub::CachingDeviceAllocator caching every size of the workload).
//     Host wall time of the whole replay plus a final stream synchronization; counter ns_per_op.
//   BM_memcpy_d2d/bytes:<n>: cudaMemcpyAsync device to device, the bandwidth roofline.
//   BM_quantize/<format>/float32, BM_dequantize/<format>: the kernels of
//     frugal/quant/kernels.hpp on 256 MiB inputs (256 MiB of output for dequantize), every
//     format; BM_quantize/<format>/<float16|bfloat16> for the target formats (int8, fp8_e4m3,
//     nvfp4, mxfp4) only. Fewer repetitions than the other kernels: 5.
//   BM_kv_copy/<peer>/page_bytes:<n>: kv::copy_pages_device against one cudaMemcpyAsync per page.
//
// Kernels and copies are timed with CUDA events after a warm-up launch; every benchmark reports
// the median of its repetitions. GB_per_s counts bytes read plus bytes written (a kernel that
// reads its input twice counts it twice). Exit code 4 (and a message) when no device is present.
// `--smoke` shrinks every size and repetition count so that a test can run the program quickly.
#include "random_workload.hpp"

#include <frugal/device.hpp>
#include <frugal/error.hpp>
#include <frugal/kv/copy_kernel.hpp>
#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/quant/format.hpp>
#include <frugal/quant/kernels.hpp>

#include <benchmark/benchmark.h>
#include <cub/util_allocator.cuh>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace {

bool g_smoke = false;

int repetitions() { return g_smoke ? 1 : 9; }
std::size_t quant_input_bytes() { return g_smoke ? std::size_t{4} << 20 : std::size_t{256} << 20; }

// ---- timing --------------------------------------------------------------------------------

/// Times work queued on a stream with a pair of CUDA events.
class event_timer {
 public:
  event_timer() {
    FRUGAL_CUDA_TRY(cudaEventCreate(&start_));
    FRUGAL_CUDA_TRY(cudaEventCreate(&stop_));
  }
  ~event_timer() {
    (void)cudaEventDestroy(start_);
    (void)cudaEventDestroy(stop_);
  }
  event_timer(const event_timer&) = delete;
  event_timer& operator=(const event_timer&) = delete;

  /// Seconds between the start and the end of what `queue` puts on `stream`.
  template <class Queue>
  double seconds(cudaStream_t stream, Queue&& queue) {
    FRUGAL_CUDA_TRY(cudaEventRecord(start_, stream));
    queue();
    FRUGAL_CUDA_TRY(cudaEventRecord(stop_, stream));
    FRUGAL_CUDA_TRY(cudaEventSynchronize(stop_));
    float ms = 0;
    FRUGAL_CUDA_TRY(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

/// A non-blocking stream owned for one benchmark.
struct owned_stream {
  cudaStream_t stream{};
  owned_stream() { FRUGAL_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
  ~owned_stream() { (void)cudaStreamDestroy(stream); }
  owned_stream(const owned_stream&) = delete;
  owned_stream& operator=(const owned_stream&) = delete;
};

/// Device memory owned for one benchmark.
struct device_buffer {
  void* p = nullptr;
  explicit device_buffer(std::size_t bytes) { FRUGAL_CUDA_TRY(cudaMalloc(&p, bytes)); }
  ~device_buffer() { (void)cudaFree(p); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

/// Runs `queue` once to warm up, then times it once per benchmark iteration with events;
/// counter GB_per_s = bytes_per_run / seconds (the median is taken over the repetitions).
template <class Queue>
void run_timed(benchmark::State& state, cudaStream_t stream, double bytes_per_run, Queue&& queue) {
  event_timer timer;
  queue();
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(stream));
  double total = 0;
  std::size_t runs = 0;
  for (auto _ : state) {
    const double s = timer.seconds(stream, queue);
    state.SetIterationTime(s);
    total += s;
    ++runs;
  }
  state.counters["GB_per_s"] = bytes_per_run * static_cast<double>(runs) / total * 1e-9;
  state.counters["bytes_per_run"] = bytes_per_run;
}

void kernel_shape(benchmark::internal::Benchmark* b) {
  b->UseManualTime()
      ->Iterations(g_smoke ? 2 : 20)
      ->Repetitions(repetitions())
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMicrosecond);
}

/// The quantization kernels: 5 repetitions of 20 launches (each run allocates and fills its own
/// 256 MiB input, which costs more than the launches).
void quant_shape(benchmark::internal::Benchmark* b) {
  b->UseManualTime()
      ->Iterations(g_smoke ? 2 : 20)
      ->Repetitions(g_smoke ? 1 : 5)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMicrosecond);
}

/// The formats with a bandwidth target (scripts/gpu_check_report.py): also benchmarked with
/// 16-bit inputs.
bool is_target_format(frugal::quant::format f) {
  using frugal::quant::format;
  return f == format::int8 || f == format::fp8_e4m3 || f == format::nvfp4 || f == format::mxfp4;
}

// ---- BM_alloc_random ------------------------------------------------------------------------

using frugal::bench::operation;

/// The two workloads: up to 1 MiB with ~1,000 live blocks, up to 64 MiB with ~100 live blocks
/// (a few GiB live at a time).
using alloc_trace = frugal::bench::trace;
const alloc_trace& trace_for(std::size_t max_size) {
  static const alloc_trace small =
      frugal::bench::make_trace(1 << 20, g_smoke ? 50 : 1000, g_smoke ? 200 : 10000);
  static const alloc_trace large =
      frugal::bench::make_trace(64 << 20, g_smoke ? 10 : 100, g_smoke ? 40 : 2000);
  return max_size <= (1 << 20) ? small : large;
}

/// Replays the trace once untimed (pools reach their peak), then once per iteration, timing the
/// host with a steady clock up to the end of a stream synchronization.
template <class Allocate, class Deallocate>
void replay_timed(benchmark::State& state, cudaStream_t stream, Allocate&& allocate,
                  Deallocate&& deallocate) {
  const alloc_trace& t = trace_for(static_cast<std::size_t>(state.range(0)));
  std::vector<void*> table(t.slots, nullptr);
  std::vector<std::uint32_t> sizes(t.slots, 0);
  auto replay = [&] {
    for (const operation& op : t.operations) {
      if (op.size != 0) {
        table[op.slot] = allocate(op.size);
        sizes[op.slot] = op.size;
      } else {
        deallocate(table[op.slot], sizes[op.slot]);
      }
    }
    FRUGAL_CUDA_TRY(cudaStreamSynchronize(stream));
  };
  replay();
  double total = 0;
  std::size_t runs = 0;
  for (auto _ : state) {
    const auto begin = std::chrono::steady_clock::now();
    replay();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
    state.SetIterationTime(elapsed.count());
    total += elapsed.count();
    ++runs;
  }
  state.counters["ns_per_op"] = total / static_cast<double>(runs * t.operations.size()) * 1e9;
  state.counters["operations"] = static_cast<double>(t.operations.size());
}

void BM_alloc_random(benchmark::State& state, const char* peer) {
  const std::string_view name = peer;
  owned_stream s;
  if (name == "frugal_pool") {
    frugal::pool_resource<frugal::cuda_resource> pool{frugal::cuda_resource{}};
    replay_timed(
        state, s.stream, [&](std::size_t n) { return pool.allocate(n, 256); },
        [&](void* p, std::size_t n) { pool.deallocate(p, n, 256); });
  } else if (name == "cuda_malloc") {
    replay_timed(
        state, s.stream,
        [](std::size_t n) {
          void* p = nullptr;
          FRUGAL_CUDA_TRY(cudaMalloc(&p, n));
          return p;
        },
        [](void* p, std::size_t) { FRUGAL_CUDA_TRY(cudaFree(p)); });
  } else if (name == "cuda_malloc_async") {
    // A pool of its own that keeps what it reserved (release threshold: everything), the way a
    // serving engine configures it; the device's default pool would return memory at each sync.
    int device = 0;
    FRUGAL_CUDA_TRY(cudaGetDevice(&device));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    cudaMemPool_t pool{};
    FRUGAL_CUDA_TRY(cudaMemPoolCreate(&pool, &props));
    std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
    FRUGAL_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    replay_timed(
        state, s.stream,
        [&](std::size_t n) {
          void* p = nullptr;
          FRUGAL_CUDA_TRY(cudaMallocFromPoolAsync(&p, n, pool, s.stream));
          return p;
        },
        [&](void* p, std::size_t) { FRUGAL_CUDA_TRY(cudaFreeAsync(p, s.stream)); });
    FRUGAL_CUDA_TRY(cudaStreamSynchronize(s.stream));
    FRUGAL_CUDA_TRY(cudaMemPoolDestroy(pool));
  } else if (name == "cub_caching") {
    // Bins of powers of 8 from 512 B up to 128 MiB (every size of the workload is cached) and no
    // cap on cached bytes: CUB's allocator at its most favourable for this workload.
    cub::CachingDeviceAllocator cache(8, 3, 9, cub::CachingDeviceAllocator::INVALID_SIZE);
    replay_timed(
        state, s.stream,
        [&](std::size_t n) {
          void* p = nullptr;
          FRUGAL_CUDA_TRY(cache.DeviceAllocate(&p, n, s.stream));
          return p;
        },
        [&](void* p, std::size_t) { FRUGAL_CUDA_TRY(cache.DeviceFree(p)); });
  }
}

void alloc_shape(benchmark::internal::Benchmark* b) {
  b->ArgName("max_size")
      ->Arg(1 << 20)
      ->Arg(64 << 20)
      ->UseManualTime()
      ->Iterations(g_smoke ? 1 : 3)
      ->Repetitions(g_smoke ? 1 : 5)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

// ---- BM_memcpy_d2d ------------------------------------------------------------------------------

void BM_memcpy_d2d(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  owned_stream s;
  device_buffer src(bytes), dst(bytes);
  FRUGAL_CUDA_TRY(cudaMemsetAsync(src.p, 0x5A, bytes, s.stream));
  run_timed(state, s.stream, 2.0 * static_cast<double>(bytes), [&] {
    FRUGAL_CUDA_TRY(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, s.stream));
  });
}

// ---- BM_quantize / BM_dequantize ------------------------------------------------------------

/// Fills n elements with reproducible values: uniform in [-1, 1) times a per-row scale between
/// 2^-4 and 2^4, so that group scales differ. Bits = float, __half or __nv_bfloat16.
template <class Bits>
__global__ void fill_random_kernel(Bits* out, std::size_t n, std::size_t cols) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
    const int row_exponent = static_cast<int>((i / cols) % 9) - 4;
    const float v = ldexpf(u, row_exponent);
    if constexpr (std::is_same_v<Bits, float>)
      out[i] = v;
    else if constexpr (std::is_same_v<Bits, __half>)
      out[i] = __float2half_rn(v);
    else
      out[i] = __float2bfloat16_rn(v);
  }
}

/// The CUDA type with the same bits as T (frugal::float16 and bfloat16 are plain 16-bit codes).
template <class T>
struct cuda_bits {
  using type = float;
};
template <>
struct cuda_bits<frugal::float16> {
  using type = __half;
};
template <>
struct cuda_bits<frugal::bfloat16> {
  using type = __nv_bfloat16;
};

template <class T>
void fill_random(T* p, std::size_t n, std::size_t cols, cudaStream_t stream) {
  using bits = typename cuda_bits<T>::type;
  static_assert(sizeof(bits) == sizeof(T));
  fill_random_kernel<<<1024, 256, 0, stream>>>(reinterpret_cast<bits*>(p), n, cols);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

constexpr std::size_t quant_cols = 8192;  // a multiple of every block and group size

template <class T>
void BM_quantize(benchmark::State& state, frugal::quant::format f) {
  namespace q = frugal::quant;
  const std::size_t n = quant_input_bytes() / sizeof(T);
  const std::size_t rows = n / quant_cols;
  const q::layout l = q::layout_of(f, rows, quant_cols);
  owned_stream s;
  device_buffer input(n * sizeof(T)), output(l.total_bytes);
  fill_random(input.as<T>(), n, quant_cols, s.stream);
  const double moved = static_cast<double>(n * sizeof(T)) * q::quantize_input_reads(f) +
                       static_cast<double>(l.total_bytes);
  run_timed(state, s.stream, moved, [&] {
    q::quantize_device(f, input.as<const T>(), rows, quant_cols, output.as<std::byte>(), s.stream);
  });
}

void BM_dequantize(benchmark::State& state, frugal::quant::format f) {
  namespace q = frugal::quant;
  const std::size_t n = quant_input_bytes() / sizeof(float);
  const std::size_t rows = n / quant_cols;
  const q::layout l = q::layout_of(f, rows, quant_cols);
  owned_stream s;
  device_buffer source(n * sizeof(float)), packed(l.total_bytes), output(n * sizeof(float));
  fill_random(source.as<float>(), n, quant_cols, s.stream);
  q::quantize_device(f, source.as<const float>(), rows, quant_cols, packed.as<std::byte>(),
                     s.stream);
  const double moved = static_cast<double>(l.total_bytes) + static_cast<double>(n * sizeof(float));
  run_timed(state, s.stream, moved, [&] {
    q::dequantize_device(f, packed.as<const std::byte>(), rows, quant_cols, output.as<float>(),
                         s.stream);
  });
}

// ---- BM_kv_copy -------------------------------------------------------------------------------

/// Copies 128 MiB worth of random whole pages (distinct destinations) between two device pools.
void BM_kv_copy(benchmark::State& state, const char* peer) {
  const std::string_view name = peer;
  const auto page_bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t copied = g_smoke ? std::size_t{4} << 20 : std::size_t{128} << 20;
  const std::size_t num_ops = std::max<std::size_t>(1, copied / page_bytes);
  const std::size_t pages = 2 * num_ops;
  owned_stream s;
  device_buffer src(pages * page_bytes), dst(pages * page_bytes);
  FRUGAL_CUDA_TRY(cudaMemsetAsync(src.p, 0x3C, pages * page_bytes, s.stream));
  std::mt19937_64 rng(7);
  std::vector<frugal::kv::page_id> dst_pages(pages);
  std::iota(dst_pages.begin(), dst_pages.end(), 0u);
  std::shuffle(dst_pages.begin(), dst_pages.end(), rng);
  std::vector<frugal::kv::copy_op> ops(num_ops);
  for (std::size_t i = 0; i < num_ops; ++i)
    ops[i] = {static_cast<frugal::kv::page_id>(rng() % pages), dst_pages[i]};
  device_buffer ops_device(num_ops * sizeof(frugal::kv::copy_op));
  // On the benchmark's stream: a legacy-stream cudaMemcpy from pageable memory is not ordered
  // before the non-blocking stream's kernels, which could then read stale page ids.
  FRUGAL_CUDA_TRY(cudaMemcpyAsync(ops_device.p, ops.data(), num_ops * sizeof(frugal::kv::copy_op),
                                  cudaMemcpyHostToDevice, s.stream));
  FRUGAL_CUDA_TRY(cudaStreamSynchronize(s.stream));
  const auto* src_base = src.as<const std::byte>();
  auto* dst_base = dst.as<std::byte>();
  const double moved = 2.0 * static_cast<double>(num_ops * page_bytes);
  if (name == "frugal_kernel") {
    run_timed(state, s.stream, moved, [&] {
      frugal::kv::copy_pages_device(src_base, dst_base, page_bytes, page_bytes, page_bytes,
                                    ops_device.as<const frugal::kv::copy_op>(), num_ops, s.stream);
    });
  } else if (name == "memcpy_per_page") {
    run_timed(state, s.stream, moved, [&] {
      for (const frugal::kv::copy_op& op : ops)
        FRUGAL_CUDA_TRY(cudaMemcpyAsync(dst_base + op.dst * page_bytes,
                                        src_base + op.src * page_bytes, page_bytes,
                                        cudaMemcpyDeviceToDevice, s.stream));
    });
  }
}

void kv_shape(benchmark::internal::Benchmark* b) {
  b->ArgName("page_bytes")->Arg(16 << 10)->Arg(256 << 10)->Arg(2 << 20);
  kernel_shape(b);
}

const char* input_name(std::size_t element_bytes, bool bf) {
  return element_bytes == 4 ? "float32" : bf ? "bfloat16" : "float16";
}

void register_benchmarks() {
  for (const char* peer : {"frugal_pool", "cuda_malloc", "cuda_malloc_async", "cub_caching"})
    alloc_shape(benchmark::RegisterBenchmark((std::string("BM_alloc_random/") + peer).c_str(),
                                             BM_alloc_random, peer));
  kernel_shape(benchmark::RegisterBenchmark("BM_memcpy_d2d", BM_memcpy_d2d)
                   ->ArgName("bytes")
                   ->Arg(static_cast<std::int64_t>(quant_input_bytes())));
  for (const auto& info : frugal::quant::all_formats()) {
    const std::string name(info.name);
    quant_shape(benchmark::RegisterBenchmark(
        ("BM_quantize/" + name + "/" + input_name(4, false)).c_str(), BM_quantize<float>, info.id));
    if (is_target_format(info.id)) {
      quant_shape(
          benchmark::RegisterBenchmark(("BM_quantize/" + name + "/" + input_name(2, false)).c_str(),
                                       BM_quantize<frugal::float16>, info.id));
      quant_shape(
          benchmark::RegisterBenchmark(("BM_quantize/" + name + "/" + input_name(2, true)).c_str(),
                                       BM_quantize<frugal::bfloat16>, info.id));
    }
    quant_shape(
        benchmark::RegisterBenchmark(("BM_dequantize/" + name).c_str(), BM_dequantize, info.id));
  }
  for (const char* peer : {"frugal_kernel", "memcpy_per_page"})
    kv_shape(benchmark::RegisterBenchmark((std::string("BM_kv_copy/") + peer).c_str(), BM_kv_copy,
                                          peer));
}

}  // namespace

int main(int argc, char** argv) {
  // --smoke is ours; everything else goes to Google Benchmark.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && std::strcmp(argv[i], "--smoke") == 0)
      g_smoke = true;
    else
      args.push_back(argv[i]);
  }
  int count = static_cast<int>(args.size());
  if (frugal::device::count() == 0) {
    std::printf("SKIPPED: no CUDA device present; gpu_bench needs a GPU\n");
    return 4;
  }
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
