// A pool that grows in place over reserved address space, and the stream-ordered pool over it:
// a block freed on one stream is reused by that stream at once and by another only after a wait.
#include <frugal/frugal.hpp>

#include <cstdio>
#include <string>

namespace {

/// Streams are numbers and their work is done at once; every event operation is printed, so the
/// output shows when the pool makes a stream wait (frugal::cuda_stream_policy does it on a GPU).
struct printing_policy {
  using stream_type = int;
  using event_type = int;
  int events = 0;
  event_type create_event() { return ++events; }
  void destroy_event(event_type) noexcept {}
  void record(event_type e, stream_type s) noexcept {
    std::printf("  record event %d on stream %d\n", e, s);
  }
  void wait(stream_type s, event_type e) noexcept {
    std::printf("  stream %d waits on event %d\n", s, e);
  }
  void synchronize(event_type e) noexcept { std::printf("  host waits on event %d\n", e); }
  bool query(event_type) noexcept { return false; }  // as if the GPU were still busy
  stream_type default_stream() const noexcept { return 0; }
};

}  // namespace

int main() {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  frugal::virtual_resource gpu{{.reserve_bytes = 1024 * MiB, .commit = false}};

  // Growth in place: every growth extends the one segment, so blocks merge across the pieces.
  {
    frugal::pool_resource pool{frugal::ref(gpu)};
    void* a = pool.allocate(30 * MiB);
    void* b = pool.allocate(50 * MiB);
    pool.deallocate(a, 30 * MiB);
    pool.deallocate(b, 50 * MiB);
    void* c = pool.allocate(80 * MiB);  // fits in what a and b left: no growth
    std::printf("growing pool: %zu segment, reserved %s for a peak in use of %s\n",
                pool.segments().size(), frugal::format_bytes(pool.stats().bytes_reserved).c_str(),
                frugal::format_bytes(pool.stats().peak_bytes_in_use).c_str());
    pool.deallocate(c, 80 * MiB);
    std::printf("trim gave back %s\n", frugal::format_bytes(pool.trim()).c_str());
  }

  // The stream-ordered pool, capped at 64 MiB so that the streams must share.
  constexpr int compute = 1, copy = 2;
  frugal::stream_pool_resource pool{frugal::ref(gpu), printing_policy{},
                                    frugal::pool_options{.max_size = 64 * MiB}};
  std::printf("compute allocates and frees 64 MiB:\n");
  void* x = pool.allocate_async(64 * MiB, 256, compute);
  pool.deallocate_async(x, 64 * MiB, 256, compute);
  std::printf("compute allocates again (no event operation):\n");
  void* y = pool.allocate_async(64 * MiB, 256, compute);
  pool.deallocate_async(y, 64 * MiB, 256, compute);
  std::printf("copy allocates (the block freed on compute, after a wait):\n");
  void* z = pool.allocate_async(64 * MiB, 256, copy);
  std::printf("same block: %s\n", z == x ? "yes" : "no");
  pool.deallocate_async(z, 64 * MiB, 256, copy);

  std::printf("compute frees four quarters; copy asks for the whole (merged before failing):\n");
  void* q[4];
  for (void*& p : q) p = pool.allocate_async(16 * MiB, 256, copy);
  for (void* p : q) pool.deallocate_async(p, 16 * MiB, 256, compute);
  void* whole = pool.allocate_async(64 * MiB, 256, copy);
  pool.deallocate_async(whole, 64 * MiB, 256, copy);

  try {
    (void)pool.allocate_async(65 * MiB, 256, compute);
  } catch (const frugal::out_of_memory& e) {
    std::printf("%s\n", e.what());
  }
  pool.release_stream(compute);  // before destroying a stream
  pool.release_stream(copy);
}
