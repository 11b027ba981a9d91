// The SVG helpers of frugal/detail/svg.hpp.
#include <frugal/detail/svg.hpp>

#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace frugal::detail::svg {

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

void append(std::string& out, const char* format, ...) {
  char buffer[512];
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int length = std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  if (length > 0 && static_cast<std::size_t>(length) < sizeof buffer) {
    out.append(buffer, static_cast<std::size_t>(length));
  } else if (length > 0) {
    const std::size_t old_size = out.size();
    out.resize(old_size + static_cast<std::size_t>(length) + 1);
    std::vsnprintf(out.data() + old_size, static_cast<std::size_t>(length) + 1, format, again);
    out.resize(old_size + static_cast<std::size_t>(length));
  }
  va_end(again);
}

double nice_step(double range, int intervals) {
  if (!(range > 0) || !std::isfinite(range) || intervals < 1) return 1;
  const double raw = range / intervals;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) return m * power;
  return 10 * power;
}

std::string tick_label(double value, double step) {
  if (std::fabs(value) >= 10000) return tick_label(value / 1000, step / 1000) + "k";
  // The fewest decimals (up to 6) that write the step exactly: 0.25 needs 2, 2.5 one, 20 none.
  int decimals = 0;
  for (double scaled = std::fabs(step); decimals < 6 && std::isfinite(scaled) &&
                                        std::fabs(scaled - std::round(scaled)) > 1e-9 * scaled;
       scaled *= 10)
    ++decimals;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

axis nice_axis(double low, double high, int intervals, bool extend) {
  axis a;
  a.low = low;
  a.high = high > low ? high : low + 1;
  a.step = nice_step(a.high - a.low, intervals);
  if (extend) a.high = a.low + std::ceil((a.high - a.low) / a.step - 1e-9) * a.step;
  for (int i = 0;; ++i) {
    const double v = a.low + i * a.step;
    if (v > a.high + a.step * 1e-9) break;
    a.ticks.push_back(v);
  }
  return a;
}

}  // namespace frugal::detail::svg
