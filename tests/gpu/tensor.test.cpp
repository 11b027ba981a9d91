#include "gpu/gpu.hpp"
#include "gpu/tensor_kernels.hpp"

#include <frugal/mr/cuda_resource.hpp>
#include <frugal/mr/pool.hpp>

#include <cuda_runtime_api.h>

#include <vector>

TEST_CASE("tensor: a kernel writes through the mdspan view of a device tensor", "[gpu]") {
  FRUGAL_REQUIRE_DEVICE();
  frugal::pool_resource pool{frugal::cuda_resource{}};
  auto t = frugal::make_tensor<float>(pool, 37, 300);
  CHECK(t.device_accessible());
  CHECK_FALSE(t.host_accessible());
  frugal::testing::fill_index_on_device(t);
  std::vector<float> host(t.size());
  FRUGAL_CUDA_TRY(cudaMemcpy(host.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost));
  CHECK(host[0] == 0.0f);
  CHECK(host[36 * 300 + 299] == 36299.0f);
  CHECK(host[5 * 300 + 7] == 5007.0f);
}
