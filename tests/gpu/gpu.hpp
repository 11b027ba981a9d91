// Helpers for device tests: skip cleanly (and say so) when no CUDA device is present.
#pragma once

#include <frugal/device.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>

/// Ends the current test case as skipped (ctest SKIP_RETURN_CODE 4) when there is no device.
#define FRUGAL_REQUIRE_DEVICE()                                            \
  do {                                                                     \
    if (frugal::device::count() == 0) {                                    \
      std::printf("SKIPPED: no CUDA device present; %s needs a GPU\n",     \
                  Catch::getResultCapture().getCurrentTestName().c_str()); \
      std::fflush(stdout);                                                 \
      std::_Exit(4);                                                       \
    }                                                                      \
  } while (0)
