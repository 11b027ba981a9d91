// Format names and the byte layout of a quantized tensor (include/frugal/quant/format.hpp).
#include <frugal/error.hpp>
#include <frugal/quant/format.hpp>

#include <limits>
#include <string>

namespace frugal::quant {
namespace {

constexpr std::size_t region_alignment = 16;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::size_t checked_mul(std::size_t a, std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
    FRUGAL_FAIL("quant: tensor size overflows std::size_t", invalid_argument);
  return a * b;
}

}  // namespace

format parse_format(std::string_view name) {
  for (const format_info& f : all_formats())
    if (f.name == name) return f.id;
  std::string known;
  for (const format_info& f : all_formats()) {
    if (!known.empty()) known += ", ";
    known += f.name;
  }
  FRUGAL_FAIL("quant: unknown format '" + std::string(name) + "'; known formats: " + known,
              invalid_argument);
}

layout layout_of(format f, std::size_t rows, std::size_t cols) {
  const format_info& fi = info(f);
  if (rows == 0 || cols == 0)
    FRUGAL_FAIL("quant: " + std::string(fi.name) + " needs a non-empty tensor, got " +
                    std::to_string(rows) + " x " + std::to_string(cols),
                invalid_argument);
  if (fi.shared_by == granularity::block && cols % fi.block != 0)
    FRUGAL_FAIL("quant: " + std::string(fi.name) + " needs a row length divisible by " +
                    std::to_string(fi.block) + ", got " + std::to_string(cols) +
                    " (pad the rows or pick a format with a smaller block)",
                invalid_argument);
  layout l;
  l.rows = rows;
  l.cols = cols;
  const std::size_t elements = checked_mul(rows, cols);
  switch (fi.shared_by) {
    case granularity::tensor:
      l.groups = 1;
      l.groups_per_row = 0;
      l.group_size = elements;
      break;
    case granularity::channel:
      l.groups = rows;
      l.groups_per_row = 1;
      l.group_size = cols;
      break;
    case granularity::block:
      l.groups_per_row = cols / fi.block;
      l.groups = rows * l.groups_per_row;
      l.group_size = fi.block;
      break;
  }
  if (elements > std::numeric_limits<std::size_t>::max() / 8)
    FRUGAL_FAIL("quant: tensor size overflows std::size_t", invalid_argument);
  if (fi.scale == scale_kind::f16_inline) {
    const std::size_t record = 2 + fi.block * fi.element_bits / 8;  // 34 (q8_0) or 18 (q4_0)
    l.values_bytes = checked_mul(l.groups, record);
    l.total_bytes = l.values_bytes;
    return l;
  }
  l.values_bytes = fi.element_bits == 8 ? elements : rows * (cols / 2);
  if (fi.element_bits == 4 && cols % 2 != 0)
    FRUGAL_FAIL("quant: " + std::string(fi.name) + " needs an even row length", invalid_argument);
  std::size_t offset = round_up(l.values_bytes, region_alignment);
  l.scales_offset = offset;
  l.scales_bytes = l.groups * (fi.scale == scale_kind::f32 ? sizeof(float) : 1);
  offset = round_up(offset + l.scales_bytes, region_alignment);
  if (fi.asymmetric) {
    l.zero_points_offset = offset;
    l.zero_points_bytes = l.groups;
    offset = round_up(offset + l.zero_points_bytes, region_alignment);
  }
  if (fi.scale == scale_kind::e4m3_f32) {
    l.tensor_scale_offset = offset;
    l.tensor_scale_bytes = sizeof(float);
    offset += sizeof(float);
  }
  l.total_bytes = offset;
  return l;
}

double bits_per_element(format f, std::size_t rows, std::size_t cols) {
  const layout l = layout_of(f, rows, cols);
  const double payload = static_cast<double>(l.values_bytes + l.scales_bytes + l.zero_points_bytes +
                                             l.tensor_scale_bytes);
  return 8.0 * payload / (static_cast<double>(rows) * static_cast<double>(cols));
}

}  // namespace frugal::quant
