// frugal/kv/layout.hpp: the shape of a paged KV cache: layers, KV heads, head size, tokens per
// page, element type and the order of a page's dimensions, as FlashInfer defines them.
//   frugal::kv::layout l{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128, .page_size = 16};
//   std::size_t bytes = l.page_bytes();   // one page across all layers, K and V
#pragma once

#include <frugal/config.hpp>
#include <frugal/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace frugal::kv {

/// @brief Element type of the cache. The 8-bit types carry scales (see scale_granularity);
/// fp32 is for CPU engines and exact tests.
enum class dtype : std::uint8_t { fp16, bf16, fp8_e4m3, fp8_e5m2, int8, fp32 };

/// @brief Order of one layer's page: NHD is [page, 2, page_size, heads, dim], HND is
/// [page, 2, heads, page_size, dim] (FlashInfer's kv_layout "NHD" / "HND"); 2 is K then V.
enum class order : std::uint8_t { nhd, hnd };

/// @brief How the 8-bit types are scaled: one float per tensor (per layer, K and V), or one per
/// KV head. Scales are kept beside the pages, not in them.
enum class scale_granularity : std::uint8_t { per_tensor, per_head };

/// @brief Bytes per element of `t`.
FRUGAL_HOST_DEVICE constexpr std::size_t element_bytes(dtype t) noexcept {
  return t == dtype::fp32 ? 4 : t == dtype::fp16 || t == dtype::bf16 ? 2 : 1;
}

/// @brief The stable name of `t` ("fp16", "fp8_e4m3", ...), as the CLI and examples spell it.
constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::fp16:
      return "fp16";
    case dtype::bf16:
      return "bf16";
    case dtype::fp8_e4m3:
      return "fp8_e4m3";
    case dtype::fp8_e5m2:
      return "fp8_e5m2";
    case dtype::int8:
      return "int8";
    case dtype::fp32:
      return "fp32";
  }
  return "?";
}

/// @brief Every dtype, in the order their names are listed.
inline constexpr dtype all_dtypes[] = {dtype::fp16,     dtype::bf16, dtype::fp8_e4m3,
                                       dtype::fp8_e5m2, dtype::int8, dtype::fp32};

/// @brief The names parse_dtype takes, for messages: "fp16, bf16, fp8 (fp8_e4m3), ...".
inline std::string dtype_names() {
  std::string names;
  for (const dtype t : all_dtypes) {
    if (!names.empty()) names += ", ";
    names += t == dtype::fp8_e4m3 ? "fp8 (fp8_e4m3)" : std::string(to_string(t));
  }
  return names;
}

/// @brief The dtype named `name` (a to_string() name, or "fp8" for fp8_e4m3).
/// @throws invalid_argument for an unknown name, listing the known ones
inline dtype parse_dtype(std::string_view name) {
  if (name == "fp8") return dtype::fp8_e4m3;
  for (const dtype t : all_dtypes)
    if (to_string(t) == name) return t;
  FRUGAL_FAIL("kv: unknown KV dtype \"" + std::string(name) + "\"; known: " + dtype_names(),
              invalid_argument);
}

/// @brief The shape of a paged KV cache. Validated by validate() (every kv constructor calls it).
struct layout {
  std::uint32_t num_layers = 0;
  std::uint32_t num_kv_heads = 0;
  std::uint32_t head_dim = 0;
  std::uint32_t page_size = 16;  ///< tokens per page
  kv::dtype dtype = kv::dtype::fp16;
  kv::order order = kv::order::nhd;
  kv::scale_granularity scales = kv::scale_granularity::per_tensor;  ///< 8-bit types only

  /// Bytes of one token's K (or V) in one layer: heads x dim elements.
  constexpr std::size_t token_bytes() const noexcept {
    return std::size_t{num_kv_heads} * head_dim * element_bytes(dtype);
  }
  /// Bytes of one page in one layer, K and V: 2 x page_size x heads x dim elements.
  constexpr std::size_t layer_page_bytes() const noexcept {
    return 2 * std::size_t{page_size} * token_bytes();
  }
  /// Bytes of one page across all layers.
  constexpr std::size_t page_bytes() const noexcept { return num_layers * layer_page_bytes(); }
  /// Pages that hold `tokens` tokens: tokens / page_size, rounded up.
  constexpr std::size_t pages_for(std::size_t tokens) const noexcept {
    return (tokens + page_size - 1) / page_size;
  }
  /// The KV slot of token `token` of a sequence whose pages are `pages`:
  /// page * page_size + offset within the page.
  constexpr std::int64_t slot_of(std::span<const std::uint32_t> pages,
                                 std::size_t token) const noexcept {
    return static_cast<std::int64_t>(pages[token / page_size]) *
               static_cast<std::int64_t>(page_size) +
           static_cast<std::int64_t>(token % page_size);
  }
  /// Scale values (floats) per layer for the 8-bit types: 2 per tensor or 2 x heads; 0 otherwise.
  constexpr std::size_t scales_per_layer() const noexcept {
    if (element_bytes(dtype) != 1) return 0;
    return scales == scale_granularity::per_tensor ? 2 : 2 * std::size_t{num_kv_heads};
  }

  /// @throws frugal::invalid_argument naming the first zero-sized field
  void validate() const {
    const char* zero = num_layers == 0     ? "num_layers"
                       : num_kv_heads == 0 ? "num_kv_heads"
                       : head_dim == 0     ? "head_dim"
                       : page_size == 0    ? "page_size"
                                           : nullptr;
    FRUGAL_EXPECTS(zero == nullptr, std::string("kv::layout: ") + (zero ? zero : "") + " is zero",
                   invalid_argument);
  }

  friend constexpr bool operator==(const layout&, const layout&) = default;
};

/// @brief Whole pages of `l` that fit in `bytes` (pages are rounded up to 256-byte multiples).
inline std::size_t pages_that_fit(const layout& l, std::size_t bytes) {
  l.validate();
  const std::size_t stride = (l.page_bytes() + 255) / 256 * 256;
  return bytes / stride;
}

/// @brief How many sequences of `tokens_per_sequence` tokens `num_pages` pages hold, as a
/// fraction: pages x page_size / tokens per sequence.
inline double max_concurrency(const layout& l, std::size_t num_pages,
                              std::size_t tokens_per_sequence) {
  l.validate();
  FRUGAL_EXPECTS(tokens_per_sequence > 0, "kv::max_concurrency: tokens_per_sequence is zero",
                 invalid_argument);
  return static_cast<double>(num_pages) * l.page_size / static_cast<double>(tokens_per_sequence);
}

}  // namespace frugal::kv
