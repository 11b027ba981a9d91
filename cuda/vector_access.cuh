// The integer type a kernel moves N bytes with in one access (16, 8, 4, 2 or 1), shared by the
// KV page-copy kernel and the quantization kernels.
//   using vec = frugal::cuda_detail::vector_word<16>::type;   // uint4
#pragma once

#include <cuda_runtime_api.h>

namespace frugal::cuda_detail {

template <int N>
struct vector_word;
template <>
struct vector_word<16> {
  using type = uint4;
};
template <>
struct vector_word<8> {
  using type = uint2;
};
template <>
struct vector_word<4> {
  using type = unsigned int;
};
template <>
struct vector_word<2> {
  using type = unsigned short;
};
template <>
struct vector_word<1> {
  using type = unsigned char;
};

}  // namespace frugal::cuda_detail
