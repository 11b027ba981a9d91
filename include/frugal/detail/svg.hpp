// frugal/detail/svg.hpp: the pieces every SVG picture of frugal's draws with: text escaping,
// printf-style appending, and axes whose ticks fall on round numbers. Used by snapshot::to_svg
// and by the pictures of `frugal report`; not part of the public API.
//   namespace svg = frugal::detail::svg;
//   const svg::axis y = svg::nice_axis(0, 3.3, 5, true);         // ticks 0, 1, 2, 3, 4; high == 4
//   std::string text = "<text>" + svg::escape(name) + "</text>";  // "a<b" -> "a&lt;b"
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace frugal::detail::svg {

/// @brief `text` made safe for XML character data and attribute values: & < > " ' become
/// entities, and control characters other than tab and newline (not allowed in XML 1.0) become
/// '?'.
std::string escape(std::string_view text);

/// @brief Appends printf-style formatted text of any length to `out`.
[[gnu::format(printf, 2, 3)]] void append(std::string& out, const char* format, ...);

/// @brief 1, 2 or 5 times a power of ten: a tick step giving about `intervals` intervals over
/// `range`; 1 when `range` is not positive (or not a number) or `intervals` < 1.
double nice_step(double range, int intervals);

/// @brief The label of a tick at `value` on an axis whose ticks are `step` apart: as many
/// decimals as the step needs ("0.5", "40"), and thousands as "k" from 10000 on ("36k", "12.5k").
std::string tick_label(double value, double step);

/// @brief One axis of a plot: the range it draws and its ticks.
struct axis {
  double low = 0, high = 1;   // the range drawn
  double step = 1;            // between ticks
  std::vector<double> ticks;  // low, low + step, ... while <= high

  std::string label(double value) const { return tick_label(value, step); }
};

/// @brief An axis over [low, high] with about `intervals` intervals, its ticks at multiples of
/// nice_step(high - low, intervals) from `low`. With `extend`, `high` is rounded up to a whole
/// step so that the last tick closes the axis; without, the ticks stop at or before `high`.
/// A range that is empty or reversed becomes [low, low + 1].
axis nice_axis(double low, double high, int intervals, bool extend);

}  // namespace frugal::detail::svg
