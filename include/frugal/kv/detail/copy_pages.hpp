// frugal/kv/detail/copy_pages.hpp: the page-copy kernel's work split, shared by the kernel
// (cuda/kv_copy.cu) and a host emulation that runs every thread of the same grid in turn, so the
// CPU tests cover the kernel's loops (the chunks, the byte-wise tail) without a device.
//   frugal::kv::detail::copy_pages_emulated(src, dst, 1024, 1024, 1001, ops.data(), ops.size());
#pragma once

#include <frugal/config.hpp>
#include <frugal/kv/copy_kernel.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <cstdint>

namespace frugal::kv::detail {

/// @brief The widest access up to `limit` bytes (a power of two) that divides every address the
/// kernel forms: both bases and both strides.
inline int copy_access_width(std::uintptr_t src_base, std::uintptr_t dst_base,
                             std::size_t src_stride, std::size_t dst_stride, int limit) noexcept {
  const std::uintptr_t bits = src_base | dst_base | src_stride | dst_stride;
  int width = limit;
  while (width > 1 && (bits % static_cast<std::uintptr_t>(width)) != 0) width /= 2;
  return width;
}

/// @brief One launch's shape for accesses of `width` bytes: grid_x blocks walk the ops
/// (grid-stride), grid_y blocks the chunks of chunk_bytes within a page (grid-stride).
struct copy_launch {
  std::size_t chunk_bytes = 0;  ///< a positive multiple of the width
  unsigned grid_x = 1;          ///< min(num_ops, max_blocks_x)
  unsigned grid_y = 1;          ///< chunks of the page's whole accesses, 1 to 65535
  unsigned threads = 1;         ///< threads_per_block
};

/// @param num_ops positive
inline copy_launch plan_copy(std::size_t page_bytes, std::size_t num_ops, int width,
                             const copy_kernel_tuning& tuning) noexcept {
  const auto n = static_cast<std::size_t>(width);
  copy_launch shape;
  shape.chunk_bytes = tuning.bytes_per_block / n * n;
  if (shape.chunk_bytes < n) shape.chunk_bytes = n;
  const std::size_t vec_bytes = page_bytes / n * n;
  const std::size_t chunks = (vec_bytes + shape.chunk_bytes - 1) / shape.chunk_bytes;
  shape.grid_x =
      static_cast<unsigned>(num_ops < tuning.max_blocks_x ? num_ops : tuning.max_blocks_x);
  shape.grid_y = static_cast<unsigned>(chunks == 0 ? 1 : chunks < 65535 ? chunks : 65535);
  shape.threads = static_cast<unsigned>(tuning.threads_per_block);
  return shape;
}

/// @brief What thread `thread` of block (block_x, block_y) copies: for each of its ops, its
/// chunks' N-byte words (Word is an N-byte type), and, in the blocks with block_y == 0, the last
/// page_bytes % N bytes one by one. Every base and stride is a multiple of N.
template <int N, class Word>
FRUGAL_HOST_DEVICE inline void copy_pages_thread(
    const std::byte* __restrict__ src_base, std::byte* __restrict__ dst_base,
    std::size_t src_stride, std::size_t dst_stride, std::size_t page_bytes,
    const copy_op* __restrict__ ops, std::size_t num_ops, std::size_t chunk_bytes, unsigned block_x,
    unsigned block_y, unsigned grid_x, unsigned grid_y, unsigned thread, unsigned threads) {
  static_assert(sizeof(Word) == N, "Word is one N-byte access");
  const std::size_t vecs = page_bytes / N;
  const std::size_t vecs_per_chunk = chunk_bytes / N;
  const std::size_t tail_begin = vecs * N;
  for (std::size_t i = block_x; i < num_ops; i += grid_x) {
    const copy_op op = ops[i];
    const std::byte* src = src_base + static_cast<std::size_t>(op.src) * src_stride;
    std::byte* dst = dst_base + static_cast<std::size_t>(op.dst) * dst_stride;
    const Word* s = reinterpret_cast<const Word*>(src);
    Word* d = reinterpret_cast<Word*>(dst);
    for (std::size_t chunk = block_y; chunk * vecs_per_chunk < vecs; chunk += grid_y) {
      const std::size_t begin = chunk * vecs_per_chunk;
      const std::size_t end = begin + vecs_per_chunk < vecs ? begin + vecs_per_chunk : vecs;
      for (std::size_t v = begin + thread; v < end; v += threads) d[v] = s[v];
    }
    if (N > 1 && block_y == 0)
      for (std::size_t b = tail_begin + thread; b < page_bytes; b += threads) dst[b] = src[b];
  }
}

/// @brief An N-byte word for the host emulation (may_alias: it reads and writes byte storage).
template <int N>
struct
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((may_alias))
#endif
    host_word {
  alignas(N) unsigned char bytes[N];
};

/// @brief Runs every thread of one launch's grid on the host, one after the other (block x, then
/// y, then thread). The ops of a launch are independent, so any order gives the kernel's bytes.
template <int N>
void emulate_copy_launch(const std::byte* src_base, std::byte* dst_base, std::size_t src_stride,
                         std::size_t dst_stride, std::size_t page_bytes, const copy_op* ops,
                         std::size_t num_ops, const copy_launch& shape) {
  for (unsigned bx = 0; bx < shape.grid_x; ++bx)
    for (unsigned by = 0; by < shape.grid_y; ++by)
      for (unsigned t = 0; t < shape.threads; ++t)
        copy_pages_thread<N, host_word<N>>(src_base, dst_base, src_stride, dst_stride, page_bytes,
                                           ops, num_ops, shape.chunk_bytes, bx, by, shape.grid_x,
                                           shape.grid_y, t, shape.threads);
}

/// @brief copy_pages_device (the raw-pointer form) emulated on host memory: the same access
/// width, launch shape and per-thread work as the kernel. For tests; the tuning is trusted.
inline void copy_pages_emulated(const std::byte* src_base, std::byte* dst_base,
                                std::size_t src_stride, std::size_t dst_stride,
                                std::size_t page_bytes, const copy_op* ops, std::size_t num_ops,
                                const copy_kernel_tuning& tuning = {}) {
  if (num_ops == 0 || page_bytes == 0) return;
  const int width = copy_access_width(reinterpret_cast<std::uintptr_t>(src_base),
                                      reinterpret_cast<std::uintptr_t>(dst_base), src_stride,
                                      dst_stride, tuning.vec_bytes);
  const copy_launch shape = plan_copy(page_bytes, num_ops, width, tuning);
  switch (width) {
    case 16:
      return emulate_copy_launch<16>(src_base, dst_base, src_stride, dst_stride, page_bytes, ops,
                                     num_ops, shape);
    case 8:
      return emulate_copy_launch<8>(src_base, dst_base, src_stride, dst_stride, page_bytes, ops,
                                    num_ops, shape);
    case 4:
      return emulate_copy_launch<4>(src_base, dst_base, src_stride, dst_stride, page_bytes, ops,
                                    num_ops, shape);
    case 2:
      return emulate_copy_launch<2>(src_base, dst_base, src_stride, dst_stride, page_bytes, ops,
                                    num_ops, shape);
    default:
      return emulate_copy_launch<1>(src_base, dst_base, src_stride, dst_stride, page_bytes, ops,
                                    num_ops, shape);
  }
}

}  // namespace frugal::kv::detail
