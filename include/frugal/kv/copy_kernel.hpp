// frugal/kv/copy_kernel.hpp: the batched page-copy kernel (cuda/kv_copy.cu, in frugal::cuda) that
// performs a kv::cache's copy lists on device-accessible pools: copy-on-write, swap_out, swap_in.
// snippet: cuda
//   frugal::kv::copy_pages_device(cache.pages(), cache.pages(), cache.take_copy_ops(), stream);
//   frugal::kv::copy_pages_device(cache.pages(), *cache.host_pages(), cache.swap_out(seq), stream);
#pragma once

#include <frugal/config.hpp>
#include <frugal/kv/page_pool.hpp>

#include <cstddef>
#include <span>

#if FRUGAL_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace frugal::kv {

/// @brief Launch shape of the page-copy kernel (CUB's habit: knobs in one aggregate, not magic
/// numbers in the kernel). The grid is ops x chunks: blockIdx.x walks the ops (grid-stride),
/// blockIdx.y the chunks of bytes_per_block bytes within a page, so a 2 MiB page spreads over
/// 128 blocks and a 16 KiB page takes one.
struct copy_kernel_tuning {
  int threads_per_block = 256;
  /// Widest access in bytes (16, 8, 4, 2 or 1). The kernel uses the widest width up to this
  /// that divides both base pointers and both page strides; page_bytes need not be a multiple
  /// (the tail is copied byte by byte).
  int vec_bytes = 16;
  /// Bytes of one page one block copies; rounded down to a multiple of the access width.
  std::size_t bytes_per_block = 16 << 10;
  /// Cap on gridDim.x (ops per launch before the grid-stride loop takes over).
  unsigned max_blocks_x = 1u << 20;
};

#if FRUGAL_HAS_CUDA

/// @brief Copies whole pages on `stream`: for each op, page_bytes bytes from
/// src_base + op.src * page_stride_src to dst_base + op.dst * page_stride_dst. Asynchronous.
/// The ops of one call run concurrently, so they must be independent: distinct destinations,
/// and no page both read and written within the call (the page_pool overload below cuts a
/// dependent copy list into several launches for you).
/// @param ops_device num_ops copy_op records in device-accessible memory
/// @param src_base, dst_base device-accessible (device, managed or pinned host memory)
/// @throws invalid_argument for a tuning knob out of range
/// @throws cuda_error when the launch fails
void copy_pages_device(const std::byte* src_base, std::byte* dst_base, std::size_t page_stride_src,
                       std::size_t page_stride_dst, std::size_t page_bytes,
                       const copy_op* ops_device, std::size_t num_ops, cudaStream_t stream);

/// @brief As above, with explicit tuning.
void copy_pages_device(const std::byte* src_base, std::byte* dst_base, std::size_t page_stride_src,
                       std::size_t page_stride_dst, std::size_t page_bytes,
                       const copy_op* ops_device, std::size_t num_ops, cudaStream_t stream,
                       const copy_kernel_tuning& tuning);

/// @brief Copies src's page op.src into dst's page op.dst for every op, with the same result as
/// copy_pages_host running them in order (a list with dependent ops, such as a copy-on-write
/// of a page that an earlier op wrote, is cut into launches that the stream keeps in order).
/// The ops are staged into stream-ordered device memory with cudaMemcpyAsync, so pageable `ops`
/// may be reused when the call returns; ops in pinned memory must stay unchanged until the
/// stream has passed the copy. Asynchronous on `stream`.
/// @throws invalid_argument when the layouts differ, an op names a page outside its pool, or a
///   pool's memory is not device-accessible (pageable host memory); nothing is copied then
/// @throws out_of_memory when the stream's pool has no room to stage the ops, cuda_error when
///   staging or the launch fails otherwise (the runtime's last error is cleared either way)
void copy_pages_device(const page_pool& src, page_pool& dst, std::span<const copy_op> ops,
                       cudaStream_t stream = nullptr, const copy_kernel_tuning& tuning = {});

#endif  // FRUGAL_HAS_CUDA

}  // namespace frugal::kv
