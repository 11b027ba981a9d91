// frugal/quant/safetensors.hpp: a memory-mapped reader for Hugging Face safetensors files
// (8-byte little-endian header length, a JSON header, then the tensor bytes), so whole
// checkpoints can be evaluated and planned. F32, F16 and BF16 tensors are read; others are listed
// and refused on access.
//   frugal::quant::safetensors_file file{"model.safetensors"};
//   for (const auto& t : file.tensors()) std::vector<float> w = file.to_float(t);
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace frugal::quant {

/// @brief Element type of a stored tensor.
enum class dtype : std::uint8_t { f32, f16, bf16 };

/// @brief One tensor's entry in the header.
struct tensor_entry {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::size_t> shape;  // empty for a scalar
  std::size_t begin = 0, end = 0;  // byte offsets into the data section
  std::size_t elements() const noexcept;
  /// Row length for a row-major 2-D view: the last dimension (1 for scalars).
  std::size_t cols() const noexcept;
};

/// @brief A safetensors file, mapped read-only for the object's lifetime. Move-only.
class safetensors_file {
 public:
  /// @throws frugal::error naming the file and the problem: unreadable file, header length past
  ///   the end, malformed JSON, an unknown dtype, a shape whose size disagrees with its offsets,
  ///   offsets outside the file, overlapping tensors.
  explicit safetensors_file(const std::filesystem::path& path);
  /// @brief Parses an in-memory image (same checks); `bytes` must outlive the object.
  static safetensors_file from_bytes(std::span<const std::byte> bytes, std::string name = "<memory>");

  safetensors_file(safetensors_file&&) noexcept;
  safetensors_file& operator=(safetensors_file&&) noexcept;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;
  ~safetensors_file();

  /// @brief Tensors in file order (by begin offset).
  const std::vector<tensor_entry>& tensors() const noexcept;
  /// @brief The tensor named `name`. @throws frugal::invalid_argument when absent.
  const tensor_entry& at(const std::string& name) const;
  /// @brief The raw bytes of `t`.
  std::span<const std::byte> bytes(const tensor_entry& t) const noexcept;
  /// @brief `t` converted to float32.
  std::vector<float> to_float(const tensor_entry& t) const;

 private:
  safetensors_file() = default;
  struct impl;
  impl* impl_ = nullptr;
};

/// @brief Writes a safetensors file holding float32 tensors (for tests and examples).
/// @throws frugal::error when the file cannot be written.
struct tensor_to_write {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::size_t> shape;
  std::span<const std::byte> data;  // already in `type`'s little-endian encoding
};
void write_safetensors(const std::filesystem::path& path, std::span<const tensor_to_write> tensors);

}  // namespace frugal::quant
