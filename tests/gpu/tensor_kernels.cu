// A kernel that reads and writes a frugal::tensor through its mdspan view: the same view type
// host code uses works in device code.
#include "gpu/tensor_kernels.hpp"

#include <frugal/error.hpp>

namespace frugal::testing {
namespace {
__global__ void fill_index_kernel(
    tensor<float, cuda::std::dextents<std::size_t, 2>>::mdspan_type v) {
  const std::size_t i = blockIdx.x;
  for (std::size_t j = threadIdx.x; j < v.extent(1); j += blockDim.x)
    v(i, j) = static_cast<float>(i * 1000 + j);
}
}  // namespace

void fill_index_on_device(tensor<float, cuda::std::dextents<std::size_t, 2>>& t) {
  fill_index_kernel<<<static_cast<unsigned>(t.extent(0)), 128>>>(t.view());
  FRUGAL_CUDA_TRY(cudaGetLastError());
  FRUGAL_CUDA_TRY(cudaDeviceSynchronize());
}
}  // namespace frugal::testing
