// frugal/quant/quantized_tensor.hpp: an owning handle to one quantized rows x cols tensor:
// packed values, scales and zero points in a single allocation laid out by layout_of().
//   frugal::host_resource host;
//   frugal::quant::quantized_tensor q(frugal::quant::format::nvfp4, 4096, 4096, host);
//   std::uint8_t* scales = q.scales();   // q.bytes() == q.layout().total_bytes
#pragma once

#include <frugal/error.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/quant/format.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace frugal::quant {

/// @brief A quantized rows x cols tensor (see docs/formats.md for the byte layout). Owns one
/// allocation of layout().total_bytes from any frugal resource, aligned to 256 bytes; move-only;
/// returns the memory on destruction. The resource must outlive the tensor. A default-made or
/// moved-from tensor is empty: data() is nullptr and bytes() is 0.
class quantized_tensor {
 public:
  /// Alignment of the allocation (what kernels expect; every region is 16-byte aligned in it).
  static constexpr std::size_t alignment = 256;

  quantized_tensor() = default;

  /// @brief Allocates an uninitialised tensor of format `f` and shape rows x cols from `r`
  /// (host or device memory): what quantize() and the CUDA kernels write into.
  /// @throws frugal::invalid_argument when layout_of(f, rows, cols) refuses the shape (nothing is
  ///   allocated); whatever the resource throws (frugal::out_of_memory).
  quantized_tensor(quant::format f, std::size_t rows, std::size_t cols, any_resource_ref r)
      : layout_(layout_of(f, rows, cols)), format_(f), resource_(r) {
    const std::string tag = "quant:" + std::string(to_string(f));
    data_ = static_cast<std::uint8_t*>(resource_->allocate(layout_.total_bytes, alignment, tag));
  }

  quantized_tensor(const quantized_tensor&) = delete;
  quantized_tensor& operator=(const quantized_tensor&) = delete;
  quantized_tensor(quantized_tensor&& other) noexcept { swap(other); }
  quantized_tensor& operator=(quantized_tensor&& other) noexcept {
    if (this != &other) {
      reset();
      swap(other);
    }
    return *this;
  }
  ~quantized_tensor() { reset(); }

  /// @brief Returns the memory now and leaves the tensor empty.
  void reset() noexcept {
    if (data_ != nullptr) resource_->deallocate(data_, layout_.total_bytes, alignment);
    data_ = nullptr;
    layout_ = {};
    resource_.reset();
  }

  /// @brief The format the tensor holds.
  quant::format format() const noexcept { return format_; }
  std::size_t rows() const noexcept { return layout_.rows; }
  std::size_t cols() const noexcept { return layout_.cols; }
  /// @brief rows * cols.
  std::size_t elements() const noexcept { return layout_.rows * layout_.cols; }
  /// @brief Where the regions live (layout_of(format(), rows(), cols())).
  const quant::layout& layout() const noexcept { return layout_; }

  /// @brief The start of the allocation (nullptr when empty).
  std::uint8_t* data() noexcept { return data_; }
  const std::uint8_t* data() const noexcept { return data_; }
  /// @brief The allocation's size, scales, zero points and padding included (layout total).
  std::size_t bytes() const noexcept { return data_ == nullptr ? 0 : layout_.total_bytes; }
  /// @brief 8 * (values + scales + zero points + tensor scale bytes) / elements, padding
  /// excluded; 0 when empty.
  double bits_per_element() const noexcept {
    if (data_ == nullptr) return 0.0;
    const double payload =
        static_cast<double>(layout_.values_bytes + layout_.scales_bytes +
                            layout_.zero_points_bytes + layout_.tensor_scale_bytes);
    return 8.0 * payload / static_cast<double>(elements());
  }
  bool empty() const noexcept { return data_ == nullptr; }

  /// @brief The regions (nullptr when empty or when the format has no such region).
  std::uint8_t* values() noexcept { return region(layout_.values_offset, layout_.values_bytes); }
  const std::uint8_t* values() const noexcept {
    return region(layout_.values_offset, layout_.values_bytes);
  }
  std::uint8_t* scales() noexcept { return region(layout_.scales_offset, layout_.scales_bytes); }
  const std::uint8_t* scales() const noexcept {
    return region(layout_.scales_offset, layout_.scales_bytes);
  }
  std::uint8_t* zero_points() noexcept {
    return region(layout_.zero_points_offset, layout_.zero_points_bytes);
  }
  const std::uint8_t* zero_points() const noexcept {
    return region(layout_.zero_points_offset, layout_.zero_points_bytes);
  }
  std::uint8_t* tensor_scale() noexcept {
    return region(layout_.tensor_scale_offset, layout_.tensor_scale_bytes);
  }
  const std::uint8_t* tensor_scale() const noexcept {
    return region(layout_.tensor_scale_offset, layout_.tensor_scale_bytes);
  }

  /// @brief The resource the memory came from (nullptr when empty).
  const any_resource_ref* source() const noexcept { return resource_ ? &*resource_ : nullptr; }
  bool host_accessible() const noexcept { return resource_ && resource_->host_accessible(); }
  bool device_accessible() const noexcept { return resource_ && resource_->device_accessible(); }

 private:
  std::uint8_t* region(std::size_t offset, std::size_t size) const noexcept {
    return data_ == nullptr || size == 0 ? nullptr : data_ + offset;
  }

  void swap(quantized_tensor& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(layout_, other.layout_);
    std::swap(format_, other.format_);
    std::swap(resource_, other.resource_);
  }

  std::uint8_t* data_ = nullptr;
  quant::layout layout_{};
  quant::format format_ = quant::format::int8;
  std::optional<any_resource_ref> resource_;
};

}  // namespace frugal::quant
