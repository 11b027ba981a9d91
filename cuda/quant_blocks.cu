// The other block formats: mxfp8 and mxfp4 (OCP MX), nvfp4 (after its tensor-wide amax), nf4,
// and the GGUF records q8_0 and q4_0; one thread per group through a shared-memory tile.
// Dispatched from quant.cu (see quant_launch.cuh). Built with -fmad=false (CMakeLists.txt).
#include "quant_launch.cuh"

namespace frugal::quant::device_detail {

void quantize_other_blocks(const quantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions out(job.l, job.output);
  const std::size_t n = job.rows * job.cols;
  group_context ctx;
  ctx.mx_round_up = job.mx_round_up;
  bool known = true;
  with_input_type(job.type, [&]<class T>() {
    const auto* in = static_cast<const raw_t<T>*>(job.input);
    switch (job.f) {
      case format::mxfp8:
        return quantize_groups<T, mx_group<false>>(in, n, out, ctx, nullptr, plan);
      case format::mxfp4:
        return quantize_groups<T, mx_group<true>>(in, n, out, ctx, nullptr, plan);
      case format::nvfp4:
        return quantize_nvfp4<T>(in, n, out, plan);
      case format::nf4:
        return quantize_groups<T, nf4_group>(in, n, out, ctx, nullptr, plan);
      case format::q8_0:
        return quantize_groups<T, gguf_group<false>>(in, n, out, ctx, nullptr, plan);
      case format::q4_0:
        return quantize_groups<T, gguf_group<true>>(in, n, out, ctx, nullptr, plan);
      default:
        known = false;
    }
  });
  if (!known) not_in_family(job.f, "MX, NVFP4, NF4 and GGUF");
}

void dequantize_other_blocks(const dequantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions in(job.l, const_cast<std::uint8_t*>(job.input));
  const std::size_t n = job.rows * job.cols;
  switch (job.f) {
    case format::mxfp8:
      return dequantize_groups<mx_group<false>>(in, n, job.output, plan);
    case format::mxfp4:
      return dequantize_groups<mx_group<true>>(in, n, job.output, plan);
    case format::nvfp4:
      return dequantize_groups<nvfp4_group>(in, n, job.output, plan);
    case format::nf4:
      return dequantize_groups<nf4_group>(in, n, job.output, plan);
    case format::q8_0:
      return dequantize_groups<gguf_group<false>>(in, n, job.output, plan);
    case format::q4_0:
      return dequantize_groups<gguf_group<true>>(in, n, job.output, plan);
    default:
      break;
  }
  not_in_family(job.f, "MX, NVFP4, NF4 and GGUF");
}

}  // namespace frugal::quant::device_detail
