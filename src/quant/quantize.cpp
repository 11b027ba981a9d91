// The CPU reference quantizer (include/frugal/quant/quantize.hpp). The arithmetic lives in
// include/frugal/quant/detail/block.hpp, shared with the CUDA kernels; this file walks the rows,
// dispatching once per tensor to a loop specialised for the format, and splits large tensors
// across threads by rows. Every reduction is a max/min, so the bytes do not depend on the thread
// count.
#include <frugal/error.hpp>
#include <frugal/quant/detail/block.hpp>
#include <frugal/quant/detail/fast_codecs.hpp>
#include <frugal/quant/quantize.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace frugal::quant {
namespace {

// ---- the element loops, compiled twice on x86-64 ---------------------------------------------
// The loops of detail/fast_codecs.hpp are branch-free and vectorize for the baseline instruction
// set; on x86-64 they are also built for AVX2 and chosen once at load time (an ifunc). Both
// builds perform the same IEEE operations (AVX2 does not bring FMA, so nothing is contracted),
// so the bytes do not depend on the machine.
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define FRUGAL_QUANT_LOOP __attribute__((target_clones("avx2", "default"), noinline))
#else
#define FRUGAL_QUANT_LOOP
#endif

FRUGAL_QUANT_LOOP float amax_run(const float* x, std::size_t n) {
  return detail::fast_block_amax(x, n);
}
FRUGAL_QUANT_LOOP detail::min_max min_max_run(const float* x, std::size_t n) {
  return detail::fast_block_min_max(x, n);
}
FRUGAL_QUANT_LOOP void int8_symmetric_run(const float* x, std::size_t n,
                                          const detail::int_params& p, std::uint8_t* out) {
  detail::fast_encode_int8<false>(x, n, p, out);
}
FRUGAL_QUANT_LOOP void int8_asymmetric_run(const float* x, std::size_t n,
                                           const detail::int_params& p, std::uint8_t* out) {
  detail::fast_encode_int8<true>(x, n, p, out);
}
FRUGAL_QUANT_LOOP void fp8_e4m3_run(const float* x, std::size_t n, float scale, std::uint8_t* out) {
  detail::fast_encode_fp8_e4m3(x, n, scale, out);
}
FRUGAL_QUANT_LOOP void fp8_e5m2_run(const float* x, std::size_t n, float scale, std::uint8_t* out) {
  detail::fast_encode_fp8_e5m2(x, n, scale, out);
}
FRUGAL_QUANT_LOOP void decode_fp8_e4m3_run(const std::uint8_t* in, std::size_t n, float scale,
                                           float* out) {
  detail::fast_decode_fp8_e4m3(in, n, scale, out);
}
FRUGAL_QUANT_LOOP void decode_fp8_e5m2_run(const std::uint8_t* in, std::size_t n, float scale,
                                           float* out) {
  detail::fast_decode_fp8_e5m2(in, n, scale, out);
}

/// One row of an MX format: per block of 32, the E8M0 scale then the codes.
FRUGAL_QUANT_LOOP void mx_row(bool fp4, const float* x, std::size_t cols, bool round_up,
                              std::uint8_t* scales, std::uint8_t* values) {
  constexpr std::size_t g = 32;
  for (std::size_t j = 0; j < cols / g; ++j) {
    const float* xg = x + j * g;
    const float amax = detail::fast_block_amax(xg, g);
    if (fp4) {
      const std::uint8_t code = detail::mx_scale_code(amax, e2m1_emax, e2m1_max, round_up);
      scales[j] = code;
      detail::fast_encode_fp4(xg, g, detail::e8m0_inverse(code), values + j * (g / 2));
    } else {
      const std::uint8_t code = detail::mx_scale_code(amax, e4m3_emax, e4m3_max, round_up);
      scales[j] = code;
      detail::fast_encode_fp8_e4m3_scaled(xg, g, detail::e8m0_inverse(code), values + j * g);
    }
  }
}

/// One row of NVFP4: per block of 16, the E4M3 block scale then the codes.
FRUGAL_QUANT_LOOP void nvfp4_row(const float* x, std::size_t cols,
                                 const detail::nvfp4_tensor_params& ts, std::uint8_t* scales,
                                 std::uint8_t* values) {
  constexpr std::size_t g = 16;
  for (std::size_t j = 0; j < cols / g; ++j) {
    const float* xg = x + j * g;
    const std::uint8_t code = detail::nvfp4_block_scale(detail::fast_block_amax(xg, g), ts.encode);
    scales[j] = code;
    detail::fast_encode_fp4(xg, g, detail::nvfp4_element_scale(code, ts.decode),
                            values + j * (g / 2));
  }
}

/// Tensors below this many elements are quantized on the calling thread.
constexpr std::size_t parallel_threshold = std::size_t{1} << 20;

unsigned worker_count(const options& opts, std::size_t rows, std::size_t elements) {
  if (elements < parallel_threshold || rows < 2) return 1;
  unsigned n = opts.threads != 0 ? opts.threads : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  return static_cast<unsigned>(std::min<std::size_t>(n, rows));
}

/// Calls body(worker, row_begin, row_end) for `workers` contiguous row ranges, in parallel.
template <class Body>
void split_rows(std::size_t rows, unsigned workers, Body&& body) {
  if (workers <= 1) {
    body(0u, std::size_t{0}, rows);
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(workers);
  threads.reserve(workers);
  for (unsigned w = 0; w < workers; ++w) {
    const std::size_t begin = rows * w / workers;
    const std::size_t end = rows * (w + 1) / workers;
    threads.emplace_back([&, w, begin, end] {
      try {
        body(w, begin, end);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

/// The rows of the input as float: a pointer into the input for float, a converted copy in a
/// per-worker buffer for fp16 / bf16 (exact conversions).
template <class T>
class row_reader {
 public:
  row_reader(const T* data, std::size_t cols) : data_(data), cols_(cols) {
    if constexpr (!std::is_same_v<T, float>) buffer_.resize(cols);
  }
  const float* row(std::size_t r) {
    const T* src = data_ + r * cols_;
    if constexpr (std::is_same_v<T, float>) {
      return src;
    } else {
      for (std::size_t c = 0; c < cols_; ++c) buffer_[c] = static_cast<float>(src[c]);
      return buffer_.data();
    }
  }

 private:
  const T* data_;
  std::size_t cols_;
  std::vector<float> buffer_;
};

void store_float(std::uint8_t* at, float v) { std::memcpy(at, &v, sizeof v); }
float load_float(const std::uint8_t* at) {
  float v;
  std::memcpy(&v, at, sizeof v);
  return v;
}

/// What every format loop gets: the shape, the regions and the worker count.
struct target {
  const layout& l;
  std::uint8_t* base;
  unsigned workers;
  const options& opts;
  std::uint8_t* values() const { return base + l.values_offset; }
  std::uint8_t* scale_at(std::size_t g, std::size_t size) const {
    return base + l.scales_offset + g * size;
  }
  std::uint8_t* zero_point_at(std::size_t g) const { return base + l.zero_points_offset + g; }
};

/// Bytes one row of codes takes in the values region.
std::size_t row_value_bytes(const layout& l, unsigned bits) {
  return bits == 8 ? l.cols : l.cols / 2;
}

// ---- reductions over the whole tensor (per-tensor formats and nvfp4) ---------------------------

template <class T>
float tensor_amax(const T* in, const target& t) {
  std::vector<float> partial(t.workers, 0.0f);
  split_rows(t.l.rows, t.workers, [&](unsigned w, std::size_t begin, std::size_t end) {
    row_reader<T> reader(in, t.l.cols);
    float amax = 0.0f;
    for (std::size_t r = begin; r < end; ++r)
      amax = std::max(amax, amax_run(reader.row(r), t.l.cols));
    partial[w] = amax;
  });
  return *std::max_element(partial.begin(), partial.end());
}

template <class T>
detail::min_max tensor_min_max(const T* in, const target& t) {
  std::vector<detail::min_max> partial(t.workers);
  split_rows(t.l.rows, t.workers, [&](unsigned w, std::size_t begin, std::size_t end) {
    row_reader<T> reader(in, t.l.cols);
    detail::min_max m;
    for (std::size_t r = begin; r < end; ++r)
      m = detail::merge_min_max(m, min_max_run(reader.row(r), t.l.cols));
    partial[w] = m;
  });
  detail::min_max all;
  for (const detail::min_max& m : partial) all = detail::merge_min_max(all, m);
  return all;
}

/// Runs group(row floats, row index) over every row, in parallel.
template <class T, class Group>
void for_each_row(const T* in, const target& t, Group&& group) {
  split_rows(t.l.rows, t.workers, [&](unsigned, std::size_t begin, std::size_t end) {
    row_reader<T> reader(in, t.l.cols);
    for (std::size_t r = begin; r < end; ++r) group(reader.row(r), r);
  });
}

// ---- integer formats
// -----------------------------------------------------------------------------

template <unsigned Bits, bool Asymmetric>
void encode_int_run(const float* x, std::size_t n, const detail::int_params& p, std::uint8_t* out) {
  if constexpr (Bits == 8 && Asymmetric)
    int8_asymmetric_run(x, n, p, out);
  else if constexpr (Bits == 8)
    int8_symmetric_run(x, n, p, out);
  else
    detail::fast_encode_int4<Asymmetric>(x, n, p, out);
}

template <unsigned Bits, bool Asymmetric>
detail::int_params int_params_of(const float* x, std::size_t n) {
  if constexpr (Asymmetric) {
    constexpr int qmax = Bits == 8 ? detail::int8_asymmetric_max : detail::int4_asymmetric_max;
    return detail::int_asymmetric_params(detail::fast_block_min_max(x, n), qmax);
  } else {
    constexpr int qmax = Bits == 8 ? detail::int8_symmetric_max : detail::int4_symmetric_max;
    return detail::int_symmetric_params(detail::fast_block_amax(x, n), qmax);
  }
}

template <unsigned Bits, bool Asymmetric>
void store_int_params(const target& t, std::size_t g, const detail::int_params& p) {
  store_float(t.scale_at(g, sizeof(float)), p.scale);
  if constexpr (Asymmetric) *t.zero_point_at(g) = static_cast<std::uint8_t>(p.zero_point);
}

/// int8 / int8_asym: one scale for the whole tensor.
template <class T, bool Asymmetric>
void quantize_int_tensor(const T* in, const target& t) {
  detail::int_params p;
  if constexpr (Asymmetric)
    p = detail::int_asymmetric_params(tensor_min_max(in, t), detail::int8_asymmetric_max);
  else
    p = detail::int_symmetric_params(tensor_amax(in, t), detail::int8_symmetric_max);
  store_int_params<8, Asymmetric>(t, 0, p);
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    encode_int_run<8, Asymmetric>(x, t.l.cols, p, t.values() + r * t.l.cols);
  });
}

/// Channel (group = row) and group formats: parameters per group of t.l.group_size.
template <class T, unsigned Bits, bool Asymmetric>
void quantize_int_groups(const T* in, const target& t) {
  const std::size_t g = t.l.group_size;
  const std::size_t per_row = t.l.cols / g;
  const std::size_t row_bytes = row_value_bytes(t.l, Bits);
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    for (std::size_t j = 0; j < per_row; ++j) {
      const float* xg = x + j * g;
      const detail::int_params p = int_params_of<Bits, Asymmetric>(xg, g);
      store_int_params<Bits, Asymmetric>(t, r * per_row + j, p);
      encode_int_run<Bits, Asymmetric>(xg, g, p, t.values() + r * row_bytes + j * g * Bits / 8);
    }
  });
}

// ---- FP8 with an FP32 scale
// ----------------------------------------------------------------------

template <bool E5M2>
void encode_fp8_run(const float* x, std::size_t n, float scale, std::uint8_t* out) {
  if constexpr (E5M2)
    fp8_e5m2_run(x, n, scale, out);
  else
    fp8_e4m3_run(x, n, scale, out);
}

template <class T, bool E5M2, bool PerChannel>
void quantize_fp8(const T* in, const target& t) {
  constexpr float format_max = E5M2 ? e5m2_max : e4m3_max;
  float tensor_scale = 0.0f;
  if constexpr (!PerChannel) {
    tensor_scale = detail::fp8_scale(tensor_amax(in, t), format_max);
    store_float(t.scale_at(0, sizeof(float)), tensor_scale);
  }
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    float scale = tensor_scale;
    if constexpr (PerChannel) {
      scale = detail::fp8_scale(amax_run(x, t.l.cols), format_max);
      store_float(t.scale_at(r, sizeof(float)), scale);
    }
    encode_fp8_run<E5M2>(x, t.l.cols, scale, t.values() + r * t.l.cols);
  });
}

// ---- block formats: MX, NVFP4, NF4
// ---------------------------------------------------------------

template <class T, bool Fp4>
void quantize_mx(const T* in, const target& t) {
  const std::size_t per_row = t.l.cols / 32;
  const std::size_t row_bytes = row_value_bytes(t.l, Fp4 ? 4 : 8);
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    mx_row(Fp4, x, t.l.cols, t.opts.mx_round_up_scale, t.scale_at(r * per_row, 1),
           t.values() + r * row_bytes);
  });
}

