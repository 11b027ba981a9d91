// The quantization kernels against the CPU reference, byte for byte: every format, every input
// type, fresh random inputs with zeros, outliers, tiny values and rows of very different scales.
// The device output is poisoned first so that a byte the kernels miss shows; dequantization is
// then compared bit for bit both ways. A small capped grid makes every grid-stride, row and tile
// loop run more than once. The seed comes from FRUGAL_TEST_SEED when set, else from
// std::random_device, and is printed so that a failure can be repeated.
#include "gpu/gpu.hpp"

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/quant/kernels.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/quantized_tensor.hpp>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace q = frugal::quant;

constexpr std::uint8_t poison = 0xA5;

/// The seed of this run's inputs: FRUGAL_TEST_SEED when set (a decimal number), else drawn from
/// std::random_device; printed once so that a failing run can be repeated.
std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    std::uint64_t s = 0;
    const char* text = std::getenv("FRUGAL_TEST_SEED");
    if (text != nullptr && *text != '\0') {
      s = std::strtoull(text, nullptr, 10);
    } else {
      std::random_device device;
      s = (static_cast<std::uint64_t>(device()) << 32) ^ device();
    }
    std::printf("quant kernel tests: seed %llu (FRUGAL_TEST_SEED=%llu repeats these inputs)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    std::fflush(stdout);
    return s;
  }();
  return seed;
}

/// Device memory for one test, poisoned on request. Uploads, poisoning and read-backs are queued
/// on the stream the kernels run on: the legacy stream's cudaMemcpy / cudaMemset would not be
/// ordered before a launch on a cudaStreamNonBlocking stream (and a cudaMemcpy from pageable
/// memory may return before the data has arrived).
struct device_buffer {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit device_buffer(std::size_t n) : bytes(n) { FRUGAL_CUDA_TRY(cudaMalloc(&p, n)); }
  ~device_buffer() { (void)cudaFree(p); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
  /// Queues the copy of `bytes` bytes from `host` on `stream`; `host` must live until the stream
  /// has passed it (the caller synchronizes before it goes).
  void upload(const void* host, cudaStream_t stream) {
    FRUGAL_CUDA_TRY(cudaMemcpyAsync(p, host, bytes, cudaMemcpyHostToDevice, stream));
  }
  void poison_all(cudaStream_t stream = nullptr) {
    FRUGAL_CUDA_TRY(cudaMemsetAsync(p, poison, bytes, stream));
  }
  /// The bytes after everything queued on `stream` so far (synchronizes it).
  std::vector<std::uint8_t> to_host(cudaStream_t stream = nullptr) const {
    std::vector<std::uint8_t> host(bytes);
    FRUGAL_CUDA_TRY(cudaMemcpyAsync(host.data(), p, bytes, cudaMemcpyDeviceToHost, stream));
    FRUGAL_CUDA_TRY(cudaStreamSynchronize(stream));
    return host;
  }
};

/// rows x cols floats: normal values times a per-row power of two between 2^-24 and 2^24, about
/// 5% zeros (some negative), 0.5% outliers (x1000), one all-zero row, one row of float denormals,
/// and one row where +a and -a tie for the largest magnitude.
std::vector<float> make_input(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-24, 24);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float scale = std::ldexp(1.0f, exponent(rng));
    for (std::size_t c = 0; c < cols; ++c) {
      float v = normal(rng) * scale;
      const float u = unit(rng);
      if (u < 0.05f)
        v = u < 0.01f ? -0.0f : 0.0f;
      else if (u > 0.995f)
        v *= 1000.0f;
      x[r * cols + c] = v;
    }
  }
  if (rows > 1)
    for (std::size_t c = 0; c < cols; ++c) x[cols + c] = 0.0f;
  if (rows > 2)
    for (std::size_t c = 0; c < cols; ++c) x[2 * cols + c] = std::ldexp(normal(rng), -130);
  if (rows > 3) {
    for (std::size_t c = 0; c < 32; ++c) x[3 * cols + c] = 0.25f * static_cast<float>(c % 3);
    x[3 * cols] = 5.0f;
    x[3 * cols + 1] = -5.0f;
  }
  return x;
}

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    std::vector<T> out;
    out.reserve(x.size());
    for (float v : x) out.push_back(T(v));
    return out;
  }
}

