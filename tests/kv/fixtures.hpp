// Small helpers the KV cache tests share: a layout with arithmetic that reads easily, runs of
// token ids, cache options without the watermark, and a one-line description of a layout.
#pragma once

#include <frugal/kv/cache.hpp>

#include <cstddef>
#include <numeric>
#include <string>
#include <vector>

namespace frugal::kv::test {

// 4 tokens per page keeps the arithmetic readable.
inline layout small_layout() {
  return {.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .page_size = 4};
}

/// `count` consecutive token ids from `first`.
inline std::vector<token_id> tokens(int first, int count) {
  std::vector<token_id> t(static_cast<std::size_t>(count));
  std::iota(t.begin(), t.end(), first);
  return t;
}

inline cache::options no_watermark(bool prefix = true) {
  return {.enable_prefix_caching = prefix, .watermark = 0.0};
}

/// "2 layers, 3 heads, dim 4, page 5, fp16, NHD": what a failing case ran on.
inline std::string describe(const layout& l) {
  static const char* const names[] = {"fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "int8"};
  return std::to_string(l.num_layers) + " layers, " + std::to_string(l.num_kv_heads) +
         " heads, dim " + std::to_string(l.head_dim) + ", page " + std::to_string(l.page_size) +
         ", " + names[static_cast<int>(l.dtype)] + ", " + (l.order == order::nhd ? "NHD" : "HND");
}

}  // namespace frugal::kv::test