template <class T>
void quantize_nvfp4(const T* in, const target& t) {
  const detail::nvfp4_tensor_params ts = detail::nvfp4_tensor_scales(tensor_amax(in, t));
  store_float(t.base + t.l.tensor_scale_offset, ts.decode);
  const std::size_t per_row = t.l.cols / 16;
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    nvfp4_row(x, t.l.cols, ts, t.scale_at(r * per_row, 1), t.values() + r * (t.l.cols / 2));
  });
}

template <class T>
void quantize_nf4(const T* in, const target& t) {
  constexpr std::size_t g = 64;
  const std::size_t per_row = t.l.cols / g;
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    for (std::size_t j = 0; j < per_row; ++j) {
      const float* xg = x + j * g;
      const float absmax = detail::fast_block_amax(xg, g);
      store_float(t.scale_at(r * per_row + j, sizeof(float)), absmax);
      detail::encode_nf4(xg, g, absmax, t.values() + r * (t.l.cols / 2) + j * (g / 2));
    }
  });
}

// ---- GGUF
// ----------------------------------------------------------------------------------------

template <class T, bool Q4>
void quantize_gguf(const T* in, const target& t) {
  constexpr std::size_t record = Q4 ? detail::q4_0_record_bytes : detail::q8_0_record_bytes;
  const std::size_t per_row = t.l.cols / detail::gguf_block;
  for_each_row(in, t, [&](const float* x, std::size_t r) {
    for (std::size_t j = 0; j < per_row; ++j) {
      std::uint8_t* out = t.values() + (r * per_row + j) * record;
      if constexpr (Q4)
        detail::encode_q4_0(x + j * detail::gguf_block, out);
      else
        detail::encode_q8_0(x + j * detail::gguf_block, out);
    }
  });
}

