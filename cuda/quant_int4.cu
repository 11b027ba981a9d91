// The int4 block formats (int4_g32, int4_g64, int4_g128, each symmetric or asymmetric): one
// thread per group through a shared-memory tile, in a translation unit of their own so the
// families compile in parallel. Dispatched from quant.cu (see quant_launch.cuh).
// Built with -fmad=false (CMakeLists.txt).
#include "quant_launch.cuh"

namespace frugal::quant::device_detail {

void quantize_int4_groups(const quantize_job& job) { quantize_int_groups<4>(job); }

void dequantize_int4_groups(const dequantize_job& job) { dequantize_int_groups<4>(job); }

}  // namespace frugal::quant::device_detail
