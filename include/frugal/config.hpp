// frugal/config.hpp: build-time switches shared by every frugal header.
// FRUGAL_DEBUG_LEVEL selects the debug checks: 0 none, 1 cheap (FRUGAL_ASSERT), 2 expensive
// (FRUGAL_ASSERT_EXPENSIVE, validators after every operation). Example: -DFRUGAL_DEBUG_LEVEL=2.
#pragma once

#define FRUGAL_VERSION_MAJOR 0
#define FRUGAL_VERSION_MINOR 1
#define FRUGAL_VERSION_PATCH 0

#ifndef FRUGAL_DEBUG_LEVEL
#ifdef NDEBUG
#define FRUGAL_DEBUG_LEVEL 0
#else
#define FRUGAL_DEBUG_LEVEL 1
#endif
#endif

// FRUGAL_HAS_CUDA is defined to 1 by the frugal::cuda target (CUDA runtime headers available).
#ifndef FRUGAL_HAS_CUDA
#define FRUGAL_HAS_CUDA 0
#endif

#if defined(__CUDACC__)
#define FRUGAL_HOST_DEVICE __host__ __device__
#else
#define FRUGAL_HOST_DEVICE
#endif

namespace frugal {
/// @brief The library's version as "major.minor.patch" (compiled into libfrugal).
const char* version() noexcept;
}  // namespace frugal