/// Which region of `l` holds byte `i` (for failure messages).
std::string region_of(const q::layout& l, std::size_t i) {
  auto in = [&](std::size_t offset, std::size_t bytes) {
    return i >= offset && i < offset + bytes;
  };
  if (in(l.values_offset, l.values_bytes))
    return "values byte " + std::to_string(i - l.values_offset);
  if (in(l.scales_offset, l.scales_bytes))
    return "scales byte " + std::to_string(i - l.scales_offset);
  if (in(l.zero_points_offset, l.zero_points_bytes))
    return "zero_points byte " + std::to_string(i - l.zero_points_offset);
  if (in(l.tensor_scale_offset, l.tensor_scale_bytes)) return "tensor_scale";
  return "padding byte " + std::to_string(i);
}

/// Quantizes `x` on the device and with the CPU reference and compares the bytes, then
/// dequantizes both ways and compares the floats' bits.
/// `tuning`: the launch shape to pass explicitly (nullptr: the current device's policy).
template <class T>
void check_format(q::format f, const std::vector<T>& x, std::size_t rows, std::size_t cols,
                  const q::options& opts = {}, cudaStream_t stream = nullptr,
                  const q::kernel_tuning* tuning = nullptr) {
  INFO("seed " << test_seed() << " (FRUGAL_TEST_SEED), format " << q::to_string(f) << ", " << rows
               << " x " << cols << ", " << sizeof(T) * 8 << "-bit input"
               << (opts.mx_round_up_scale ? ", round-up" : ""));
  const std::string launch =
      tuning == nullptr
          ? std::string("the device's tuning policy")
          : "threads_per_block " + std::to_string(tuning->threads_per_block) +
                ", items_per_thread " + std::to_string(tuning->items_per_thread) + ", vec_bytes " +
                std::to_string(tuning->vec_bytes) + ", block_tile_elements " +
                std::to_string(tuning->block_tile_elements) + ", blocks_per_sm " +
                std::to_string(tuning->blocks_per_sm);
  INFO("launch: " << launch);
  frugal::host_resource host;
  const q::quantized_tensor expected = q::quantize(f, std::span<const T>(x), cols, host, opts);
  const q::layout& l = expected.layout();

  device_buffer input(x.size() * sizeof(T)), packed(l.total_bytes);
  input.upload(x.data(), stream);
  packed.poison_all(stream);
  if (tuning != nullptr)
    q::quantize_device(f, input.as<const T>(), rows, cols, packed.as<std::byte>(), stream, opts,
                       *tuning);
  else
    q::quantize_device(f, input.as<const T>(), rows, cols, packed.as<std::byte>(), stream, opts);
  const std::vector<std::uint8_t> got = packed.to_host(stream);
  std::size_t first_diff = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != expected.data()[i]) {
      first_diff = i;
      break;
    }
  INFO("first differing byte: " << (first_diff < got.size() ? region_of(l, first_diff) : "none"));
  REQUIRE(first_diff == got.size());

  std::vector<float> cpu(rows * cols);
  q::dequantize(expected, cpu);
  device_buffer restored(rows * cols * sizeof(float));
  restored.poison_all(stream);
  if (tuning != nullptr)
    q::dequantize_device(f, packed.as<const std::byte>(), rows, cols, restored.as<float>(), stream,
                         *tuning);
  else
    q::dequantize_device(f, packed.as<const std::byte>(), rows, cols, restored.as<float>(), stream);
  const std::vector<std::uint8_t> gpu = restored.to_host(stream);
  std::size_t first_float = cpu.size();
  for (std::size_t i = 0; i < cpu.size(); ++i)
    if (std::memcmp(gpu.data() + i * sizeof(float), &cpu[i], sizeof(float)) != 0) {
      first_float = i;
      break;
    }
  INFO("first differing float: " << first_float);
  REQUIRE(first_float == cpu.size());
}

/// Shapes every format takes (cols a multiple of 128), and ones that only per-tensor and
/// per-channel formats take: cols = 100 (float rows 16-byte aligned, half rows 8-byte aligned,
/// 4 codes per decode access) and cols = 99 (one element per access everywhere).
struct shape {
  std::size_t rows, cols;
};
constexpr shape common_shapes[] = {{1, 128}, {37, 256}, {513, 2048}};
constexpr shape odd_shapes[] = {{5, 100}, {7, 99}};

bool is_block(q::format f) { return q::info(f).shared_by == q::granularity::block; }

template <class T>
void check_all_formats(std::uint64_t seed, const q::options& opts = {}) {
  for (const shape& s : common_shapes) {
    const std::vector<T> x = convert<T>(make_input(s.rows, s.cols, seed++));
    for (const q::format_info& fi : q::all_formats())
      check_format<T>(fi.id, x, s.rows, s.cols, opts);
  }
  for (const shape& s : odd_shapes) {
    const std::vector<T> x = convert<T>(make_input(s.rows, s.cols, seed++));
    for (const q::format_info& fi : q::all_formats())
      if (!is_block(fi.id)) check_format<T>(fi.id, x, s.rows, s.cols, opts);
  }
}

