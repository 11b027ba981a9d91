// Serving a model from one GPU budget two ways, without a GPU: static batching, which reserves
// max_len tokens of KV per sequence and runs each batch until its longest request ends, against
// frugal's scheduler, which admits requests by the pages actually free. frugal::sim plays the
// same request stream through both and counts what each gets out of the memory.
#include <frugal/sim/simulator.hpp>

#include <cstdio>

namespace {

void print(const char* label, const frugal::sim::result& r) {
  std::printf("%-22s %5zu / %7.1f %9.1f %9.1f %7.1f%% %11s %11s %8zu %8zu\n", label,
              r.max_concurrent, r.mean_concurrent_saturated, r.tokens_per_step,
              r.output_tokens_per_step, 100 * r.waste,
              frugal::format_bytes(r.peak_workspace_bytes).c_str(),
              frugal::format_bytes(static_cast<std::size_t>(r.mean_workspace_bytes)).c_str(),
              r.preemptions, r.steps);
}

}  // namespace

int main() {
  // Llama-2-13B keeps 800 KiB of KV per token (40 KV heads): on a 40 GiB GPU with fp16 weights,
  // static batching fits only a few 4,096-token reservations.
  frugal::sim::config c{.model = "llama-2-13b",
                        .gpu_memory = std::size_t{40} << 30,
                        .weights = frugal::sim::weight_format::fp16,
                        .workload = frugal::sim::workload::sharegpt,
                        .num_requests = 300,
                        .max_len = 4096,
                        .seed = 1};
  std::printf("%s on %s, %zu ShareGPT-like requests, all queued at step 0\n\n", c.model.c_str(),
              frugal::format_bytes(c.gpu_memory).c_str(), c.num_requests);
  std::printf("%-22s %15s %9s %9s %8s %11s %11s %8s %8s\n", "policy", "seqs max/mean", "tok/step",
              "out/step", "KV waste", "peak ws", "mean ws", "preempt", "steps");

  c.policy = frugal::sim::policy::static_batching;
  const frugal::sim::result fixed = frugal::sim::run(c);
  print("static (fp16 weights)", fixed);

  c.policy = frugal::sim::policy::dynamic;
  const frugal::sim::result dynamic = frugal::sim::run(c);
  print("frugal (fp16 weights)", dynamic);

  // Smaller weights leave more of the same GPU to the KV cache.
  c.weights = frugal::sim::weight_format::int4;
  const frugal::sim::result int4 = frugal::sim::run(c);
  print("frugal (int4 weights)", int4);

  std::printf("\nstatic reserves %u x %u tokens of KV (%s); frugal pages %s among the requests\n",
              fixed.max_batch, c.max_len, frugal::format_bytes(fixed.peak_kv_bytes).c_str(),
              frugal::format_bytes(dynamic.kv_budget_bytes).c_str());
  std::printf(
      "frugal: %.1fx the sequences at once, %.1fx the tokens per step\n",
      static_cast<double>(dynamic.max_concurrent) / static_cast<double>(fixed.max_concurrent),
      dynamic.tokens_per_step / fixed.tokens_per_step);
  const bool all_served = fixed.finished == c.num_requests && dynamic.finished == c.num_requests &&
                          int4.finished == c.num_requests && dynamic.leaked_pages == 0;
  return all_served ? 0 : 1;
}
