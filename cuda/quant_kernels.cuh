// The quantization kernels of frugal/quant/kernels.hpp, in an internal header so that the
// launchers (quant_launch.cuh, quant_*.cu) read apart from the kernels. Every value the kernels
// write comes from the FRUGAL_HOST_DEVICE block functions of frugal/quant/detail/block.hpp, the
// same calls the CPU reference (src/quant/quantize.cpp) makes, so the bytes are identical; this
// file only decides which thread handles which elements. Included only by the cuda/quant*.cu
// files, which are compiled with -fmad=false (see CMakeLists.txt): no FMA contraction may change
// a rounded product or sum.
//
// Kernel families (launch shapes and access widths in docs/kernels.md):
//   per-tensor formats: a grid-wide max reduction into scratch, then an element-wise encode;
//   per-channel formats: one block per row: a block reduction, then the row's encode (the row's
//     second read is served by the cache);
//   block formats (groups of 16-128, MX, NVFP4, NF4, GGUF): one thread per group; a block loads
//     its tile of groups with coalesced 16-byte accesses into shared memory (one 16-byte pad per
//     group keeps the per-thread reads free of bank conflicts), then each thread encodes its
//     group. NVFP4 first reduces the tensor's amax like a per-tensor format.
// Dequantization mirrors this: element-wise (up to 16 codes in one access per thread) for
// per-tensor and per-channel formats, one thread per group (through a padded shared-memory tile
// for coalesced 16-byte stores) for block formats.
#pragma once

#include "vector_access.cuh"

#include <frugal/error.hpp>
#include <frugal/quant/detail/block.hpp>
#include <frugal/quant/kernels.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace frugal::quant {
namespace {

namespace qd = ::frugal::quant::detail;

// ---- elements, words and vector accesses -----------------------------------------------------

/// How a kernel reads an input element: the raw storage type and its exact conversion to float
/// (the conversions the CPU reference uses).
template <class T>
struct element;
template <>
struct element<float> {
  using raw = float;
  __device__ static float to_float(float v) { return v; }
};
template <>
struct element<float16> {
  using raw = std::uint16_t;
  __device__ static float to_float(std::uint16_t b) {
    return ::frugal::detail::half_bits_to_float(b);
  }
};
template <>
struct element<bfloat16> {
  using raw = std::uint16_t;
  __device__ static float to_float(std::uint16_t b) {
    return ::frugal::detail::bfloat16_bits_to_float(b);
  }
};
template <class T>
using raw_t = typename element<T>::raw;

/// The integer type of an access of N bytes.
template <int N>
using word = ::frugal::cuda_detail::vector_word<N>;

/// The widest access (up to 16 bytes) that divides `bytes`.
__host__ __device__ constexpr int widest_access(int bytes) {
  return bytes % 16 == 0 ? 16 : bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : bytes % 2 == 0 ? 2 : 1;
}

/// E consecutive input elements as floats, in one access when E * sizeof(raw) is a word size.
template <class T, int E>
__device__ inline void load_floats(const raw_t<T>* p, float* out) {
  constexpr int bytes = E * static_cast<int>(sizeof(raw_t<T>));
  using w = typename word<bytes>::type;
  const w v = *reinterpret_cast<const w*>(p);
  raw_t<T> r[E];
  __builtin_memcpy(r, &v, bytes);
#pragma unroll
  for (int i = 0; i < E; ++i) out[i] = element<T>::to_float(r[i]);
}

/// Copies N bytes (an address aligned to widest_access(N)) with the widest accesses.
template <int N>
__device__ inline void store_bytes(std::uint8_t* dst, const std::uint8_t* src) {
  constexpr int width = widest_access(N);
  using w = typename word<width>::type;
#pragma unroll
  for (int k = 0; k < N / width; ++k) {
    w v;
    __builtin_memcpy(&v, src + k * width, width);
    reinterpret_cast<w*>(dst)[k] = v;
  }
}

template <int N>
__device__ inline void load_bytes(const std::uint8_t* src, std::uint8_t* dst) {
  constexpr int width = widest_access(N);
  using w = typename word<width>::type;
#pragma unroll
  for (int k = 0; k < N / width; ++k) {
    const w v = reinterpret_cast<const w*>(src)[k];
    __builtin_memcpy(dst + k * width, &v, width);
  }
}

// ---- reductions ---------------------------------------------------------------------------------

/// The max of a non-negative float over the block, returned to every thread. `shared` holds 33
/// floats; every thread of the block must call it.
__device__ float block_max(float v, float* shared) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (blockDim.x + 31) / 32 ? shared[lane] : 0.0f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
    if (lane == 0) shared[32] = v;
  }
  __syncthreads();
  const float result = shared[32];
  __syncthreads();  // `shared` may be reused right after
  return result;
}

