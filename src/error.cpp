// Out-of-line parts of the error model: message composition and byte formatting.
#include <frugal/error.hpp>

#include <array>
#include <cinttypes>
#include <cstdio>

namespace frugal {

#define FRUGAL_STRINGIFY_(x) #x
#define FRUGAL_STRINGIFY(x) FRUGAL_STRINGIFY_(x)
const char* version() noexcept {
  return FRUGAL_STRINGIFY(FRUGAL_VERSION_MAJOR) "." FRUGAL_STRINGIFY(
      FRUGAL_VERSION_MINOR) "." FRUGAL_STRINGIFY(FRUGAL_VERSION_PATCH);
}

std::string format_bytes(std::size_t bytes) {
  static constexpr std::array<const char*, 6> units{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < units.size()) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %s", value, units[unit]);
  return text;
}

out_of_memory::out_of_memory(std::size_t requested_bytes, std::string state, std::string who)
    : requested_bytes_(requested_bytes), state_(std::move(state)), who_(std::move(who)) {
  message_ = "out of memory: " + who_ + " could not allocate " + std::to_string(requested_bytes) +
             " bytes (" + format_bytes(requested_bytes) + ")";
  if (!state_.empty()) message_ += "; " + state_;
}

namespace detail {
void assertion_failed(const char* condition, const char* message, const char* file,
                      int line) noexcept {
  std::fprintf(stderr, "%s:%d: frugal assertion failed: %s (%s)\n", file, line, message, condition);
  std::abort();
}
}  // namespace detail
}  // namespace frugal