// ---- dispatch
// ------------------------------------------------------------------------------------

template <class T>
void quantize_into(format f, const T* in, const target& t) {
  switch (f) {
    case format::int8:
      return quantize_int_tensor<T, false>(in, t);
    case format::int8_asym:
      return quantize_int_tensor<T, true>(in, t);
    case format::int8_channel:
    case format::int8_g32:
    case format::int8_g64:
    case format::int8_g128:
      return quantize_int_groups<T, 8, false>(in, t);
    case format::int8_channel_asym:
    case format::int8_g32_asym:
    case format::int8_g64_asym:
    case format::int8_g128_asym:
      return quantize_int_groups<T, 8, true>(in, t);
    case format::int4_g32:
    case format::int4_g64:
    case format::int4_g128:
      return quantize_int_groups<T, 4, false>(in, t);
    case format::int4_g32_asym:
    case format::int4_g64_asym:
    case format::int4_g128_asym:
      return quantize_int_groups<T, 4, true>(in, t);
    case format::fp8_e4m3:
      return quantize_fp8<T, false, false>(in, t);
    case format::fp8_e5m2:
      return quantize_fp8<T, true, false>(in, t);
    case format::fp8_e4m3_channel:
      return quantize_fp8<T, false, true>(in, t);
    case format::fp8_e5m2_channel:
      return quantize_fp8<T, true, true>(in, t);
    case format::mxfp8:
      return quantize_mx<T, false>(in, t);
    case format::mxfp4:
      return quantize_mx<T, true>(in, t);
    case format::nvfp4:
      return quantize_nvfp4<T>(in, t);
    case format::nf4:
      return quantize_nf4<T>(in, t);
    case format::q8_0:
      return quantize_gguf<T, false>(in, t);
    case format::q4_0:
      return quantize_gguf<T, true>(in, t);
  }
}

