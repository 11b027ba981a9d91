// Random page-copy lists for the copy kernel's tests, on the host emulation and on the device.
#pragma once

#include <frugal/kv/page_pool.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

/// `count` ops with distinct destinations and sources drawn from `src_pages` pages.
inline std::vector<frugal::kv::copy_op> random_ops(std::size_t count, std::uint32_t src_pages,
                                                   std::uint32_t dst_pages, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<frugal::kv::page_id> dst(dst_pages);
  std::iota(dst.begin(), dst.end(), 0u);
  std::shuffle(dst.begin(), dst.end(), rng);
  std::vector<frugal::kv::copy_op> ops(count);
  for (std::size_t i = 0; i < count; ++i)
    ops[i] = {static_cast<frugal::kv::page_id>(rng() % src_pages), dst[i]};
  return ops;
}
