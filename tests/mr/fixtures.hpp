// The fixtures of the conformance suite: one struct per resource configuration.
// A new resource joins the suite by adding its fixture to all_fixtures below.
#pragma once

#include "mr/conformance.hpp"

#include <frugal/mr/host_resource.hpp>

#include <tuple>

namespace frugal::testing {

struct host_fixture : fixture_defaults {
  static constexpr bool stateless = true;
  host_resource r;
};

struct ref_fixture : fixture_defaults {
  static constexpr bool stateless = true;  // refs to equal targets compare equal
  host_resource target;
  ref_t<host_resource> r{target};
};

using all_fixtures = std::tuple<host_fixture, ref_fixture>;

}  // namespace frugal::testing