/// Writes zeros into the padding between regions, so the whole allocation is deterministic.
void zero_padding(const layout& l, std::uint8_t* base) {
  struct span_of {
    std::size_t offset, bytes;
  };
  const span_of regions[] = {{l.values_offset, l.values_bytes},
                             {l.scales_offset, l.scales_bytes},
                             {l.zero_points_offset, l.zero_points_bytes},
                             {l.tensor_scale_offset, l.tensor_scale_bytes}};
  std::size_t end = 0;
  for (const span_of& s : regions) {
    if (s.bytes == 0) continue;
    if (s.offset > end) std::memset(base + end, 0, s.offset - end);
    end = s.offset + s.bytes;
  }
  if (l.total_bytes > end) std::memset(base + end, 0, l.total_bytes - end);
}

template <class T>
quantized_tensor quantize_any(format f, std::span<const T> input, std::size_t cols,
                              any_resource_ref r, const options& opts) {
  const std::string who = "quant::quantize(" + std::string(to_string(f)) + "): ";
  FRUGAL_EXPECTS(!input.empty(), who + "the input is empty", invalid_argument);
  FRUGAL_EXPECTS(cols != 0, who + "cols must be positive", invalid_argument);
  FRUGAL_EXPECTS(input.size() % cols == 0,
                 who + "the input size " + std::to_string(input.size()) +
                     " is not a multiple of cols " + std::to_string(cols),
                 invalid_argument);
  FRUGAL_EXPECTS(r.host_accessible(), who + "the CPU reference needs a host-accessible resource",
                 invalid_argument);
  const std::size_t rows = input.size() / cols;
  (void)layout_of(f, rows, cols);  // refuses the shape before anything is allocated
  quantized_tensor q(f, rows, cols, r);
  const target t{q.layout(), q.data(), worker_count(opts, rows, input.size()), opts};
  zero_padding(q.layout(), q.data());
  quantize_into(f, input.data(), t);
  return q;
}

