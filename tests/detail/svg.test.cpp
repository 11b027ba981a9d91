// The SVG helpers both picture writers draw with: escaping, printf-style appending, tick choice.
#include <frugal/detail/svg.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace svg = frugal::detail::svg;

TEST_CASE("svg::escape writes each XML special character as its entity", "[svg]") {
  CHECK(svg::escape("&") == "&amp;");
  CHECK(svg::escape("<") == "&lt;");
  CHECK(svg::escape(">") == "&gt;");
  CHECK(svg::escape("\"") == "&quot;");
  CHECK(svg::escape("'") == "&apos;");
  CHECK(svg::escape("a <b> & \"c\" 'd'") == "a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;");
  // An entity in the input is escaped again: the text shows what it was given.
  CHECK(svg::escape("&amp;") == "&amp;amp;");
}

TEST_CASE("svg::escape keeps plain text, tab, newline and UTF-8, and replaces other controls",
          "[svg]") {
  CHECK(svg::escape("").empty());
  CHECK(svg::escape("kv cache 40 GiB") == "kv cache 40 GiB");
  CHECK(svg::escape("a\tb\nc") == "a\tb\nc");
  CHECK(svg::escape("\u00b5s") == "\u00b5s");
  const std::string controls{'a', '\x01', 'b', '\r', 'c', '\x1f'};
  CHECK(svg::escape(controls) == "a?b?c?");
  CHECK(svg::escape(std::string("a\0b", 3)) == "a?b");
}

TEST_CASE("svg::append formats text of any length", "[svg]") {
  std::string out = "x=";
  svg::append(out, "%.1f,%d", 1.25, 7);
  CHECK(out == "x=1.2,7");
  const std::string long_text(2000, 'q');  // longer than the stack buffer
  svg::append(out, "[%s]", long_text.c_str());
  CHECK(out == "x=1.2,7[" + long_text + "]");
}

TEST_CASE("svg::nice_step is 1, 2 or 5 times a power of ten", "[svg]") {
  CHECK(svg::nice_step(10, 5) == 2);
  CHECK(svg::nice_step(10, 10) == 1);
  CHECK(svg::nice_step(3.3, 5) == 1);
  CHECK(svg::nice_step(1, 8) == Approx(0.2));
  CHECK(svg::nice_step(0.0042, 5) == Approx(0.001));
  CHECK(svg::nice_step(73000, 5) == 20000);
  CHECK(svg::nice_step(250, 5) == 50);
  // No usable range: one unit.
  CHECK(svg::nice_step(0, 5) == 1);
  CHECK(svg::nice_step(-4, 5) == 1);
  CHECK(svg::nice_step(10, 0) == 1);
}

TEST_CASE("svg::nice_axis puts ticks on round numbers across ranges", "[svg]") {
  SECTION("a range of a few units, extended to a whole step") {
    const svg::axis a = svg::nice_axis(0, 3.3, 5, true);
    CHECK(a.step == 1);
    CHECK(a.high == 4);
    CHECK(a.ticks == std::vector<double>{0, 1, 2, 3, 4});
  }
  SECTION("not extended: the ticks stop inside the range") {
    const svg::axis a = svg::nice_axis(0, 3.3, 5, false);
    CHECK(a.high == 3.3);
    CHECK(a.ticks == std::vector<double>{0, 1, 2, 3});
  }
  SECTION("a range that ends on a step keeps its last tick") {
    const svg::axis a = svg::nice_axis(0, 2.5, 5, false);
    CHECK(a.step == 0.5);
    REQUIRE(a.ticks.size() == 6);
    CHECK(a.ticks.back() == 2.5);
    CHECK(a.label(a.ticks[3]) == "1.5");
  }
  SECTION("a small range") {
    const svg::axis a = svg::nice_axis(0, 0.0042, 5, true);
    CHECK(a.step == Approx(0.001));
    CHECK(a.high == Approx(0.005));
    REQUIRE(a.ticks.size() == 6);
    CHECK(a.label(a.ticks[4]) == "0.004");
  }
  SECTION("a large range, labelled in thousands") {
    const svg::axis a = svg::nice_axis(0, 73000, 5, false);
    CHECK(a.step == 20000);
    CHECK(a.ticks == std::vector<double>{0, 20000, 40000, 60000});
    CHECK(a.label(60000) == "60k");
  }
  SECTION("a range that does not start at zero") {
    const svg::axis a = svg::nice_axis(10, 20, 5, false);
    CHECK(a.ticks == std::vector<double>{10, 12, 14, 16, 18, 20});
  }
  SECTION("an empty or reversed range becomes one unit") {
    const svg::axis a = svg::nice_axis(5, 5, 4, false);
    CHECK(a.low == 5);
    CHECK(a.high == 6);
    CHECK(a.ticks.front() == 5);
    CHECK(a.ticks.back() == Approx(6));
    CHECK(svg::nice_axis(3, 1, 4, false).high == 4);
  }
}

TEST_CASE("svg::tick_label writes as many decimals as the step needs", "[svg]") {
  CHECK(svg::tick_label(40, 10) == "40");
  CHECK(svg::tick_label(0, 1) == "0");
  CHECK(svg::tick_label(1.5, 0.5) == "1.5");
  CHECK(svg::tick_label(0.75, 0.25) == "0.75");
  CHECK(svg::tick_label(2, 0.5) == "2.0");
  CHECK(svg::tick_label(0.004, 0.001) == "0.004");
  CHECK(svg::tick_label(9000, 1000) == "9000");
  CHECK(svg::tick_label(36000, 2000) == "36k");
  CHECK(svg::tick_label(12500, 2500) == "12.5k");
}
