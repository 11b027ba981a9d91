// frugal/mr/resource_ref.hpp: non-owning handles to a resource. frugal::ref(r) keeps r's type and
// shares one upstream among several allocators; any_resource_ref erases the type, so that handles
// made from different resources (pool, arena, tracker, device) share one type.
//   frugal::pool_resource pool{frugal::ref(shared_upstream)};
//   frugal::any_resource_ref r{pool};   void* p = r.allocate(1024, 256, "layer3.mlp.up");
#pragma once

#include <frugal/mr/concepts.hpp>

#include <cstddef>
#include <string_view>
#include <type_traits>

namespace frugal {

/// @brief A non-owning handle to a resource that models the resource concept itself, so one
/// upstream can be shared by several allocators: `pool_resource<ref_t<R>> pool{frugal::ref(r)}`.
/// Two refs compare equal when their targets do. The target must outlive the handle.
template <resource R>
class ref_t : public detail::forward_properties<ref_t<R>, R> {
 public:
  explicit ref_t(R& target) noexcept : target_(&target) {}

  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    return target_->allocate(bytes, alignment);
  }
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    target_->deallocate(p, bytes, alignment);
  }
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    return detail::try_allocate(*target_, bytes, alignment);
  }

  R& get() const noexcept { return *target_; }

  friend bool operator==(const ref_t& a, const ref_t& b) noexcept {
    return a.target_ == b.target_ || *a.target_ == *b.target_;
  }

 private:
  R* target_;
};

/// @brief Makes a non-owning handle to `r`. See ref_t.
template <resource R>
ref_t<R> ref(R& r) noexcept {
  return ref_t<R>(r);
}

/// @brief A non-owning, type-erased reference to a resource (see docs/concepts.md#handle). Two
/// pointers: the target and a table of functions made once per resource type. The target must
/// outlive the reference. Tags reach resources that take them (tracking_adaptor); others ignore
/// them. The properties are known at run time only (host_accessible(), device_accessible()).
class any_resource_ref {
 public:
  template <resource R>
  requires(!std::is_same_v<std::remove_cv_t<R>, any_resource_ref>) any_resource_ref(R& target)
  noexcept : target_(&target), table_(&table_for<R>) {}  // NOLINT

  /// @brief Allocates through the target; `tag` is passed on when the target takes one.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment,
                 std::string_view tag = {}) {
    return table_->allocate(target_, bytes, alignment, tag);
  }
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    table_->deallocate(target_, p, bytes, alignment);
  }

  bool host_accessible() const noexcept { return table_->host; }
  bool device_accessible() const noexcept { return table_->device; }
  /// @brief The referenced resource, for identity checks.
  const void* target() const noexcept { return target_; }

  /// Equal when both refer to the same object.
  friend bool operator==(const any_resource_ref& a, const any_resource_ref& b) noexcept {
    return a.target_ == b.target_;
  }

 private:
  struct table {
    void* (*allocate)(void*, std::size_t, std::size_t, std::string_view);
    void (*deallocate)(void*, void*, std::size_t, std::size_t) noexcept;
    bool host;
    bool device;
  };

  template <class R>
  static void* allocate_with(void* target, std::size_t bytes, std::size_t alignment,
                             std::string_view tag) {
    R& r = *static_cast<R*>(target);
    if constexpr (requires { r.allocate(bytes, alignment, tag); }) {
      return r.allocate(bytes, alignment, tag);
    } else {
      return r.allocate(bytes, alignment);
    }
  }
  template <class R>
  static void deallocate_with(void* target, void* p, std::size_t bytes,
                              std::size_t alignment) noexcept {
    static_cast<R*>(target)->deallocate(p, bytes, alignment);
  }
  template <class R>
  static constexpr table table_for{&allocate_with<R>, &deallocate_with<R>,
                                   has_property_v<R, frugal::host_accessible>,
                                   has_property_v<R, frugal::device_accessible>};

  void* target_;
  const table* table_;
};

}  // namespace frugal

static_assert(frugal::resource<frugal::any_resource_ref>);