// ---- dequantize
// ----------------------------------------------------------------------------------

struct source {
  const layout& l;
  const std::uint8_t* base;
  const std::uint8_t* values() const { return base + l.values_offset; }
  float scale(std::size_t g) const { return load_float(base + l.scales_offset + g * 4); }
  std::uint8_t byte_scale(std::size_t g) const { return base[l.scales_offset + g]; }
  int zero_point(std::size_t g) const { return base[l.zero_points_offset + g]; }
};

/// Decodes row r into out (cols floats).
template <format F>
void dequantize_row(const source& s, std::size_t r, float* out) {
  constexpr const format_info& fi = info(F);
  const layout& l = s.l;
  const std::size_t cols = l.cols;
  if constexpr (F == format::q8_0 || F == format::q4_0) {
    constexpr bool q4 = F == format::q4_0;
    constexpr std::size_t record = q4 ? detail::q4_0_record_bytes : detail::q8_0_record_bytes;
    const std::size_t per_row = cols / detail::gguf_block;
    for (std::size_t j = 0; j < per_row; ++j) {
      const std::uint8_t* rec = s.values() + (r * per_row + j) * record;
      if constexpr (q4)
        detail::decode_q4_0(rec, out + j * detail::gguf_block);
      else
        detail::decode_q8_0(rec, out + j * detail::gguf_block);
    }
  } else {
    const std::size_t g = l.group_size;
    const std::size_t groups = fi.shared_by == granularity::tensor ? 1 : cols / g;
    const std::size_t run = fi.shared_by == granularity::tensor ? cols : g;
    const std::size_t row_bytes = fi.element_bits == 8 ? cols : cols / 2;
    const std::uint8_t* row = s.values() + r * row_bytes;
    for (std::size_t j = 0; j < groups; ++j) {
      const std::size_t gi = fi.shared_by == granularity::tensor ? 0 : r * groups + j;
      const std::uint8_t* in = row + j * run * fi.element_bits / 8;
      float* o = out + j * run;
      if constexpr (fi.code == element::int8 || fi.code == element::int4) {
        const int zp = fi.asymmetric ? s.zero_point(gi) : 0;
        if constexpr (fi.code == element::int8)
          detail::decode_int8<fi.asymmetric>(in, run, s.scale(gi), zp, o);
        else
          detail::decode_int4<fi.asymmetric>(in, run, s.scale(gi), zp, o);
      } else if constexpr (F == format::mxfp8) {
        decode_fp8_e4m3_run(in, run, from_e8m0(s.byte_scale(gi)), o);
      } else if constexpr (F == format::mxfp4) {
        detail::fast_decode_fp4(in, run, from_e8m0(s.byte_scale(gi)), o);
      } else if constexpr (F == format::nvfp4) {
        const float tensor_decode = load_float(s.base + l.tensor_scale_offset);
        detail::fast_decode_fp4(in, run,
                                detail::nvfp4_decode_scale(s.byte_scale(gi), tensor_decode), o);
      } else if constexpr (F == format::nf4) {
        detail::decode_nf4(in, run, s.scale(gi), o);
      } else if constexpr (fi.code == element::fp8_e4m3) {
        decode_fp8_e4m3_run(in, run, s.scale(gi), o);
      } else {
        static_assert(fi.code == element::fp8_e5m2);
        decode_fp8_e5m2_run(in, run, s.scale(gi), o);
      }
    }
  }
}

