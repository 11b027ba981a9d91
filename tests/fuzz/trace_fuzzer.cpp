// libFuzzer target: frugal::sim::parse_rmm_log on arbitrary bytes, then a replay of whatever it
// accepted. A frugal::error is the expected answer to bad input; anything else is a bug.
#include <frugal/error.hpp>
#include <frugal/sim/trace.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  frugal::sim::trace t;
  try {
    t = frugal::sim::parse_rmm_log(in, "fuzz.csv");
  } catch (const frugal::error&) {
    return 0;
  }
  // Replays stay small: a cap keeps the allocators' address space modest whatever the sizes.
  const std::size_t cap = std::size_t{64} << 20;
  const auto events = std::span(t.events).first(std::min<std::size_t>(t.events.size(), 2000));
  for (auto kind : {frugal::sim::allocator_kind::pool, frugal::sim::allocator_kind::arena,
                    frugal::sim::allocator_kind::first_fit}) {
    const auto r = frugal::sim::replay(events, kind, cap);
    if (r.peak_bytes_in_use > cap || r.live_bytes_at_end > r.peak_bytes_in_use) __builtin_trap();
  }
  return 0;
}
