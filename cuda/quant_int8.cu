// The int8 block formats (int8_g32, int8_g64, int8_g128, each symmetric or asymmetric): one
// thread per group through a shared-memory tile, in a translation unit of their own so the
// families compile in parallel. Dispatched from quant.cu (see quant_launch.cuh).
// Built with -fmad=false (CMakeLists.txt).
#include "quant_launch.cuh"

namespace frugal::quant::device_detail {

void quantize_int8_groups(const quantize_job& job) { quantize_int_groups<8>(job); }

void dequantize_int8_groups(const dequantize_job& job) { dequantize_int_groups<8>(job); }

}  // namespace frugal::quant::device_detail