template <format F>
void dequantize_all(const source& s, float* out, unsigned workers) {
  split_rows(s.l.rows, workers, [&](unsigned, std::size_t begin, std::size_t end) {
    for (std::size_t r = begin; r < end; ++r) dequantize_row<F>(s, r, out + r * s.l.cols);
  });
}

template <std::size_t... I>
void dequantize_dispatch(format f, const source& s, float* out, unsigned workers,
                         std::index_sequence<I...>) {
  ((static_cast<std::size_t>(f) == I ? dequantize_all<static_cast<format>(I)>(s, out, workers)
                                     : void()),
   ...);
}

}  // namespace

quantized_tensor quantize(format f, std::span<const float> input, std::size_t cols,
                          any_resource_ref r, const options& opts) {
  return quantize_any(f, input, cols, r, opts);
}

quantized_tensor quantize(format f, std::span<const float16> input, std::size_t cols,
                          any_resource_ref r, const options& opts) {
  return quantize_any(f, input, cols, r, opts);
}

quantized_tensor quantize(format f, std::span<const bfloat16> input, std::size_t cols,
                          any_resource_ref r, const options& opts) {
  return quantize_any(f, input, cols, r, opts);
}

void dequantize(const quantized_tensor& q, std::span<float> output, const options& opts) {
  FRUGAL_EXPECTS(!q.empty(), "quant::dequantize: the tensor is empty", invalid_argument);
  const std::string who = "quant::dequantize(" + std::string(to_string(q.format())) + "): ";
  FRUGAL_EXPECTS(q.host_accessible(),
                 who + "the CPU reference needs a tensor in host-accessible memory",
                 invalid_argument);
  FRUGAL_EXPECTS(output.size() == q.elements(),
                 who + "the output holds " + std::to_string(output.size()) + " floats, the " +
                     std::to_string(q.rows()) + " x " + std::to_string(q.cols()) +
                     " tensor needs " + std::to_string(q.elements()),
                 invalid_argument);
  const source s{q.layout(), q.data()};
  const unsigned workers = worker_count(opts, q.rows(), q.elements());
  dequantize_dispatch(q.format(), s, output.data(), workers,
                      std::make_index_sequence<format_count>{});
}

}  // namespace frugal::quant
