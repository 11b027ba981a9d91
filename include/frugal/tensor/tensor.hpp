// frugal/tensor/tensor.hpp: typed RAII handles over any frugal resource. A tensor owns one
// allocation, knows its shape (cuda::std::extents) and hands out cuda::std::mdspan views.
//   auto x = frugal::make_tensor<float>(pool, 4096, 128);   // 4096 x 128, row-major
//   x.view()(3, 7) = 1.0f;                                  // host-accessible resources only
#pragma once

#include <frugal/mr/arena.hpp>
#include <frugal/mr/concepts.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/numeric/float16.hpp>

#include <cuda/std/mdspan>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace frugal {

template <class Arena>
class step_scope;

namespace detail {
template <class R>
inline constexpr bool is_step_scope = false;
template <class Arena>
inline constexpr bool is_step_scope<step_scope<Arena>> = true;

/// Elements in `e`, or 0 when an extent is zero or negative, or the byte count of `element`
/// bytes per element overflows size_t (the caller then rejects the shape).
template <class Extents>
std::size_t checked_elements(const Extents& e, std::size_t element, std::string& why) {
  std::size_t count = 1;
  for (typename Extents::rank_type r = 0; r < Extents::rank(); ++r) {
    const auto extent = e.extent(r);
    if (extent <= 0) {
      why = "extent " + std::to_string(r) + " is " + std::to_string(extent) +
            "; every extent must be positive";
      return 0;
    }
    const auto n = static_cast<std::size_t>(extent);
    if (count > std::numeric_limits<std::size_t>::max() / n / element) {
      why = "the shape's size in bytes overflows size_t";
      return 0;
    }
    count *= n;
  }
  return count;
}
}  // namespace detail

/// @brief An owning, move-only handle to `extents` elements of T, row-major (see
/// docs/concepts.md#handle). The memory comes from any frugal resource, referenced through
/// any_resource_ref (the resource must outlive the tensor), and goes back when the tensor is
/// destroyed. Tensors made in a step_scope are released by the scope instead; using one after its
/// scope ended is caught by a debug check (FRUGAL_DEBUG_LEVEL >= 1).
///
/// Alignment is max(alignof(T), 256), what device kernels expect. A moved-from tensor is empty:
/// data() is nullptr, size() is 0, and destroying it does nothing.
template <class T, class Extents = cuda::std::dextents<std::size_t, 1>>
class tensor {
 public:
  using element_type = T;
  using extents_type = Extents;
  using layout_type = cuda::std::layout_right;
  using mdspan_type = cuda::std::mdspan<T, Extents, layout_type>;
  static constexpr std::size_t alignment = std::max<std::size_t>(alignof(T), default_alignment);

  tensor() = default;

  /// @brief Allocates a tensor of shape `extents` from `resource`.
  /// @param resource any frugal resource (a step_scope too); must outlive the tensor
  /// @param tag a short name such as "layer3.mlp.up", passed to resources that record tags
  /// @throws invalid_argument for a zero or negative extent, or a size overflowing size_t
  ///         (nothing is allocated); whatever the resource throws (out_of_memory)
  template <frugal::resource R>
  tensor(R& resource, const Extents& extents, std::string_view tag = {}) : tag_(tag) {
    std::string why;
    const std::size_t count = detail::checked_elements(extents, sizeof(T), why);
    FRUGAL_EXPECTS(count != 0, "tensor: " + why, invalid_argument);
    const std::size_t bytes = count * sizeof(T);
    if constexpr (detail::is_step_scope<R>) {
      resource_.emplace(resource.arena());
      scope_owned_ = true;
      scope_alive_ = resource.liveness();
      data_ = static_cast<T*>(resource.arena().allocate(bytes, alignment));
    } else {
      resource_.emplace(resource);
      data_ = static_cast<T*>(resource_->allocate(bytes, alignment, tag_));
    }
    mapping_ = typename layout_type::template mapping<Extents>(extents);
  }

  tensor(const tensor&) = delete;
  tensor& operator=(const tensor&) = delete;
  tensor(tensor&& other) noexcept { swap(other); }
  tensor& operator=(tensor&& other) noexcept {
    if (this != &other) {
      reset();
      swap(other);
    }
    return *this;
  }
  ~tensor() { reset(); }

