// frugal/kv/detail/attention_math.hpp: the element codecs and softmax pieces that the CPU paged
// attention (src/kv/attention.cpp) and the CUDA kernels (cuda/attention.cu) share, so that both
// store the same bytes and merge partial results with the same arithmetic.
#pragma once

#include <frugal/config.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/kv/page_pool.hpp>
#include <frugal/numeric/float16.hpp>
#include <frugal/quant/codecs.hpp>
#include <frugal/quant/detail/block.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace frugal::kv::detail {

/// Largest int8 code of the KV cache: codes are symmetric, -127..127, value = code * scale.
inline constexpr float int8_kv_max = 127.0f;

/// @brief Encodes `x` as one element of type `t` at `p`; the 8-bit types store x / scale
/// (fp8 saturating to the format's largest finite value, int8 rounded half to even and clamped
/// to ±127, NaN to 0). Division, not a reciprocal, so host and device give the same code.
FRUGAL_HOST_DEVICE inline void store_element(dtype t, std::byte* p, float x, float scale) noexcept {
  switch (t) {
    case dtype::fp32: {
      const auto bits = __builtin_bit_cast(std::uint32_t, x);
      std::uint8_t* b = reinterpret_cast<std::uint8_t*>(p);
      for (int i = 0; i < 4; ++i) b[i] = static_cast<std::uint8_t>(bits >> (8 * i));
      return;
    }
    case dtype::fp16:
    case dtype::bf16: {
      const std::uint16_t bits = t == dtype::fp16 ? frugal::detail::float_to_half_bits(x)
                                                  : frugal::detail::float_to_bfloat16_bits(x);
      std::uint8_t* b = reinterpret_cast<std::uint8_t*>(p);
      b[0] = static_cast<std::uint8_t>(bits);
      b[1] = static_cast<std::uint8_t>(bits >> 8);
      return;
    }
    case dtype::fp8_e4m3:
      *reinterpret_cast<std::uint8_t*>(p) = quant::to_fp8_e4m3(x / scale);
      return;
    case dtype::fp8_e5m2:
      *reinterpret_cast<std::uint8_t*>(p) = quant::to_fp8_e5m2(x / scale);
      return;
    case dtype::int8: {
      float v = x / scale;
      v = v != v ? 0.0f : v > int8_kv_max ? int8_kv_max : v < -int8_kv_max ? -int8_kv_max : v;
      const auto code = static_cast<std::int8_t>(quant::detail::round_half_even(v));
      *reinterpret_cast<std::int8_t*>(p) = code;
      return;
    }
  }
}

/// @brief The element of type `t` at `p` as a float, without its scale (the 8-bit types give
/// their code's value: multiply by the scale once per row, not per element).
FRUGAL_HOST_DEVICE inline float load_code(dtype t, const std::byte* p) noexcept {
  const std::uint8_t* b = reinterpret_cast<const std::uint8_t*>(p);
  switch (t) {
    case dtype::fp32: {
      std::uint32_t bits = 0;
      for (int i = 0; i < 4; ++i) bits |= std::uint32_t{b[i]} << (8 * i);
      return __builtin_bit_cast(float, bits);
    }
    case dtype::fp16:
      return frugal::detail::half_bits_to_float(static_cast<std::uint16_t>(b[0] | (b[1] << 8)));
    case dtype::bf16:
      return frugal::detail::bfloat16_bits_to_float(static_cast<std::uint16_t>(b[0] | (b[1] << 8)));
    case dtype::fp8_e4m3:
      return quant::from_fp8_e4m3(b[0]);
    case dtype::fp8_e5m2:
      return quant::from_fp8_e5m2(b[0]);
    case dtype::int8:
      return static_cast<float>(static_cast<std::int8_t>(b[0]));
  }
  return 0.0f;
}

/// @brief The scale of K (kv = 0) or V (kv = 1) for `head`, from one layer's scales as
/// layout::scales_per_layer() orders them: per tensor [K, V]; per head [K x heads, V x heads].
/// 1 for the types without scales.
FRUGAL_HOST_DEVICE inline float scale_of(const layout& l, const float* scales, std::size_t kv,
                                         std::size_t head) noexcept {
  if (element_bytes(l.dtype) != 1) return 1.0f;
  return l.scales == scale_granularity::per_tensor ? scales[kv]
                                                   : scales[kv * l.num_kv_heads + head];
}

/// @brief Running state of an online softmax over keys: the largest score seen, the sum of
/// exp(score - max) and, beside it, the accumulator of exp(score - max) * V. Two states over
/// disjoint key ranges merge exactly (up to rounding) into the state over their union.
struct softmax_state {
  float max = __builtin_bit_cast(float, 0xFF800000u);  // -infinity
  float sum = 0.0f;
};

