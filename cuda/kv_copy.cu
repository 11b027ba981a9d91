// The batched page-copy kernel behind kv::copy_pages_device: one launch performs a whole copy list
// (copy-on-write, swap_out, swap_in), each op a whole page, with 16-byte accesses when aligned.
#include "pool_device_base.cuh"
#include "stream_memory.cuh"
#include "vector_access.cuh"

#include <frugal/error.hpp>
#include <frugal/kv/copy_kernel.hpp>
#include <frugal/kv/detail/copy_pages.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace frugal::kv {
namespace {

/// An access of N bytes: the widest integer vector the hardware loads and stores in one go.
template <int N>
using access = cuda_detail::vector_word<N>;

/// Grid: x walks the ops (grid-stride), y walks a page's chunks of `chunk_bytes` (grid-stride).
/// Every base pointer and stride is a multiple of N (checked on the host), so each page start is
/// N-aligned; the last page_bytes % N bytes are copied byte by byte by chunk 0. The work of each
/// thread is detail::copy_pages_thread, which the CPU tests run through a host emulation.
template <int N>
__global__ void copy_pages_kernel(const std::byte* __restrict__ src_base,
                                  std::byte* __restrict__ dst_base, std::size_t src_stride,
                                  std::size_t dst_stride, std::size_t page_bytes,
                                  const copy_op* __restrict__ ops, std::size_t num_ops,
                                  std::size_t chunk_bytes) {
  detail::copy_pages_thread<N, typename access<N>::type>(
      src_base, dst_base, src_stride, dst_stride, page_bytes, ops, num_ops, chunk_bytes, blockIdx.x,
      blockIdx.y, gridDim.x, gridDim.y, threadIdx.x, blockDim.x);
}

/// The widest access up to `limit` bytes that divides every address the kernel forms.
int access_width(const std::byte* src_base, const std::byte* dst_base, std::size_t src_stride,
                 std::size_t dst_stride, int limit) {
  return detail::copy_access_width(reinterpret_cast<std::uintptr_t>(src_base),
                                   reinterpret_cast<std::uintptr_t>(dst_base), src_stride,
                                   dst_stride, limit);
}

template <int N>
void launch(const std::byte* src_base, std::byte* dst_base, std::size_t src_stride,
            std::size_t dst_stride, std::size_t page_bytes, const copy_op* ops, std::size_t num_ops,
            cudaStream_t stream, const copy_kernel_tuning& tuning) {
  const detail::copy_launch shape = detail::plan_copy(page_bytes, num_ops, N, tuning);
  const dim3 grid(shape.grid_x, shape.grid_y);
  copy_pages_kernel<N><<<grid, shape.threads, 0, stream>>>(
      src_base, dst_base, src_stride, dst_stride, page_bytes, ops, num_ops, shape.chunk_bytes);
  FRUGAL_CUDA_TRY(cudaGetLastError());
}

/// Where a kernel reaches `pool`'s pages; throws unless the memory is device-accessible.
std::byte* device_view(const page_pool& pool, const char* which) {
  return cuda_detail::pool_device_base(pool, "kv::copy_pages_device",
                                       std::string("the ") + which + " pool's",
                                       " (or copy_pages_host)");
}

/// @throws invalid_argument for a knob out of range
void check_tuning(const copy_kernel_tuning& tuning) {
  FRUGAL_EXPECTS(tuning.threads_per_block > 0 && tuning.threads_per_block <= 1024 &&
                     tuning.threads_per_block % 32 == 0,
                 "kv::copy_pages_device: threads_per_block must be a multiple of 32 in [32, 1024]",
                 invalid_argument);
  FRUGAL_EXPECTS(tuning.vec_bytes == 16 || tuning.vec_bytes == 8 || tuning.vec_bytes == 4 ||
                     tuning.vec_bytes == 2 || tuning.vec_bytes == 1,
                 "kv::copy_pages_device: vec_bytes must be 16, 8, 4, 2 or 1", invalid_argument);
  FRUGAL_EXPECTS(tuning.max_blocks_x > 0 && tuning.bytes_per_block > 0,
                 "kv::copy_pages_device: max_blocks_x and bytes_per_block must be positive",
                 invalid_argument);
}

}  // namespace

