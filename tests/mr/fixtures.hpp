// The fixtures of the conformance suite: one struct per resource configuration.
// A new resource joins the suite by adding its fixture to all_fixtures below.
#pragma once

#include "mr/conformance.hpp"

#include <frugal/mr/failure_callback_adaptor.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/limit_adaptor.hpp>
#include <frugal/mr/logging_adaptor.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/synchronized.hpp>
#include <frugal/mr/tracking_adaptor.hpp>

#include <cstddef>
#include <sstream>
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

// Adaptors over host_resource: each holds its own state, so two instances never compare equal.
struct stats_fixture : fixture_defaults {
  stats_adaptor<host_resource> r{host_resource{}};
};

struct tracking_fixture : fixture_defaults {
  tracking_adaptor<host_resource> r{host_resource{}};
};

struct limit_fixture : fixture_defaults {
  // Room for the suite's largest single allocation (1 GiB) and then some.
  limit_adaptor<host_resource> r{host_resource{}, std::size_t{4} << 30};
};

struct logging_fixture : fixture_defaults {
  std::ostringstream log;  // declared before r, which writes its header into it
  logging_adaptor<host_resource> r{host_resource{}, log};
};

struct synchronized_fixture : fixture_defaults {
  synchronized<host_resource> r{host_resource{}};
};

struct failure_callback_fixture : fixture_defaults {
  failure_callback_adaptor<host_resource> r{host_resource{}, [](std::size_t) { return false; }};
};

using all_fixtures = std::tuple<host_fixture, ref_fixture, stats_fixture, tracking_fixture,
                                limit_fixture, logging_fixture, synchronized_fixture,
                                failure_callback_fixture>;

}  // namespace frugal::testing