/// @brief Folds a partial result (state `b`, unnormalised accumulator `acc_b`) into (`a`,
/// `acc_a`), `dim` values each. Empty states (sum 0) leave the other side unchanged.
FRUGAL_HOST_DEVICE inline void merge_softmax(softmax_state& a, float* acc_a, const softmax_state& b,
                                             const float* acc_b, std::size_t dim) noexcept {
  if (b.sum == 0.0f) return;
  if (a.sum == 0.0f) {
    a = b;
    for (std::size_t d = 0; d < dim; ++d) acc_a[d] = acc_b[d];
    return;
  }
  const float max = a.max > b.max ? a.max : b.max;
  const float wa = expf(a.max - max), wb = expf(b.max - max);
  a.sum = a.sum * wa + b.sum * wb;
  for (std::size_t d = 0; d < dim; ++d) acc_a[d] = acc_a[d] * wa + acc_b[d] * wb;
  a.max = max;
}

/// @brief How paged_decode_device cuts a sequence's pages among thread blocks (flash-decoding):
/// split s walks pages [s * pages_per_split, (s + 1) * pages_per_split) of the sequence, and a
/// second pass merges the splits' softmax states. Splits past a short sequence's pages are empty.
FRUGAL_HOST_DEVICE constexpr std::size_t num_splits(std::size_t max_pages,
                                                    std::size_t pages_per_split) noexcept {
  return max_pages == 0 ? 1 : (max_pages + pages_per_split - 1) / pages_per_split;
}

/// @brief Dimension `d` of the attention output from `splits` partial results: their maxima,
/// sums and unnormalised accumulators (acc of split s at accs[s * acc_stride + d]). Empty
/// splits (sum 0) count for nothing; with no key at all the output is 0.
FRUGAL_HOST_DEVICE inline float merge_partials(const float* maxes, const float* sums,
                                               const float* accs, std::size_t splits,
                                               std::size_t acc_stride, std::size_t d) noexcept {
  float max = __builtin_bit_cast(float, 0xFF800000u);
  for (std::size_t s = 0; s < splits; ++s)
    if (sums[s] > 0.0f && maxes[s] > max) max = maxes[s];
  float sum = 0.0f, acc = 0.0f;
  for (std::size_t s = 0; s < splits; ++s) {
    if (!(sums[s] > 0.0f)) continue;
    const float w = expf(maxes[s] - max);
    sum += sums[s] * w;
    acc += accs[s * acc_stride + d] * w;
  }
  return sum > 0.0f ? acc / sum : 0.0f;
}

/// @brief The first key position a query at `position` sees: 0, or with a sliding window of
/// `window_left` (>= 0) keys to its left, position - window_left (FlashInfer's window_left).
FRUGAL_HOST_DEVICE constexpr std::size_t first_key(std::size_t position,
                                                   std::int32_t window_left) noexcept {
  if (window_left < 0 || position <= static_cast<std::size_t>(window_left)) return 0;
  return position - static_cast<std::size_t>(window_left);
}

/// @brief Element `e` (0 .. 2 x heads x head_dim: K then V, head-major, dim fastest) of token
/// `t`'s K/V rows, encoded into its slot: the work of one thread of write_kv_device, and of the
/// CPU emulation of that kernel. A negative slot or one past `capacity` slots writes nothing.
FRUGAL_HOST_DEVICE inline void write_kv_element(const layout& l, const page_addressing& a,
                                                std::uint32_t layer, const float* k, const float* v,
                                                std::int64_t slot, std::int64_t capacity,
                                                std::size_t t, std::size_t e,
                                                const float* scales) noexcept {
  if (slot < 0 || slot >= capacity) return;
  const std::size_t row = std::size_t{l.num_kv_heads} * l.head_dim;
  const auto page = static_cast<page_id>(slot / l.page_size);
  const auto offset = static_cast<std::size_t>(slot % l.page_size);
  const std::size_t kv = e / row, h = (e % row) / l.head_dim, d = e % l.head_dim;
  const float x = (kv == 0 ? k : v)[t * row + h * l.head_dim + d];
  store_element(l.dtype, a.base + a.offset(layer, page, kv, offset, h, d), x,
                scale_of(l, scales, kv, h));
}

/// @brief The keys one split of one sequence walks in paged_decode_device: its pages
/// [page_begin, page_end) of the sequence, and the sequence's kv_len and first visible key.
struct split_keys {
  std::size_t page_begin = 0, page_end = 0, kv_len = 0, first = 0;
};

/// @brief split_keys of split `split` for a sequence with `num_pages` pages whose last holds
/// `last_page_len` tokens; the decode query sits at kv_len - 1.
FRUGAL_HOST_DEVICE inline split_keys keys_of_split(std::size_t num_pages, std::size_t last_page_len,
                                                   std::size_t page_size, std::size_t split,
                                                   std::size_t pages_per_split,
                                                   std::int32_t window_left) noexcept {
  split_keys k;
  k.kv_len = num_pages == 0 ? 0 : (num_pages - 1) * page_size + last_page_len;
  k.first = k.kv_len == 0 ? 0 : first_key(k.kv_len - 1, window_left);
  k.page_begin = split * pages_per_split;
  k.page_end =
      k.page_begin + pages_per_split < num_pages ? k.page_begin + pages_per_split : num_pages;
  if (k.page_end < k.page_begin) k.page_end = k.page_begin;
  return k;
}

}  // namespace frugal::kv::detail
