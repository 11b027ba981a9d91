// The per-tensor and per-channel formats (int8, int8_asym, int8_channel(_asym), fp8_e4m3,
// fp8_e5m2, fp8_e*_channel): a reduction, then an element-wise encode; an element-wise decode.
// Dispatched from quant.cu (see quant_launch.cuh). Built with -fmad=false (CMakeLists.txt).
#include "quant_launch.cuh"

namespace frugal::quant::device_detail {

void quantize_scaled_family(const quantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions out(job.l, job.output);
  const std::size_t rows = job.rows, cols = job.cols;
  bool known = true;
  with_input_type(job.type, [&]<class T>() {
    const auto* in = static_cast<const raw_t<T>*>(job.input);
    switch (job.f) {
      case format::int8:
        return quantize_scaled<T, int8_encoder<false>>(false, in, rows, cols, out, plan);
      case format::int8_asym:
        return quantize_scaled<T, int8_encoder<true>>(false, in, rows, cols, out, plan);
      case format::int8_channel:
        return quantize_scaled<T, int8_encoder<false>>(true, in, rows, cols, out, plan);
      case format::int8_channel_asym:
        return quantize_scaled<T, int8_encoder<true>>(true, in, rows, cols, out, plan);
      case format::fp8_e4m3:
        return quantize_scaled<T, fp8_encoder<false>>(false, in, rows, cols, out, plan);
      case format::fp8_e5m2:
        return quantize_scaled<T, fp8_encoder<true>>(false, in, rows, cols, out, plan);
      case format::fp8_e4m3_channel:
        return quantize_scaled<T, fp8_encoder<false>>(true, in, rows, cols, out, plan);
      case format::fp8_e5m2_channel:
        return quantize_scaled<T, fp8_encoder<true>>(true, in, rows, cols, out, plan);
      default:
        known = false;
    }
  });
  if (!known) not_in_family(job.f, "per-tensor and per-channel");
}

void dequantize_scaled_family(const dequantize_job& job) {
  const launch_plan plan = plan_of(job);
  const regions in(job.l, const_cast<std::uint8_t*>(job.input));
  const std::size_t rows = job.rows, cols = job.cols;
  float* output = job.output;
  switch (job.f) {
    case format::int8:
      return dequantize_scaled<int8_decoder<false>>(false, in, rows, cols, output, plan);
    case format::int8_asym:
      return dequantize_scaled<int8_decoder<true>>(false, in, rows, cols, output, plan);
    case format::int8_channel:
      return dequantize_scaled<int8_decoder<false>>(true, in, rows, cols, output, plan);
    case format::int8_channel_asym:
      return dequantize_scaled<int8_decoder<true>>(true, in, rows, cols, output, plan);
    case format::fp8_e4m3:
      return dequantize_scaled<fp8_decoder<false>>(false, in, rows, cols, output, plan);
    case format::fp8_e5m2:
      return dequantize_scaled<fp8_decoder<true>>(false, in, rows, cols, output, plan);
    case format::fp8_e4m3_channel:
      return dequantize_scaled<fp8_decoder<false>>(true, in, rows, cols, output, plan);
    case format::fp8_e5m2_channel:
      return dequantize_scaled<fp8_decoder<true>>(true, in, rows, cols, output, plan);
    default:
      break;
  }
  not_in_family(job.f, "per-tensor and per-channel");
}

}  // namespace frugal::quant::device_detail