/// What the reductions fold: amax (symmetric) or hi and -lo (asymmetric), all non-negative.
/// The max is order-independent, so any reduction tree gives the CPU's sequential value.
template <bool Asymmetric>
struct range_acc {
  float hi = 0.0f;      // amax, or the max (at least 0)
  float neg_lo = 0.0f;  // -min (at least 0); asymmetric only

  template <int E>
  __device__ void add(const float* x) {
    if constexpr (Asymmetric) {
      const qd::min_max m = qd::block_min_max(x, E);
      hi = fmaxf(hi, m.hi);
      neg_lo = fmaxf(neg_lo, -m.lo);
    } else {
      hi = fmaxf(hi, qd::block_amax(x, E));
    }
  }
};

/// Grid-wide reduction for the per-tensor formats and NVFP4: reduced[0] = bits of amax or hi,
/// reduced[1] = bits of -lo (the caller zeroes both first). Non-negative floats order like
/// their bit patterns, so an integer atomicMax is a float max.
template <class T, int E, bool Asymmetric>
__global__ void reduce_tensor_kernel(const raw_t<T>* in, std::size_t chunks, unsigned* reduced) {
  __shared__ float shared[33];
  range_acc<Asymmetric> acc;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += stride) {
    float x[E];
    load_floats<T, E>(in + c * E, x);
    acc.template add<E>(x);
  }
  const float hi = block_max(acc.hi, shared);
  const float neg_lo = Asymmetric ? block_max(acc.neg_lo, shared) : 0.0f;
  if (threadIdx.x == 0) {
    atomicMax(reduced, __float_as_uint(hi) & 0x7FFFFFFFu);
    if (Asymmetric) atomicMax(reduced + 1, __float_as_uint(neg_lo) & 0x7FFFFFFFu);
  }
}

// ---- per-tensor and per-channel encoders
// ----------------------------------------------------------

/// The four families with one FP32 scale per tensor or per row (8-bit codes).
template <bool Asymmetric>
struct int8_encoder {
  static constexpr bool asymmetric = Asymmetric;
  using params = qd::int_params;
  __device__ static params make(float hi, float lo) {
    if constexpr (Asymmetric)
      return qd::int_asymmetric_params(qd::min_max{lo, hi}, qd::int8_asymmetric_max);
    else
      return qd::int_symmetric_params(hi, qd::int8_symmetric_max);
  }
  __device__ static void store(const params& p, std::uint8_t* scales, std::uint8_t* zero_points,
                               std::size_t g) {
    reinterpret_cast<float*>(scales)[g] = p.scale;
    if constexpr (Asymmetric) zero_points[g] = static_cast<std::uint8_t>(p.zero_point);
  }
  __device__ static void encode(const float* x, int n, const params& p, std::uint8_t* out) {
    qd::encode_int8<Asymmetric>(x, static_cast<std::size_t>(n), p, out);
  }
};

template <bool E5M2>
struct fp8_encoder {
  static constexpr bool asymmetric = false;
  using params = float;  // the scale
  __device__ static params make(float amax, float) {
    return qd::fp8_scale(amax, E5M2 ? e5m2_max : e4m3_max);
  }
  __device__ static void store(const params& s, std::uint8_t* scales, std::uint8_t*,
                               std::size_t g) {
    reinterpret_cast<float*>(scales)[g] = s;
  }
  __device__ static void encode(const float* x, int n, const params& s, std::uint8_t* out) {
    if constexpr (E5M2)
      qd::encode_fp8_e5m2(x, static_cast<std::size_t>(n), s, out);
    else
      qd::encode_fp8_e4m3(x, static_cast<std::size_t>(n), s, out);
  }
};