  /// @brief Returns the memory now (unless a step_scope owns it) and leaves the tensor empty.
  void reset() noexcept {
    if (data_ != nullptr && !scope_owned_) resource_->deallocate(data_, bytes(), alignment);
    data_ = nullptr;
    mapping_ = {};
    scope_alive_.reset();
  }

  T* data() const noexcept {
    check_scope();
    return data_;
  }
  /// @brief The elements as a cuda::std::mdspan (row-major). Dereference it only where the
  /// resource's memory is accessible: host code for host-accessible resources, kernels for
  /// device-accessible ones.
  mdspan_type view() const noexcept { return mdspan_type(data(), mapping_); }
  const Extents& extents() const noexcept { return mapping_.extents(); }
  std::size_t extent(std::size_t r) const noexcept {
    return static_cast<std::size_t>(
        mapping_.extents().extent(static_cast<typename Extents::rank_type>(r)));
  }
  /// @brief Elements between neighbours along dimension `r` (row-major: the last is 1).
  std::size_t stride(std::size_t r) const noexcept {
    return static_cast<std::size_t>(mapping_.stride(static_cast<typename Extents::rank_type>(r)));
  }
  static constexpr std::size_t rank() noexcept { return Extents::rank(); }
  std::size_t size() const noexcept {
    return data_ == nullptr ? 0 : static_cast<std::size_t>(mapping_.required_span_size());
  }
  std::size_t bytes() const noexcept { return size() * sizeof(T); }
  bool empty() const noexcept { return data_ == nullptr; }
  const std::string& tag() const noexcept { return tag_; }
  /// @brief The resource the memory came from (empty for a default-made tensor).
  const any_resource_ref* source() const noexcept { return resource_ ? &*resource_ : nullptr; }
  bool host_accessible() const noexcept { return resource_ && resource_->host_accessible(); }
  bool device_accessible() const noexcept { return resource_ && resource_->device_accessible(); }

 private:
  void check_scope() const noexcept {
    FRUGAL_ASSERT(!scope_alive_ || *scope_alive_,
                  "tensor used after the step_scope that owns its memory ended");
  }

  void swap(tensor& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(mapping_, other.mapping_);
    std::swap(resource_, other.resource_);
    std::swap(tag_, other.tag_);
    std::swap(scope_owned_, other.scope_owned_);
    std::swap(scope_alive_, other.scope_alive_);
  }

  T* data_ = nullptr;
  typename layout_type::template mapping<Extents> mapping_{};
  std::optional<any_resource_ref> resource_;
  std::string tag_;
  bool scope_owned_ = false;                 // a step_scope releases the memory, not the tensor
  std::shared_ptr<const bool> scope_alive_;  // debug check: set while the owning scope lives
};

/// @brief A tensor with dynamic extents n0 x n1 x ...: make_tensor<float>(pool, rows, cols).
/// @throws invalid_argument for a zero or negative extent or an overflowing size
template <class T, resource R, class... Sizes>
requires(sizeof...(Sizes) > 0 && (std::is_integral_v<Sizes> && ...))
    tensor<T, cuda::std::dextents<std::size_t, sizeof...(Sizes)>> make_tensor(R& resource,
                                                                              Sizes... sizes) {
  using extents_type = cuda::std::dextents<std::size_t, sizeof...(Sizes)>;
  const bool positive = ((sizes > 0) && ...);
  FRUGAL_EXPECTS(positive, "make_tensor: every extent must be positive", invalid_argument);
  return tensor<T, extents_type>(resource, extents_type(static_cast<std::size_t>(sizes)...));
}

/// @brief As make_tensor, with a tag recorded by tracking resources.
template <class T, resource R, class... Sizes>
requires(sizeof...(Sizes) > 0 && (std::is_integral_v<Sizes> && ...))
    tensor<T, cuda::std::dextents<std::size_t, sizeof...(Sizes)>> make_tagged_tensor(
        R& resource, std::string_view tag, Sizes... sizes) {
  using extents_type = cuda::std::dextents<std::size_t, sizeof...(Sizes)>;
  const bool positive = ((sizes > 0) && ...);
  FRUGAL_EXPECTS(positive, "make_tensor: every extent must be positive", invalid_argument);
  return tensor<T, extents_type>(resource, extents_type(static_cast<std::size_t>(sizes)...), tag);
}

}  // namespace frugal
