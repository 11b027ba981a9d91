// A downstream program against the installed frugal::sim: building it proves the target is
// exported and links; it checks one name round trip when run.
#include <frugal/sim/trace.hpp>

#include <cstdio>

int main() {
  const auto kind = frugal::sim::parse_allocator_kind("first-fit");
  if (frugal::sim::to_string(kind) != "first-fit") {
    std::puts("downstream sim: bad name");
    return 1;
  }
  std::puts("downstream sim: ok");
  return 0;
}