/// The reduced range in the form the params functions take: hi >= +0, lo <= -0.
__device__ inline float reduced_hi(const unsigned* r) { return fabsf(__uint_as_float(r[0])); }
__device__ inline float reduced_lo(const unsigned* r) { return -fabsf(__uint_as_float(r[1])); }

/// Per-tensor encode: element-wise over chunks of E, one scale from the reduction.
template <class T, int E, class Encoder>
__global__ void encode_tensor_kernel(const raw_t<T>* in, std::size_t chunks, std::uint8_t* values,
                                     std::uint8_t* scales, std::uint8_t* zero_points,
                                     const unsigned* reduced) {
  const typename Encoder::params p = Encoder::make(reduced_hi(reduced), reduced_lo(reduced));
  if (blockIdx.x == 0 && threadIdx.x == 0) Encoder::store(p, scales, zero_points, 0);
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += stride) {
    float x[E];
    load_floats<T, E>(in + c * E, x);
    std::uint8_t q[E];
    Encoder::encode(x, E, p, q);
    store_bytes<E>(values + c * E, q);
  }
}

/// Per-channel: one block per row (grid-stride over rows). cols is a multiple of E.
template <class T, int E, class Encoder>
__global__ void encode_rows_kernel(const raw_t<T>* in, std::size_t rows, std::size_t cols,
                                   std::uint8_t* values, std::uint8_t* scales,
                                   std::uint8_t* zero_points) {
  __shared__ float shared[33];
  const std::size_t chunks = cols / E;
  for (std::size_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const raw_t<T>* row = in + r * cols;
    range_acc<Encoder::asymmetric> acc;
    for (std::size_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float x[E];
      load_floats<T, E>(row + c * E, x);
      acc.template add<E>(x);
    }
    const float hi = fabsf(block_max(acc.hi, shared));
    const float lo = Encoder::asymmetric ? -fabsf(block_max(acc.neg_lo, shared)) : -0.0f;
    const typename Encoder::params p = Encoder::make(hi, lo);
    if (threadIdx.x == 0) Encoder::store(p, scales, zero_points, r);
    std::uint8_t* out = values + r * cols;
    for (std::size_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float x[E];
      load_floats<T, E>(row + c * E, x);
      std::uint8_t q[E];
      Encoder::encode(x, E, p, q);
      store_bytes<E>(out + c * E, q);
    }
  }
}

/// Per-tensor and per-channel decode: chunks of E codes (16, 8, 4 or 1) read in one access of
/// E bytes; a chunk of 4 or more is written as E / 4 float4 stores. cols is a multiple of E, so
/// a chunk never straddles two rows (per_row: its scale is its row's).
template <int E, class Decoder>
__global__ void decode_rows_kernel(const std::uint8_t* values, std::size_t chunks, std::size_t cols,
                                   bool per_row, const std::uint8_t* scales,
                                   const std::uint8_t* zero_points, float* out) {
  static_assert(E == 1 || E == 4 || E == 8 || E == 16, "a chunk is 1, 4, 8 or 16 codes");
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; c < chunks;
       c += stride) {
    const std::size_t g = per_row ? c * E / cols : 0;
    std::uint8_t q[E];
    load_bytes<E>(values + c * E, q);
    float y[E];
    Decoder::decode(q, E, reinterpret_cast<const float*>(scales)[g],
                    zero_points != nullptr ? zero_points[g] : 0, y);
    if constexpr (E % 4 == 0) {
      float4* dst = reinterpret_cast<float4*>(out + c * E);
#pragma unroll
      for (int k = 0; k < E / 4; ++k)
        dst[k] = make_float4(y[4 * k], y[4 * k + 1], y[4 * k + 2], y[4 * k + 3]);
    } else {
      out[c] = y[0];
    }
  }
}

template <bool Asymmetric>
struct int8_decoder {
  __device__ static void decode(const std::uint8_t* q, int n, float scale, int zero_point,
                                float* y) {
    qd::decode_int8<Asymmetric>(q, static_cast<std::size_t>(n), scale, zero_point, y);
  }
};
template <bool E5M2>
struct fp8_decoder {
  __device__ static void decode(const std::uint8_t* q, int n, float scale, int, float* y) {
    if constexpr (E5M2)
      qd::decode_fp8_e5m2(q, static_cast<std::size_t>(n), scale, y);
    else
      qd::decode_fp8_e4m3(q, static_cast<std::size_t>(n), scale, y);
  }
};