void copy_pages_device(const std::byte* src_base, std::byte* dst_base, std::size_t page_stride_src,
                       std::size_t page_stride_dst, std::size_t page_bytes,
                       const copy_op* ops_device, std::size_t num_ops, cudaStream_t stream,
                       const copy_kernel_tuning& tuning) {
  check_tuning(tuning);
  if (num_ops == 0 || page_bytes == 0) return;
  FRUGAL_EXPECTS(ops_device != nullptr && src_base != nullptr && dst_base != nullptr,
                 "kv::copy_pages_device: null pointer", invalid_argument);
  switch (access_width(src_base, dst_base, page_stride_src, page_stride_dst, tuning.vec_bytes)) {
    case 16:
      return launch<16>(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes,
                        ops_device, num_ops, stream, tuning);
    case 8:
      return launch<8>(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes, ops_device,
                       num_ops, stream, tuning);
    case 4:
      return launch<4>(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes, ops_device,
                       num_ops, stream, tuning);
    case 2:
      return launch<2>(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes, ops_device,
                       num_ops, stream, tuning);
    default:
      return launch<1>(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes, ops_device,
                       num_ops, stream, tuning);
  }
}

void copy_pages_device(const std::byte* src_base, std::byte* dst_base, std::size_t page_stride_src,
                       std::size_t page_stride_dst, std::size_t page_bytes,
                       const copy_op* ops_device, std::size_t num_ops, cudaStream_t stream) {
  copy_pages_device(src_base, dst_base, page_stride_src, page_stride_dst, page_bytes, ops_device,
                    num_ops, stream, copy_kernel_tuning{});
}

void copy_pages_device(const page_pool& src, page_pool& dst, std::span<const copy_op> ops,
                       cudaStream_t stream, const copy_kernel_tuning& tuning) {
  check_tuning(tuning);
  FRUGAL_EXPECTS(src.layout() == dst.layout(), "kv::copy_pages_device: layouts differ",
                 invalid_argument);
  for (const copy_op& op : ops)
    FRUGAL_EXPECTS(op.src < src.num_pages() && op.dst < dst.num_pages(),
                   "kv::copy_pages_device: copy {" + std::to_string(op.src) + ", " +
                       std::to_string(op.dst) + "} names a page outside its pool (" +
                       std::to_string(src.num_pages()) + " source, " +
                       std::to_string(dst.num_pages()) + " destination pages)",
                   invalid_argument);
  if (ops.empty()) return;
  // One launch runs its ops concurrently, while copy_pages_host runs them in order; a list whose
  // later op writes a page an earlier op wrote, or (within one pool) reads a page an earlier op
  // wrote or writes a page an earlier op read, is cut into launches at each such op, and the
  // stream keeps the launches in order. The cuts are found before any CUDA call.
  const bool same_pool = &src == &dst;
  std::vector<std::size_t> cuts;  // launch k runs ops [cuts[k], cuts[k + 1])
  {
    std::unordered_set<page_id> read, written;
    cuts.push_back(0);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const copy_op& op = ops[i];
      if (written.contains(op.dst) ||
          (same_pool && (written.contains(op.src) || read.contains(op.dst)))) {
        cuts.push_back(i);
        read.clear();
        written.clear();
      }
      written.insert(op.dst);
      if (same_pool) read.insert(op.src);
    }
    cuts.push_back(ops.size());
  }
  const std::byte* src_base = device_view(src, "source");
  std::byte* dst_base = device_view(dst, "destination");

  // The copy list, staged on the stream; freed on it on every way out (an out-of-memory here
  // throws out_of_memory with the runtime's error cleared).
  const cuda_detail::stream_allocation staged(ops.size_bytes(), stream,
                                              "kv::copy_pages_device (staged copy list)");
  FRUGAL_CUDA_TRY(
      cudaMemcpyAsync(staged.get(), ops.data(), ops.size_bytes(), cudaMemcpyHostToDevice, stream));
  const auto* staged_ops = static_cast<const copy_op*>(staged.get());
  for (std::size_t k = 0; k + 1 < cuts.size(); ++k)
    copy_pages_device(src_base, dst_base, src.page_stride(), dst.page_stride(),
                      src.layout().page_bytes(), staged_ops + cuts[k], cuts[k + 1] - cuts[k],
                      stream, tuning);
}

}  // namespace frugal::kv
