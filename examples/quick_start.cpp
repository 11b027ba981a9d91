// The README's usage example: a frugal resource, an allocation, and the error model.
#include <frugal/frugal.hpp>

#include <cstdio>

int main() {
  frugal::host_resource host;                  // the default upstream: aligned operator new
  void* p = host.allocate(1 << 20);            // 256-byte aligned, like cudaMalloc
  host.deallocate(p, 1 << 20);

  try {
    (void)host.allocate(64, /*alignment=*/48); // not a power of two
  } catch (const frugal::invalid_argument& e) {
    std::printf("rejected: %s\n", e.what());
  }
  std::printf("frugal %s\n", frugal::version());
}