/// A launch shape that makes every loop of the kernels turn more than once on any device: one
/// warp per block, one block per SM (so at most a few hundred blocks), tiles of 32 groups.
q::kernel_tuning small_grid(int vec_bytes) {
  q::kernel_tuning t;
  t.threads_per_block = 32;
  t.items_per_thread = 1;
  t.vec_bytes = vec_bytes;
  t.block_tile_elements = 128;
  t.blocks_per_sm = 1;
  return t;
}

}  // namespace

TEMPLATE_TEST_CASE("quant kernels: every format matches the CPU reference byte for byte", "[gpu]",
                   float, frugal::float16, frugal::bfloat16) {
  FRUGAL_REQUIRE_DEVICE();
  check_all_formats<TestType>(test_seed());
}

TEST_CASE("quant kernels: MX formats with the round-up scale match the CPU reference", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  q::options opts;
  opts.mx_round_up_scale = true;
  for (const shape& s : common_shapes) {
    const std::vector<float> x = make_input(s.rows, s.cols, test_seed() + 7);
    check_format<float>(q::format::mxfp8, x, s.rows, s.cols, opts);
    check_format<float>(q::format::mxfp4, x, s.rows, s.cols, opts);
  }
}

TEST_CASE("quant kernels: non-finite inputs give the CPU reference's bytes", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  std::vector<float> x = make_input(8, 256, test_seed() + 11);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[300] = std::numeric_limits<float>::infinity();
  x[301] = -std::numeric_limits<float>::infinity();
  x[1000] = -std::numeric_limits<float>::quiet_NaN();
  for (const q::format_info& fi : q::all_formats()) check_format<float>(fi.id, x, 8, 256);
}

TEMPLATE_TEST_CASE("quant kernels: a small capped grid runs every loop more than once", "[gpu]",
                   float, frugal::float16, frugal::bfloat16) {
  FRUGAL_REQUIRE_DEVICE();
  // 2048 x 1024 under small_grid: a per-tensor kernel walks its grid-stride loop hundreds of
  // times, a per-channel block encodes several rows with several chunks each, a block-format
  // block handles many tiles. vec_bytes 16, 8 and 4 give every access width of the per-tensor
  // and per-channel kernels (the block formats do not depend on it). 1000 x 99 takes the
  // one-element paths.
  const std::vector<TestType> big = convert<TestType>(make_input(2048, 1024, test_seed() + 31));
  const std::vector<TestType> odd = convert<TestType>(make_input(1000, 99, test_seed() + 37));
  for (int vec : {16, 8, 4}) {
    const q::kernel_tuning t = small_grid(vec);
    for (const q::format_info& fi : q::all_formats()) {
      if (!is_block(fi.id) || vec == 16)
        check_format<TestType>(fi.id, big, 2048, 1024, {}, nullptr, &t);
      if (!is_block(fi.id)) check_format<TestType>(fi.id, odd, 1000, 99, {}, nullptr, &t);
    }
  }
}

TEST_CASE("quant kernels: work on a caller's stream and under every tuning policy", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  cudaStream_t stream{};
  FRUGAL_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const std::vector<float> x = make_input(37, 256, test_seed() + 21);
  for (const q::format_info& fi : q::all_formats())
    check_format<float>(fi.id, x, 37, 256, {}, stream);
  FRUGAL_CUDA_TRY(cudaStreamDestroy(stream));

  // Every policy, at every access width, gives the same bytes: the tuning changes only who does
  // what. 1025 x 1024 spans more than one wave of blocks under each policy's grid cap.
  const std::vector<float> y = make_input(1025, 1024, test_seed() + 23);
  for (const auto& [major, minor] : {std::pair{7, 0}, std::pair{8, 0}, std::pair{9, 0}}) {
    q::kernel_tuning t = q::tuning_for(major, minor);
    for (int vec : {16, 8, 4}) {
      t.vec_bytes = vec;
      for (q::format f : {q::format::int8_asym, q::format::fp8_e4m3_channel, q::format::int4_g128,
                          q::format::int8_g128_asym, q::format::nvfp4, q::format::q4_0}) {
        INFO("policy " << major << "." << minor);
        check_format<float>(f, y, 1025, 1024, {}, nullptr, &t);
      }
    }
  }
}

