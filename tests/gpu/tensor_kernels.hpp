#pragma once

#include <frugal/tensor/tensor.hpp>

namespace frugal::testing {
/// Writes i * 1000 + j into element (i, j) with a kernel; t's memory must be device-accessible.
void fill_index_on_device(tensor<float, cuda::std::dextents<std::size_t, 2>>& t);
}  // namespace frugal::testing
