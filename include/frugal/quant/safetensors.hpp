// frugal/quant/safetensors.hpp: a memory-mapped reader for Hugging Face safetensors files
// (8-byte little-endian header length, a JSON header, then the tensor bytes), so whole
// checkpoints can be evaluated and planned. Every safetensors dtype of whole bytes is listed;
// F32, F16 and BF16 tensors convert to float, others are refused on conversion.
//   frugal::quant::safetensors_file file{"model.safetensors"};
//   for (const auto& t : file.tensors()) std::vector<float> w = file.to_float(t);
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::quant {

/// @brief Element type of a stored tensor: the safetensors dtypes whose elements are whole
/// bytes. Only f32, f16 and bf16 convert to float (is_float_readable()).
enum class dtype : std::uint8_t {
  f32,
  f16,
  bf16,  // "F32", "F16", "BF16": readable as float
  f64,
  f8_e4m3,
  f8_e5m2,  // "F64", "F8_E4M3", "F8_E5M2"
  i64,
  i32,
  i16,
  i8,  // "I64", "I32", "I16", "I8"
  u64,
  u32,
  u16,
  u8,
  boolean  // "U64", "U32", "U16", "U8", "BOOL"
};

/// @brief The safetensors spelling of `t` ("BF16").
std::string_view to_string(dtype t) noexcept;
/// @brief Bytes per element of `t`.
std::size_t size_of(dtype t) noexcept;
/// @brief Whether safetensors_file::to_float() converts `t` (F32, F16, BF16).
constexpr bool is_float_readable(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16;
}

/// @brief One tensor's entry in the header.
struct tensor_entry {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::size_t> shape;  // empty for a scalar
  std::size_t begin = 0, end = 0;  // byte offsets into the data section; end - begin is its size
  /// Product of the shape (1 for a scalar).
  std::size_t elements() const noexcept;
  /// Row length for a row-major 2-D view: the last dimension (1 for scalars).
  std::size_t cols() const noexcept;
};

/// @brief A safetensors file, mapped read-only for the object's lifetime. Move-only.
///
/// Every check runs when the file is opened, so an object that exists is consistent:
///   - the file holds at least the 8-byte header length, and the header length is at most
///     100 MB and fits in the file;
///   - the header is a JSON object nested at most 64 deep; "__metadata__" (an object of strings)
///     is allowed and skipped; every other member is a tensor {"dtype", "shape", "data_offsets"};
///   - the dtype is a known safetensors dtype; shape entries are non-negative integers;
///   - data_offsets [begin, end] has begin <= end <= the data section's size, and
///     shape product * dtype size == end - begin;
///   - no two tensors' byte ranges overlap (empty tensors overlap nothing).
/// Tensors may appear in the JSON in any order; gaps between tensors are tolerated.
/// Any violation throws frugal::error (never anything else, never reads out of bounds), with a
/// message naming the file, the tensor where there is one, and the problem.
class safetensors_file {
 public:
  /// @brief Maps the file at `path` read-only.
  /// @throws frugal::error naming the file and the problem (see the class comment), or when the
  ///   file cannot be opened or mapped.
  explicit safetensors_file(const std::filesystem::path& path);
  /// @brief Parses an in-memory image (same checks); `bytes` must outlive the object.
  /// @throws frugal::error as the constructor does.
  static safetensors_file from_bytes(std::span<const std::byte> bytes,
                                     std::string name = "<memory>");

  safetensors_file(safetensors_file&&) noexcept;
  safetensors_file& operator=(safetensors_file&&) noexcept;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;
  ~safetensors_file();

  /// @brief The name given at opening (the path, or from_bytes' `name`).
  const std::string& name() const noexcept;
  /// @brief Tensors in file order (by begin offset, then name).
  const std::vector<tensor_entry>& tensors() const noexcept;
  /// @brief The tensor named `name`. @throws frugal::invalid_argument when absent.
  const tensor_entry& at(const std::string& name) const;
  /// @brief Whether a tensor named `name` exists.
  bool contains(const std::string& name) const noexcept;
  /// @brief The raw bytes of `t` (little-endian, possibly unaligned). `t` must be one of
  /// tensors(); an entry from another file yields an empty span.
  std::span<const std::byte> bytes(const tensor_entry& t) const noexcept;
  /// @brief `t` converted to float32.
  /// @throws frugal::invalid_argument when `t`'s dtype is not F32, F16 or BF16.
  std::vector<float> to_float(const tensor_entry& t) const;
  /// @brief Writes `t` converted to float32 into `out` (t.elements() floats), so a loop over a
  /// checkpoint can reuse one buffer. @throws frugal::invalid_argument as to_float() does, or
  /// when out.size() != t.elements(); nothing is written then.
  void to_float(const tensor_entry& t, std::span<float> out) const;

 private:
  safetensors_file() = default;
  struct impl;
  impl* impl_ = nullptr;
};

/// @brief A tensor for serialize_safetensors() / write_safetensors().
struct tensor_to_write {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::size_t> shape;
  std::span<const std::byte> data;  // already in `type`'s little-endian encoding
};

/// @brief The bytes of a safetensors file holding `tensors`, in the given order, the header
/// padded with spaces to a multiple of 8 bytes so that the data section is 8-byte aligned.
/// @throws frugal::invalid_argument for an empty or duplicate name, the name "__metadata__", or
///   data whose size is not shape product * dtype size.
std::vector<std::byte> serialize_safetensors(std::span<const tensor_to_write> tensors);

/// @brief Writes serialize_safetensors(tensors) to `path`.
/// @throws frugal::invalid_argument as serialize_safetensors() does (no file is written), and
///   frugal::error when the file cannot be written.
void write_safetensors(const std::filesystem::path& path, std::span<const tensor_to_write> tensors);

}  // namespace frugal::quant
