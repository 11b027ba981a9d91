// frugal/kv/copy_op.hpp: one page copy an engine must perform (copy-on-write, swap out, swap
// in), as the KV cache and the scheduler hand them out and the copy kernels take them.
//   for (const frugal::kv::copy_op& op : cache.take_copy_ops()) copy_page(op.src, op.dst, op.kind);
#pragma once

#include <cstdint>

namespace frugal::kv {

/// @brief A page's index in its page_pool.
using page_id = std::uint32_t;

/// @brief Which pools a copy_op reads and writes: the cache's device pool or its host tier.
enum class copy_kind : std::uint8_t { device_to_device, device_to_host, host_to_device };

/// @brief One page copy the engine must perform: the contents of page `src` into page `dst`.
/// Lists of copies must be performed in order (a later copy may overwrite an earlier one's
/// source or destination).
struct copy_op {
  page_id src;
  page_id dst;
  copy_kind kind = copy_kind::device_to_device;
  friend bool operator==(const copy_op&, const copy_op&) = default;
};

}  // namespace frugal::kv