// ---- block formats: one thread per group -------------------------------------------------------

/// What a group kernel needs beyond the group: NVFP4's tensor scales, MX's rounding choice.
struct group_context {
  float tensor_encode = 1.0f;
  float tensor_decode = 1.0f;
  bool mx_round_up = false;
};

/// Integer groups of G elements (int8_gN, int4_gN, asymmetric or not): an FP32 scale per group.
template <int Bits, bool Asymmetric, int G>
struct int_group {
  static constexpr int group = G;
  static constexpr int value_bytes = G * Bits / 8;
  static constexpr int scale_bytes = 4;
  static constexpr bool asymmetric = Asymmetric;
  __device__ static void encode(const float* x, std::uint8_t* out, unsigned& scale,
                                std::uint8_t& zero_point, const group_context&) {
    qd::int_params p;
    if constexpr (Asymmetric) {
      constexpr int qmax = Bits == 8 ? qd::int8_asymmetric_max : qd::int4_asymmetric_max;
      p = qd::int_asymmetric_params(qd::block_min_max(x, G), qmax);
    } else {
      constexpr int qmax = Bits == 8 ? qd::int8_symmetric_max : qd::int4_symmetric_max;
      p = qd::int_symmetric_params(qd::block_amax(x, G), qmax);
    }
    scale = __float_as_uint(p.scale);
    zero_point = static_cast<std::uint8_t>(p.zero_point);
    if constexpr (Bits == 8)
      qd::encode_int8<Asymmetric>(x, G, p, out);
    else
      qd::encode_int4<Asymmetric>(x, G, p, out);
  }
  __device__ static void decode(const std::uint8_t* in, float* y, unsigned scale,
                                std::uint8_t zero_point, const group_context&) {
    const int zp = Asymmetric ? zero_point : 0;
    if constexpr (Bits == 8)
      qd::decode_int8<Asymmetric>(in, G, __uint_as_float(scale), zp, y);
    else
      qd::decode_int4<Asymmetric>(in, G, __uint_as_float(scale), zp, y);
  }
};

/// OCP MX blocks of 32 (mxfp8: E4M3 codes, mxfp4: E2M1 codes) with an E8M0 scale byte.
template <bool Fp4>
struct mx_group {
  static constexpr int group = 32;
  static constexpr int value_bytes = Fp4 ? 16 : 32;
  static constexpr int scale_bytes = 1;
  static constexpr bool asymmetric = false;
  __device__ static void encode(const float* x, std::uint8_t* out, unsigned& scale, std::uint8_t&,
                                const group_context& ctx) {
    const float amax = qd::block_amax(x, group);
    std::uint8_t code;
    if constexpr (Fp4) {
      code = qd::mx_scale_code(amax, e2m1_emax, e2m1_max, ctx.mx_round_up);
      qd::encode_fp4(x, group, qd::e8m0_inverse(code), out);
    } else {
      code = qd::mx_scale_code(amax, e4m3_emax, e4m3_max, ctx.mx_round_up);
      qd::encode_fp8_e4m3_scaled(x, group, qd::e8m0_inverse(code), out);
    }
    scale = code;
  }
  __device__ static void decode(const std::uint8_t* in, float* y, unsigned scale, std::uint8_t,
                                const group_context&) {
    const float s = from_e8m0(static_cast<std::uint8_t>(scale));
    if constexpr (Fp4)
      qd::decode_fp4(in, group, s, y);
    else
      qd::decode_fp8_e4m3(in, group, s, y);
  }
};