TEST_CASE("quant kernels: bad arguments throw invalid_argument and queue nothing", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  const std::size_t rows = 4, cols = 64;
  const q::layout l = q::layout_of(q::format::mxfp4, rows, cols);
  device_buffer input(rows * cols * sizeof(float) + 16), packed(l.total_bytes + 16);
  device_buffer restored(rows * cols * sizeof(float) + 16);
  packed.poison_all();
  restored.poison_all();
  auto untouched = [](const device_buffer& b) {
    FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
    for (std::uint8_t v : b.to_host())
      if (v != poison) return false;
    return true;
  };
  const auto* in = input.as<const float>();
  auto* out = packed.as<std::byte>();

  SECTION("null pointers") {
    CHECK_THROWS_AS(
        q::quantize_device(q::format::mxfp4, static_cast<const float*>(nullptr), rows, cols, out),
        frugal::invalid_argument);
    CHECK_THROWS_AS(q::quantize_device(q::format::mxfp4, in, rows, cols, nullptr),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(
        q::dequantize_device(q::format::mxfp4, nullptr, rows, cols, restored.as<float>()),
        frugal::invalid_argument);
  }
  SECTION("a shape the format refuses (cols not a multiple of 32, zero rows)") {
    CHECK_THROWS_AS(q::quantize_device(q::format::mxfp4, in, rows, 48, out),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(q::quantize_device(q::format::mxfp4, in, 0, cols, out),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(q::dequantize_device(q::format::mxfp4, out, rows, 48, restored.as<float>()),
                    frugal::invalid_argument);
  }
  SECTION("pointers not 16-byte aligned") {
    CHECK_THROWS_WITH(q::quantize_device(q::format::mxfp4, in + 1, rows, cols, out),
                      Catch::Contains("16-byte aligned"));
    CHECK_THROWS_AS(q::quantize_device(q::format::mxfp4, in, rows, cols, out + 8),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(
        q::dequantize_device(q::format::mxfp4, out, rows, cols, restored.as<float>() + 1),
        frugal::invalid_argument);
  }
  SECTION("a format value outside the enumeration") {
    const auto bad = static_cast<q::format>(200);
    CHECK_THROWS_WITH(q::quantize_device(bad, in, rows, cols, out),
                      Catch::Contains("format value 200"));
    CHECK_THROWS_AS(q::dequantize_device(bad, out, rows, cols, restored.as<float>()),
                    frugal::invalid_argument);
    CHECK_THROWS_AS(q::dequantize_device(static_cast<q::format>(q::format_count), out, rows, cols,
                                         restored.as<float>()),
                    frugal::invalid_argument);
  }
  SECTION("a tuning knob out of range") {
    q::kernel_tuning t = q::tuning_for_current_device();
    t.threads_per_block = 100;
    CHECK_THROWS_WITH(q::quantize_device(q::format::mxfp4, in, rows, cols, out, nullptr, {}, t),
                      Catch::Contains("threads_per_block"));
    t = q::tuning_for_current_device();
    t.block_tile_elements = 3000;
    CHECK_THROWS_AS(q::quantize_device(q::format::mxfp4, in, rows, cols, out, nullptr, {}, t),
                    frugal::invalid_argument);
    t = q::tuning_for_current_device();
    t.vec_bytes = 2;
    CHECK_THROWS_AS(
        q::dequantize_device(q::format::mxfp4, out, rows, cols, restored.as<float>(), nullptr, t),
        frugal::invalid_argument);
  }
  CHECK(untouched(packed));
  CHECK(untouched(restored));
}

TEST_CASE("quant kernels: tuning policies and input reads", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  const q::kernel_tuning hopper = q::tuning_for(9, 0);
  CHECK(hopper.threads_per_block == 256);
  CHECK(hopper.vec_bytes == 16);
  CHECK(hopper.block_tile_elements == 8192);
  const q::kernel_tuning ampere = q::tuning_for(8, 0);
  CHECK(ampere.block_tile_elements == 4096);
  CHECK(q::tuning_for(10, 0).block_tile_elements == hopper.block_tile_elements);
  const q::kernel_tuning here = q::tuning_for_current_device();
  CHECK(here.threads_per_block % 32 == 0);
  CHECK(q::quantize_input_reads(q::format::int8) == 2);
  CHECK(q::quantize_input_reads(q::format::nvfp4) == 2);
  CHECK(q::quantize_input_reads(q::format::int8_channel) == 1);
  CHECK(q::quantize_input_reads(q::format::mxfp4) == 1);
}
