// Adaptors add one thing each. Here: a cap, statistics and a leak report over one pool, and the
// error a capped allocation gives.
#include <frugal/frugal.hpp>

#include <cstdio>

int main() {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  frugal::pool_resource pool{frugal::host_resource{}};
  frugal::tracking_adaptor tracker{frugal::ref(pool)};           // who holds what, by tag
  frugal::limit_adaptor capped{frugal::ref(tracker), 64 * MiB};  // a hard cap
  frugal::stats_adaptor stats{frugal::ref(capped)};              // current and peak bytes

  void* kv_cache = stats.allocate(32 * MiB);
  void* activation = nullptr;
  {
    frugal::scoped_tag tag{tracker, "layer3.mlp.up"};
    activation = stats.allocate(8 * MiB);  // retained past its step: the report will name it
  }
  try {
    (void)stats.allocate(40 * MiB);  // over the cap
  } catch (const frugal::out_of_memory& e) {
    std::printf("%s\n", e.what());
  }
  stats.deallocate(kv_cache, 32 * MiB);
  std::printf("still outstanding:\n%s", tracker.report().c_str());
  std::printf("peak through the stack: %s\n",
              frugal::format_bytes(stats.stats().peak_bytes_in_use).c_str());
  stats.deallocate(activation, 8 * MiB);
  frugal::expect_no_outstanding(tracker, "at exit");  // throws, naming tags, if anything leaked
}