/// NVFP4 blocks of 16 E2M1 codes with an E4M3 scale byte under the FP32 tensor scale.
struct nvfp4_group {
  static constexpr int group = 16;
  static constexpr int value_bytes = 8;
  static constexpr int scale_bytes = 1;
  static constexpr bool asymmetric = false;
  __device__ static void encode(const float* x, std::uint8_t* out, unsigned& scale, std::uint8_t&,
                                const group_context& ctx) {
    const std::uint8_t code = qd::nvfp4_block_scale(qd::block_amax(x, group), ctx.tensor_encode);
    qd::encode_fp4(x, group, qd::nvfp4_element_scale(code, ctx.tensor_decode), out);
    scale = code;
  }
  __device__ static void decode(const std::uint8_t* in, float* y, unsigned scale, std::uint8_t,
                                const group_context& ctx) {
    qd::decode_fp4(in, group,
                   qd::nvfp4_decode_scale(static_cast<std::uint8_t>(scale), ctx.tensor_decode), y);
  }
};

/// NF4 blocks of 64 with the FP32 absmax as the scale.
struct nf4_group {
  static constexpr int group = 64;
  static constexpr int value_bytes = 32;
  static constexpr int scale_bytes = 4;
  static constexpr bool asymmetric = false;
  __device__ static void encode(const float* x, std::uint8_t* out, unsigned& scale, std::uint8_t&,
                                const group_context&) {
    const float absmax = qd::block_amax(x, group);
    qd::encode_nf4(x, group, absmax, out);
    scale = __float_as_uint(absmax);
  }
  __device__ static void decode(const std::uint8_t* in, float* y, unsigned scale, std::uint8_t,
                                const group_context&) {
    qd::decode_nf4(in, group, __uint_as_float(scale), y);
  }
};

/// GGUF records (q8_0: 34 bytes, q4_0: 18 bytes) of 32 elements; the FP16 scale is inline.
template <bool Q4>
struct gguf_group {
  static constexpr int group = 32;
  static constexpr int value_bytes =
      static_cast<int>(Q4 ? qd::q4_0_record_bytes : qd::q8_0_record_bytes);
  static constexpr int scale_bytes = 0;
  static constexpr bool asymmetric = false;
  __device__ static void encode(const float* x, std::uint8_t* out, unsigned&, std::uint8_t&,
                                const group_context&) {
    if constexpr (Q4)
      qd::encode_q4_0(x, out);
    else
      qd::encode_q8_0(x, out);
  }
  __device__ static void decode(const std::uint8_t* in, float* y, unsigned, std::uint8_t,
                                const group_context&) {
    if constexpr (Q4)
      qd::decode_q4_0(in, y);
    else
      qd::decode_q8_0(in, y);
  }
};

/// Bytes between the starts of two groups in a shared-memory tile: the group plus 16 bytes, an
/// odd number of 16-byte units, so eight threads reading 16 bytes each hit distinct banks.
template <int GroupBytes>
constexpr int tile_stride = GroupBytes + 16;

/// NVFP4's tensor scales from the reduced amax, or the identity for other formats.
__device__ inline group_context context_from(group_context ctx, const unsigned* reduced) {
  if (reduced != nullptr) {
    const qd::nvfp4_tensor_params t = qd::nvfp4_tensor_scales(reduced_hi(reduced));
    ctx.tensor_encode = t.encode;
    ctx.tensor_decode = t.decode;
  }
  return ctx;
}

