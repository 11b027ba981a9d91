# CCCL is a required header dependency (cuda::mr concepts, cuda::std::mdspan, CUB, Thrust).
# It is found through the CUDA toolkit's lib64/cmake/cccl or a standalone CCCL on CMAKE_PREFIX_PATH.
set(_frugal_cccl_hints /usr/local/cuda/lib64/cmake /usr/local/cuda/lib/cmake)
if(DEFINED ENV{CUDA_PATH})
  list(PREPEND _frugal_cccl_hints "$ENV{CUDA_PATH}/lib64/cmake")
endif()
if(CUDAToolkit_LIBRARY_DIR)
  list(PREPEND _frugal_cccl_hints "${CUDAToolkit_LIBRARY_DIR}/cmake")
endif()
find_package(CCCL CONFIG REQUIRED COMPONENTS libcudacxx CUB Thrust HINTS ${_frugal_cccl_hints})
find_package(Threads REQUIRED)
# nlohmann/json (nlohmann-json3-dev): snapshot JSON in libfrugal, linked privately.
find_package(nlohmann_json 3 REQUIRED)
