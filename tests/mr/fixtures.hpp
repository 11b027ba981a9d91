// The fixtures of the conformance suite: one struct per resource configuration.
// A new resource joins the suite by adding its fixture to FRUGAL_CONFORMANCE_FIXTURES below.
#pragma once

#include "mr/conformance.hpp"

#include <frugal/mr/arena.hpp>
#include <frugal/mr/block.hpp>
#include <frugal/mr/failure_callback_adaptor.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/limit_adaptor.hpp>
#include <frugal/mr/logging_adaptor.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/synchronized.hpp>
#include <frugal/mr/tracking_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>

#include <cstddef>
#include <sstream>

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

// Upstreams and allocator templates.
struct virtual_fixture : fixture_defaults {
  virtual_resource r{{.reserve_bytes = std::size_t{64} << 30}};
};

struct virtual_unbacked_fixture : fixture_defaults {
  static constexpr bool writable = false;  // PROT_NONE: any access would fault
  virtual_resource r{{.reserve_bytes = std::size_t{64} << 30, .commit = false}};
};

struct pool_fixture : fixture_defaults {
  pool_resource<host_resource> r{host_resource{}};
};

struct pool_over_unbacked_fixture : fixture_defaults {
  static constexpr bool writable = false;
  virtual_resource address_space{{.reserve_bytes = std::size_t{64} << 30, .commit = false}};
  pool_resource<ref_t<virtual_resource>> r{frugal::ref(address_space)};
};

struct arena_fixture : fixture_defaults {
  static constexpr bool reclaims_every_free = false;  // only the most recent block, or release()
  arena_resource<host_resource> r{host_resource{}};
};

struct block_fixture : fixture_defaults {
  static constexpr std::size_t max_bytes = std::size_t{1} << 20;  // the block size
  block_resource<host_resource> r{host_resource{}, max_bytes, {.alignment = max_alignment}};
};

struct synchronized_pool_fixture : fixture_defaults {
  synchronized<pool_resource<host_resource>> r{std::in_place, host_resource{}};
};

}  // namespace frugal::testing

// Every fixture of the suite; Catch names each case after the fixture it runs.
#define FRUGAL_CONFORMANCE_FIXTURES                                                              \
  frugal::testing::host_fixture, frugal::testing::ref_fixture, frugal::testing::virtual_fixture, \
      frugal::testing::virtual_unbacked_fixture, frugal::testing::pool_fixture,                  \
      frugal::testing::pool_over_unbacked_fixture, frugal::testing::arena_fixture,               \
      frugal::testing::block_fixture, frugal::testing::stats_fixture,                            \
      frugal::testing::tracking_fixture, frugal::testing::limit_fixture,                         \
      frugal::testing::logging_fixture, frugal::testing::synchronized_fixture,                   \
      frugal::testing::synchronized_pool_fixture, frugal::testing::failure_callback_fixture

namespace frugal::testing {}  // namespace frugal::testing