/// Quantizes `groups` groups of P::group elements; a block takes blockDim.x groups at a time.
/// `in` and `values` are 16-byte aligned. reduced (NVFP4 only) holds the tensor amax, and the
/// first thread writes the tensor decode scale to tensor_scale.
template <class T, class P>
__global__ void quantize_groups_kernel(const raw_t<T>* in, std::size_t groups, std::uint8_t* values,
                                       std::uint8_t* scales, std::uint8_t* zero_points,
                                       group_context ctx, const unsigned* reduced,
                                       float* tensor_scale) {
  extern __shared__ uint4 tile_words[];
  auto* tile = reinterpret_cast<unsigned char*>(tile_words);
  constexpr int g_elems = P::group;
  constexpr int group_bytes = g_elems * static_cast<int>(sizeof(raw_t<T>));
  constexpr int units = group_bytes / 16;  // 16-byte units per group (group_bytes >= 32)
  constexpr int stride = tile_stride<group_bytes>;
  ctx = context_from(ctx, reduced);
  if (tensor_scale != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    *tensor_scale = ctx.tensor_decode;
  const std::size_t tile_groups = blockDim.x;
  for (std::size_t first = blockIdx.x * tile_groups; first < groups;
       first += static_cast<std::size_t>(gridDim.x) * tile_groups) {
    const std::size_t count = groups - first < tile_groups ? groups - first : tile_groups;
    const uint4* src = reinterpret_cast<const uint4*>(in + first * g_elems);
    for (std::size_t u = threadIdx.x; u < count * units; u += blockDim.x)
      *reinterpret_cast<uint4*>(tile + (u / units) * stride + (u % units) * 16) = src[u];
    __syncthreads();
    if (threadIdx.x < count) {
      float x[g_elems];
      constexpr int per_unit = 16 / static_cast<int>(sizeof(raw_t<T>));
#pragma unroll
      for (int k = 0; k < units; ++k) {
        const uint4 v = *reinterpret_cast<const uint4*>(tile + threadIdx.x * stride + k * 16);
        raw_t<T> r[per_unit];
        __builtin_memcpy(r, &v, 16);
#pragma unroll
        for (int i = 0; i < per_unit; ++i) x[k * per_unit + i] = element<T>::to_float(r[i]);
      }
      const std::size_t g = first + threadIdx.x;
      std::uint8_t out[P::value_bytes];
      unsigned scale = 0;
      std::uint8_t zero_point = 0;
      P::encode(x, out, scale, zero_point, ctx);
      store_bytes<P::value_bytes>(values + g * P::value_bytes, out);
      if constexpr (P::scale_bytes == 4) reinterpret_cast<unsigned*>(scales)[g] = scale;
      if constexpr (P::scale_bytes == 1) scales[g] = static_cast<std::uint8_t>(scale);
      if constexpr (P::asymmetric) zero_points[g] = zero_point;
    }
    __syncthreads();
  }
}

/// Dequantizes `groups` groups; each thread decodes one into a padded shared-memory tile, and the
/// block stores the tile with coalesced 16-byte accesses. `out` is 16-byte aligned.
template <class P>
__global__ void dequantize_groups_kernel(const std::uint8_t* values, const std::uint8_t* scales,
                                         const std::uint8_t* zero_points, std::size_t groups,
                                         const float* tensor_scale, float* out) {
  extern __shared__ uint4 tile_words[];
  auto* tile = reinterpret_cast<unsigned char*>(tile_words);
  constexpr int g_elems = P::group;
  constexpr int group_bytes = g_elems * 4;
  constexpr int units = group_bytes / 16;
  constexpr int stride = tile_stride<group_bytes>;
  group_context ctx;
  if (tensor_scale != nullptr) ctx.tensor_decode = *tensor_scale;
  const std::size_t tile_groups = blockDim.x;
  for (std::size_t first = blockIdx.x * tile_groups; first < groups;
       first += static_cast<std::size_t>(gridDim.x) * tile_groups) {
    const std::size_t count = groups - first < tile_groups ? groups - first : tile_groups;
    if (threadIdx.x < count) {
      const std::size_t g = first + threadIdx.x;
      std::uint8_t in[P::value_bytes];
      load_bytes<P::value_bytes>(values + g * P::value_bytes, in);
      unsigned scale = 0;
      if constexpr (P::scale_bytes == 4) scale = reinterpret_cast<const unsigned*>(scales)[g];
      if constexpr (P::scale_bytes == 1) scale = scales[g];
      const std::uint8_t zero_point = P::asymmetric ? zero_points[g] : 0;
      float y[g_elems];
      P::decode(in, y, scale, zero_point, ctx);
#pragma unroll
      for (int k = 0; k < units; ++k)
        *reinterpret_cast<float4*>(tile + threadIdx.x * stride + k * 16) =
            make_float4(y[4 * k], y[4 * k + 1], y[4 * k + 2], y[4 * k + 3]);
    }
    __syncthreads();
    uint4* dst = reinterpret_cast<uint4*>(out + first * g_elems);
    for (std::size_t u = threadIdx.x; u < count * units; u += blockDim.x)
      dst[u] = *reinterpret_cast<const uint4*>(tile + (u / units) * stride + (u % units) * 16);
    __syncthreads();
  }
}

}  // namespace
}  // namespace frugal::quant
