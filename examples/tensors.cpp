// Typed tensors that cannot leak, and a step scope that releases a step's intermediates at once.
#include <frugal/frugal.hpp>

#include <cstdio>

int main() {
  frugal::pool_resource pool{frugal::host_resource{}};
  frugal::tracking_adaptor tracker{frugal::ref(pool)};
  frugal::arena_resource arena{frugal::host_resource{}};

  // Weights live as long as the model: tagged, so a leak report would name them.
  auto weights = frugal::make_tagged_tensor<frugal::bf16_t>(tracker, "layer0.mlp.up", 4096, 1024);
  std::printf("weights: %zu x %zu, %s, tag %s\n", weights.extent(0), weights.extent(1),
              frugal::format_bytes(weights.bytes()).c_str(), weights.tag().c_str());

  for (int step = 0; step < 100; ++step) {
    frugal::step_scope scope{arena};  // everything below is released when the step ends
    const std::size_t tokens = 64 + static_cast<std::size_t>(step) * 8;  // the live batch
    auto hidden = frugal::make_tensor<float>(scope, tokens, 1024);
    auto logits = frugal::make_tensor<float>(scope, tokens, 256);
    hidden.view()(0, 0) = 1.0f;
    logits.view()(tokens - 1, 255) = hidden.view()(0, 0);
  }
  std::printf("arena: high-water mark %s, reserved %s, in use after the loop %s\n",
              frugal::format_bytes(arena.high_water_mark()).c_str(),
              frugal::format_bytes(arena.stats().bytes_reserved).c_str(),
              frugal::format_bytes(arena.bytes_in_use()).c_str());

  weights.reset();
  frugal::expect_no_outstanding(tracker, "after unloading the model");
  std::printf("nothing outstanding\n");
}
