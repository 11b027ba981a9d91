// frugal/frugal.hpp: the umbrella header. Component headers can be included alone.
//   #include <frugal/frugal.hpp>
//   frugal::host_resource host;
#pragma once

#include <frugal/config.hpp>
#include <frugal/error.hpp>
#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>

#if FRUGAL_HAS_CUDA
#  include <frugal/device.hpp>
#endif
