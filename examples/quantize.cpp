// Quantize a weight matrix, see what each format costs in bytes and accuracy, and let
// choose() pick the cheapest format that still meets an accuracy bound.
#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/quant/accuracy.hpp>
#include <frugal/quant/quantize.hpp>
#include <frugal/quant/quantized_tensor.hpp>

#include <cstdio>
#include <random>
#include <vector>

namespace quant = frugal::quant;

int main() {
  // A 512 x 1,024 weight matrix, like a projection of a small transformer layer.
  const std::size_t rows = 512, cols = 1024;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> weights(rows * cols);
  for (float& w : weights) w = normal(rng);
  std::printf("weights: %zu x %zu float32, %s\n", rows, cols,
              frugal::format_bytes(weights.size() * sizeof(float)).c_str());

  // Quantize to two formats; the quantized tensor owns one allocation (values + scales).
  frugal::host_resource host;
  std::vector<float> restored(weights.size());
  for (quant::format f : {quant::format::int8_channel, quant::format::nvfp4}) {
    const quant::quantized_tensor q = quant::quantize(f, weights, cols, host);
    quant::dequantize(q, restored);
    const quant::error_metrics m = quant::compare(weights, restored);
    std::printf("%-13s %s (%.3f bits / element), SQNR %.1f dB, relative error %.4f\n",
                quant::to_string(f).data(), frugal::format_bytes(q.bytes()).c_str(),
                q.bits_per_element(), m.sqnr_db, m.relative_l2);
  }

  // The cheapest format with at least 30 dB SQNR, and the runners-up around it.
  const auto b = quant::bound::min_sqnr(30.0);
  const auto chosen = quant::choose(weights, cols, b);
  std::printf("choose(min SQNR 30 dB): %s\n",
              chosen ? quant::to_string(*chosen).data() : "none meets the bound");
  for (const quant::candidate& c : quant::choose_report(weights, cols, b))
    if (c.metrics.bits_per_element <= 8.5)
      std::printf("  %-17s %6.3f bits  %5.1f dB  %s\n", quant::to_string(c.f).data(),
                  c.metrics.bits_per_element, c.metrics.sqnr_db, c.meets_bound ? "meets" : "");
  return chosen ? 0 : 1;
}
