// frugal/mr/detail/cuda_driver.hpp: the CUDA driver's virtual memory functions (cuMemCreate,
// cuMemMap, ...), looked up at run time through the runtime's cudaGetDriverEntryPointByVersion,
// so that nothing links libcuda and binaries still load on machines without a driver.
// snippet: cuda
//   const auto& driver = frugal::detail::cuda_driver_api::get();   // throws cuda_error if absent
//   driver.check(driver.mem_unmap(address, size), "cuMemUnmap");   // address: a CUdeviceptr
#pragma once

#include <frugal/config.hpp>

#if !FRUGAL_HAS_CUDA
#error \
    "frugal/mr/detail/cuda_driver.hpp needs the CUDA runtime: link frugal::cuda (it defines FRUGAL_HAS_CUDA=1)"
#endif

#include <frugal/error.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <cudaTypedefs.h>  // PFN_cu* typedefs; includes cuda.h for the types only
#include <cuda_runtime_api.h>

#include <string>

namespace frugal::detail {

/// @brief Pointers to the driver functions behind cuda_virtual_resource.
///
/// The typedefs name the ABI version of each function (v10020: CUDA 10.2, unchanged since);
/// the lookup asks for the functions as of CUDA 12.0, which every driver able to run this
/// runtime provides.
struct cuda_driver_api {
  PFN_cuGetErrorName_v6000 get_error_name = nullptr;
  PFN_cuMemGetAllocationGranularity_v10020 mem_get_allocation_granularity = nullptr;
  PFN_cuMemAddressReserve_v10020 mem_address_reserve = nullptr;
  PFN_cuMemAddressFree_v10020 mem_address_free = nullptr;
  PFN_cuMemCreate_v10020 mem_create = nullptr;
  PFN_cuMemRelease_v10020 mem_release = nullptr;
  PFN_cuMemMap_v10020 mem_map = nullptr;
  PFN_cuMemUnmap_v10020 mem_unmap = nullptr;
  PFN_cuMemSetAccess_v10020 mem_set_access = nullptr;

  /// The CUDA version whose ABI of each function is requested (12.0).
  static constexpr unsigned int requested_version = 12000;

  /// @brief The driver functions, looked up once per process.
  /// @throws cuda_error naming the function and the reason when the driver (or a function) is
  ///         unavailable, e.g. on a machine without an NVIDIA driver; a later call tries again.
  static const cuda_driver_api& get() {
    static const cuda_driver_api api = load();
    return api;
  }

  /// @brief "CUDA_ERROR_OUT_OF_MEMORY (2)"-style name of a driver result.
  std::string describe(CUresult result) const {
    const char* name = nullptr;
    std::string text;
    if (get_error_name != nullptr && get_error_name(result, &name) == CUDA_SUCCESS &&
        name != nullptr) {
      text = name;
      text += ' ';
    }
    return text + "(" + std::to_string(static_cast<int>(result)) + ")";
  }

  /// @brief Throws cuda_error "<where>: <call> failed: <result>" unless result is CUDA_SUCCESS.
  /// The caller's file and line come from the defaulted arguments.
  void check(CUresult result, const char* call, const char* file = __builtin_FILE(),
             int line = __builtin_LINE()) const {
    if (result == CUDA_SUCCESS) [[likely]]
      return;
    throw_error<cuda_error>(file, line, std::string(call) + " failed: " + describe(result));
  }

 private:
  static cuda_driver_api load() {
    cuda_driver_api api;
    lookup("cuGetErrorName", api.get_error_name);
    lookup("cuMemGetAllocationGranularity", api.mem_get_allocation_granularity);
    lookup("cuMemAddressReserve", api.mem_address_reserve);
    lookup("cuMemAddressFree", api.mem_address_free);
    lookup("cuMemCreate", api.mem_create);
    lookup("cuMemRelease", api.mem_release);
    lookup("cuMemMap", api.mem_map);
    lookup("cuMemUnmap", api.mem_unmap);
    lookup("cuMemSetAccess", api.mem_set_access);
    return api;
  }

  template <class Function>
  static void lookup(const char* symbol, Function& function) {
    void* address = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t status = cudaGetDriverEntryPointByVersion(symbol, &address, requested_version,
                                                                cudaEnableDefault, &found);
    if (status == cudaSuccess && found == cudaDriverEntryPointSuccess && address != nullptr) {
      function = reinterpret_cast<Function>(address);
      return;
    }
    (void)cudaGetLastError();
    std::string reason;
    if (status != cudaSuccess) {
      reason = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    } else if (found == cudaDriverEntryPointVersionNotSufficent) {
      reason = "the driver is older than CUDA 12.0";
    } else {
      reason = "the driver does not provide it";
    }
    FRUGAL_FAIL(std::string("CUDA driver function ") + symbol + " is unavailable (" + reason + ")",
                cuda_error);
  }
};

}  // namespace frugal::detail
