// frugal/kv/page_pool.hpp: the pages of a paged KV cache, carved from one contiguous allocation,
// with 32-bit ids, reference counts, and the base pointers and strides a kernel needs.
//   frugal::kv::page_pool pages{layout, 4096, gpu};   // one allocation of 4096 pages
//   auto id = pages.allocate();   std::byte* first = pages.page_address(id);   // its first byte
#pragma once

#include <frugal/kv/copy_op.hpp>
#include <frugal/kv/layout.hpp>
#include <frugal/mr/block.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

namespace frugal::kv {

/// @brief Where a kernel finds (layer, page, K or V, slot, head, dim), in bytes from `base`:
/// base + page * page_stride + layer * layer_stride + kv * kv_stride + slot * slot_stride +
/// head * head_stride + dim * element_size. Pages are page-major (all layers of a page are
/// contiguous), so one page is one contiguous copy; per layer, K of page p starts at
/// k_base(layer) + p * page_stride (FlashInfer/vLLM kernels take exactly that with this stride).
struct page_addressing {
  std::byte* base = nullptr;
  std::size_t page_stride = 0;
  std::size_t layer_stride = 0;
  std::size_t kv_stride = 0;
  std::size_t slot_stride = 0;
  std::size_t head_stride = 0;
  std::size_t element_size = 0;

  FRUGAL_HOST_DEVICE std::byte* k_base(std::size_t layer) const noexcept {
    return base + layer * layer_stride;
  }
  FRUGAL_HOST_DEVICE std::byte* v_base(std::size_t layer) const noexcept {
    return k_base(layer) + kv_stride;
  }
  FRUGAL_HOST_DEVICE std::size_t offset(std::size_t layer, page_id page, std::size_t kv,
                                        std::size_t slot, std::size_t head,
                                        std::size_t dim = 0) const noexcept {
    return page * page_stride + layer * layer_stride + kv * kv_stride + slot * slot_stride +
           head * head_stride + dim * element_size;
  }
};

/// @brief A fixed number of pages in one contiguous allocation from any resource (which must
/// outlive the pool), so the whole cache can be registered once for RDMA or NCCL. Page ids are
/// 32-bit; allocate and free are O(1) (a block_resource underneath); each page has a reference
/// count. Bookkeeping is host-side; the pages themselves are never touched.
class page_pool {
 public:
  /// @throws invalid_argument for a zero-sized layout field or zero pages
  /// @throws out_of_memory when the resource cannot provide num_pages pages
  page_pool(const layout& l, std::uint32_t num_pages, any_resource_ref memory)
      : layout_((l.validate(), l)),
        blocks_(memory, checked_page_bytes(l),
                block_options{.alignment = default_alignment,
                              .initial_blocks = num_pages,
                              .max_blocks = num_pages}),
        refcounts_(num_pages, 0) {
    FRUGAL_EXPECTS(num_pages > 0, "kv::page_pool: num_pages is zero", invalid_argument);
  }

  /// @brief A page with reference count 1, or nullopt when none is free. O(1).
  std::optional<page_id> try_allocate() noexcept {
    const auto id = blocks_.try_allocate_id();
    if (id) refcounts_[*id] = 1;
    return id;
  }
  /// @throws out_of_memory when no page is free
  page_id allocate() {
    if (auto id = try_allocate()) return *id;
    FRUGAL_OUT_OF_MEMORY(layout_.page_bytes(),
                         "all " + std::to_string(num_pages()) + " pages are in use",
                         "kv::page_pool");
  }
  /// @brief Adds a holder to a page.
  void retain(page_id id) noexcept { ++refcounts_[id]; }
  /// @brief Removes a holder; @returns the holders left. The page is not freed at zero: the
  /// caller decides (free it, or keep it cached).
  std::uint32_t release(page_id id) noexcept {
    FRUGAL_ASSERT(refcounts_[id] > 0, "kv::page_pool: release of a page nobody holds");
    return --refcounts_[id];
  }
  /// @brief Returns a page whose reference count is zero to the free pages.
  void free(page_id id) noexcept {
    FRUGAL_ASSERT(refcounts_[id] == 0, "kv::page_pool: free of a page still held");
    blocks_.deallocate_id(id);
  }
  std::uint32_t refcount(page_id id) const noexcept { return refcounts_[id]; }

  std::uint32_t num_pages() const noexcept { return blocks_.capacity(); }
  std::uint32_t num_free() const noexcept { return blocks_.num_free(); }
  bool is_allocated(page_id id) const noexcept { return blocks_.is_allocated(id); }

  /// @brief Base pointer and strides for kernels (see page_addressing).
  page_addressing addressing() const noexcept {
    page_addressing a;
    a.base = blocks_.slab(0).data();
    a.page_stride = blocks_.stride();
    a.layer_stride = layout_.layer_page_bytes();
    a.kv_stride = std::size_t{layout_.page_size} * layout_.token_bytes();
    a.element_size = element_bytes(layout_.dtype);
    const std::size_t head_bytes = std::size_t{layout_.head_dim} * a.element_size;
    if (layout_.order == order::nhd) {
      a.slot_stride = layout_.token_bytes();
      a.head_stride = head_bytes;
    } else {
      a.head_stride = std::size_t{layout_.page_size} * head_bytes;
      a.slot_stride = head_bytes;
    }
    return a;
  }
  /// @brief The page's first byte; a page is page_bytes() contiguous bytes.
  std::byte* page_address(page_id id) const noexcept {
    return static_cast<std::byte*>(blocks_.address_of(id));
  }
  /// @brief The whole allocation: what to register for RDMA/NCCL.
  std::span<std::byte> memory() const noexcept { return blocks_.slab(0); }
  std::size_t page_stride() const noexcept { return blocks_.stride(); }
  const kv::layout& layout() const noexcept { return layout_; }
  /// @brief Host bytes of bookkeeping: reference counts, and block_resource's own (free
  /// stack, live bitmap, slab table).
  std::size_t metadata_bytes() const noexcept {
    return refcounts_.capacity() * sizeof(std::uint32_t) + blocks_.metadata_bytes();
  }

 private:
  static std::size_t checked_page_bytes(const kv::layout& l) {
    l.validate();
    return l.page_bytes();
  }

  kv::layout layout_;
  block_resource<any_resource_ref> blocks_;
  std::vector<std::uint32_t> refcounts_;
};

/// @brief Copies whole pages between two host-accessible pools of the same layout:
/// dst page `op.dst` = src page `op.src`. The CPU reference for swaps and copy-on-write;
/// device pools use the batched kernel in cuda/kv_copy.cu.
inline void copy_pages_host(const page_pool& src, page_pool& dst, std::span<const copy_op> ops) {
  FRUGAL_EXPECTS(src.layout() == dst.layout(), "kv::copy_pages_host: layouts differ",
                 invalid_argument);
  const std::size_t bytes = src.layout().page_bytes();
  for (const copy_op& op : ops)
    std::memcpy(dst.page_address(op.dst), src.page_address(op.src), bytes);
}

}  // namespace frugal::kv
