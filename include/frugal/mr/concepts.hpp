// frugal/mr/concepts.hpp: the one resource concept every frugal allocator and adaptor models,
// aligned with CCCL's cuda::mr, and the alignment rules every resource checks.
//   static_assert(frugal::resource_with<my_resource, frugal::host_accessible>);
// The handles (frugal::ref, any_resource_ref) are in resource_ref.hpp, the counters every
// allocator reports (resource_stats) in resource_stats.hpp.
// This header is the single place that knows which concept names the CCCL in use spells.
#pragma once

#include <frugal/error.hpp>

#ifndef LIBCUDACXX_ENABLE_EXPERIMENTAL_MEMORY_RESOURCE
#define LIBCUDACXX_ENABLE_EXPERIMENTAL_MEMORY_RESOURCE
#endif
#include <cuda/memory_resource>
#include <cuda/std/version>

#include <concepts>
#include <cstddef>
#include <new>
#include <string>
#include <type_traits>

namespace frugal {

/// Default alignment of every frugal resource: what cudaMalloc guarantees.
inline constexpr std::size_t default_alignment = 256;

/// The granule of CUDA's virtual memory on current GPUs (cuMemGetAllocationGranularity): the
/// commit unit of virtual_resource, the growth unit of the step workspace, and the unit every
/// allocation of the simulated GPU is rounded to.
inline constexpr std::size_t vmm_granule = std::size_t{2} << 20;

/// Property tags, the same types as CCCL's so cuda::mr code sees frugal resources as its own.
using host_accessible = ::cuda::mr::host_accessible;
using device_accessible = ::cuda::mr::device_accessible;

#if (CCCL_MAJOR_VERSION > 3) || (CCCL_MAJOR_VERSION == 3 && CCCL_MINOR_VERSION >= 3)
// CCCL 3.3+: the synchronous concept is `synchronous_resource`; `resource` is stream-ordered.
template <class R>
concept resource = ::cuda::mr::synchronous_resource<R>;
template <class R, class... Properties>
concept resource_with = ::cuda::mr::synchronous_resource_with<R, Properties...>;
template <class R>
concept stream_ordered_resource = ::cuda::mr::resource<R>;
#else
/// @brief A synchronous memory resource: allocate(bytes, alignment), deallocate(p, bytes,
/// alignment), and equality. See docs/concepts.md#resource.
template <class R>
concept resource = ::cuda::mr::resource<R>;
/// @brief A resource that also declares each of `Properties` through get_property.
template <class R, class... Properties>
concept resource_with = ::cuda::mr::resource_with<R, Properties...>;
/// @brief A resource that also allocates and frees in stream order.
template <class R>
concept stream_ordered_resource = ::cuda::mr::async_resource<R>;
#endif

/// @brief True when resource R declares the stateless property P (host_accessible, ...).
template <class R, class P>
inline constexpr bool has_property_v = ::cuda::has_property<R, P>;

/// @brief A resource with a non-throwing allocate: try_allocate returns nullptr on failure.
template <class R>
concept try_allocatable = resource<R> && requires(R& r, std::size_t n) {
  { r.try_allocate(n, n) }
  noexcept->std::same_as<void*>;
};

namespace detail {

constexpr bool is_pow2(std::size_t x) noexcept { return x != 0 && (x & (x - 1)) == 0; }

constexpr std::size_t align_up(std::size_t x, std::size_t alignment) noexcept {
  return (x + alignment - 1) & ~(alignment - 1);
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_bad_alignment(std::size_t alignment,
                                                                       const char* who) {
  FRUGAL_FAIL(
      std::string(who) + ": alignment " + std::to_string(alignment) + " is not a power of two",
      invalid_argument);
}

/// Throws invalid_argument unless alignment is a power of two. Inlines to one test.
inline void check_alignment(std::size_t alignment, const char* who) {
  if (!is_pow2(alignment)) [[unlikely]]
    throw_bad_alignment(alignment, who);
}

/// True when bytes rounded up to `alignment` plus `alignment` does not overflow size_t.
constexpr bool fits_with_alignment(std::size_t bytes, std::size_t alignment) noexcept {
  return bytes <= static_cast<std::size_t>(-1) - 2 * alignment;
}

/// try_allocate on any resource: the resource's own when it has one, else allocate in a try block.
template <class R>
void* try_allocate(R& r, std::size_t bytes, std::size_t alignment) noexcept {
  if constexpr (try_allocatable<R>) {
    return r.try_allocate(bytes, alignment);
  } else {
    try {
      return r.allocate(bytes, alignment);
    } catch (...) {
      return nullptr;
    }
  }
}

/// Forwards every stateless property of Upstream to Derived (hidden friend found by ADL).
/// Use: struct my_adaptor : frugal::detail::forward_properties<my_adaptor, Upstream> { ... };
template <class Derived, class Upstream>
struct forward_properties {
  template <class Property>
  requires(::cuda::has_property<Upstream, Property>&&
               std::is_empty_v<Property>) friend constexpr void get_property(const Derived&,
                                                                             Property) noexcept {}
};

}  // namespace detail
}  // namespace frugal
