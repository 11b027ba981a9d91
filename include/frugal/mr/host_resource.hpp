// frugal/mr/host_resource.hpp: host memory from aligned operator new, the default upstream.
//   frugal::host_resource host;
//   void* p = host.allocate(1 << 20);   // 256-byte aligned
//   host.deallocate(p, 1 << 20);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <new>

namespace frugal {

/// @brief Host memory from aligned `operator new`. Stateless: all instances compare equal.
/// Zero bytes returns nullptr. Throws out_of_memory when the system has no memory left.
class host_resource {
 public:
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "host_resource");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr) FRUGAL_OUT_OF_MEMORY(bytes, "the system allocator refused", "host_resource");
    return p;
  }

  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment) || !detail::fits_with_alignment(bytes, alignment))
      return nullptr;
    return ::operator new (bytes, std::align_val_t{alignment}, std::nothrow);
  }

  void deallocate(void* p, std::size_t /*bytes*/,
                  std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    ::operator delete (p, std::align_val_t{alignment});  // unsized: no -fsized-deallocation needed
  }

  friend bool operator==(const host_resource&, const host_resource&) noexcept { return true; }
  friend constexpr void get_property(const host_resource&, host_accessible) noexcept {}
};

}  // namespace frugal

static_assert(frugal::resource_with<frugal::host_resource, frugal::host_accessible>);
static_assert(!frugal::has_property_v<frugal::host_resource, frugal::device_accessible>);
static_assert(frugal::resource_with<frugal::ref_t<frugal::host_resource>, frugal::host_accessible>);
