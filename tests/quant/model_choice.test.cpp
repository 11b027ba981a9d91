#include <frugal/error.hpp>
#include <frugal/quant/model_choice.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <vector>

namespace q = frugal::quant;
using q::format;

namespace {
// A stand-in model: a group accepts a format of at least `need` bits per element for its shape.
struct fake_model {
  std::vector<q::matrix_group> groups;
  std::vector<double> need;
  int calls = 0;
  q::metric_verdict operator()(const q::format_assignment& a) {
    ++calls;
    for (std::size_t g = 0; g < groups.size(); ++g)
      if (a[g] && q::bits_per_element(*a[g], groups[g].rows, groups[g].cols) < need[g])
        return {false, 0.0, "too coarse"};
    return {true, 1.0, ""};
  }
};
}  // namespace

TEST_CASE("choose_by_metric: the cheapest uniform format, then each group lowered", "[quant]") {
  fake_model m{{{"attention", 64, 128, 4}, {"ffn", 256, 128, 4}}, {8.0, 4.0}};
  const std::vector<format> candidates{format::int8_channel, format::q8_0, format::q4_0,
                                       format::int4_g128};
  const auto c = q::choose_by_metric(m.groups, candidates, std::ref(m));
  // Bits per element: int4_g128 4.25, q4_0 4.5, int8_channel 8.25, q8_0 8.5. Attention needs 8.
  REQUIRE(c.uniform_format == format::int8_channel);
  REQUIRE(c.per_group.size() == 2);
  CHECK(c.per_group[0] == format::int8_channel);
  CHECK(c.per_group[1] == format::int4_g128);
  // Uniform: int4_g128, q4_0 rejected, int8_channel accepted; attention: int4_g128, q4_0
  // rejected; ffn: int4_g128 accepted at once.
  CHECK(c.trials.size() == 6);
  CHECK(c.per_group_bytes < c.uniform_bytes);
  CHECK(c.uniform_bytes < c.source_bytes);
  CHECK(c.source_bytes == (64 * 128 + 256 * 128) * 4 * 4);
  CHECK(c.uniform_bytes ==
        q::assignment_bytes(m.groups, {format::int8_channel, format::int8_channel}));
  CHECK(static_cast<std::size_t>(m.calls) == c.trials.size());
  // Every accepted trial was accepted by the metric; the answer is the last accepted one.
  const auto last_accepted = std::find_if(c.trials.rbegin(), c.trials.rend(),
                                          [](const auto& t) { return t.verdict.accepted; });
  REQUIRE(last_accepted != c.trials.rend());
  CHECK(last_accepted->formats == c.per_group);
}

TEST_CASE("choose_by_metric: nothing accepted keeps the source precision", "[quant]") {
  fake_model m{{{"w", 32, 64, 1}}, {16.0}};
  const std::vector<format> candidates{format::int8_channel, format::nvfp4};
  const auto c = q::choose_by_metric(m.groups, candidates, std::ref(m));
  CHECK_FALSE(c.uniform_format.has_value());
  CHECK_FALSE(c.per_group[0].has_value());
  CHECK(c.per_group_bytes == c.source_bytes);
  CHECK(c.trials.size() == 4);  // two uniform tries, then the same two for the one group
}

TEST_CASE("choose_by_metric: a format a group cannot hold is skipped for it", "[quant]") {
  // 48 columns: int4_g64 and int8_g128 cannot hold them, int8_channel can.
  fake_model m{{{"odd", 16, 48, 1}, {"even", 16, 128, 1}}, {0.0, 0.0}};
  const std::vector<format> candidates{format::int4_g64, format::int8_channel};
  const auto c = q::choose_by_metric(m.groups, candidates, std::ref(m));
  CHECK(c.uniform_format == format::int8_channel);
  CHECK(c.per_group[0] == format::int8_channel);
  CHECK(c.per_group[1] == format::int4_g64);
}

TEST_CASE("choose_by_metric refuses no groups and empty groups", "[quant]") {
  const auto accept = [](const q::format_assignment&) { return q::metric_verdict{true}; };
  CHECK_THROWS_AS(q::choose_by_metric({}, {}, accept), frugal::invalid_argument);
  const std::vector<q::matrix_group> empty{{"w", 0, 64, 1}};
  CHECK_THROWS_AS(q::choose_by_metric(empty, {}, accept), frugal::invalid_argument);
}
