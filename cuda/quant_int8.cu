// The int8 block formats (int8_g32, int8_g64, int8_g128, each symmetric or asymmetric): one
// thread per group through a shared-memory tile. Dispatched from quant.cu (see quant_launch.cuh).
// Built with -fmad=false (CMakeLists.txt).
#include "quant_launch.cuh"

namespace frugal::quant::device_detail {

void quantize_int8_groups(const quantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions out(job.l, job.output);
  const std::size_t n = job.rows * job.cols;
  const group_context ctx;
  bool known = true;
  with_input_type(job.type, [&]<class T>() {
    const auto* in = static_cast<const raw_t<T>*>(job.input);
    switch (job.f) {
      case format::int8_g32: return quantize_groups<T, int_group<8, false, 32>>(in, n, out, ctx, nullptr, plan);
      case format::int8_g32_asym: return quantize_groups<T, int_group<8, true, 32>>(in, n, out, ctx, nullptr, plan);
      case format::int8_g64: return quantize_groups<T, int_group<8, false, 64>>(in, n, out, ctx, nullptr, plan);
      case format::int8_g64_asym: return quantize_groups<T, int_group<8, true, 64>>(in, n, out, ctx, nullptr, plan);
      case format::int8_g128: return quantize_groups<T, int_group<8, false, 128>>(in, n, out, ctx, nullptr, plan);
      case format::int8_g128_asym: return quantize_groups<T, int_group<8, true, 128>>(in, n, out, ctx, nullptr, plan);
      default: known = false;
    }
  });
  if (!known) not_in_family(job.f, "int8 block");
}

void dequantize_int8_groups(const dequantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions in(job.l, const_cast<std::uint8_t*>(job.input));
  const std::size_t n = job.rows * job.cols;
  switch (job.f) {
    case format::int8_g32: return dequantize_groups<int_group<8, false, 32>>(in, n, job.output, plan);
    case format::int8_g32_asym: return dequantize_groups<int_group<8, true, 32>>(in, n, job.output, plan);
    case format::int8_g64: return dequantize_groups<int_group<8, false, 64>>(in, n, job.output, plan);
    case format::int8_g64_asym: return dequantize_groups<int_group<8, true, 64>>(in, n, job.output, plan);
    case format::int8_g128: return dequantize_groups<int_group<8, false, 128>>(in, n, job.output, plan);
    case format::int8_g128_asym: return dequantize_groups<int_group<8, true, 128>>(in, n, job.output, plan);
    default: break;
  }
  not_in_family(job.f, "int8 block");
}

}  // namespace frugal::quant::device_detail
