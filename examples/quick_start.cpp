// The README's usage example: a pool over a simulated 80 GiB GPU, and an error that explains
// itself.
#include <frugal/frugal.hpp>

#include <cstdio>

int main() {
  constexpr std::size_t GiB = std::size_t{1} << 30;
  // 80 GiB of address space that is never backed: frugal's allocators never touch their memory.
  frugal::virtual_resource gpu{{.reserve_bytes = 80 * GiB, .commit = false}};
  // The pool grows in place over that range: one segment, so freed blocks always merge.
  frugal::pool_resource pool{frugal::ref(gpu), {.max_size = 80 * GiB}};

  void* weights = pool.allocate(16 * GiB);
  void* kv_cache = pool.allocate(60 * GiB);
  try {
    (void)pool.allocate(8 * GiB);  // does not fit: the error says why
  } catch (const frugal::out_of_memory& e) {
    std::printf("%s\n", e.what());
  }
  pool.deallocate(kv_cache, 60 * GiB);
  pool.deallocate(weights, 16 * GiB);
  std::printf("peak in use %s, peak reserved %s\n",
              frugal::format_bytes(pool.stats().peak_bytes_in_use).c_str(),
              frugal::format_bytes(pool.stats().peak_bytes_reserved).c_str());
}
