// A downstream program built against the installed frugal package.
#include <frugal/frugal.hpp>

#include <cstdio>
#include <cstring>

int main() {
  frugal::host_resource host;
  void* p = host.allocate(4096);
  if (p == nullptr || reinterpret_cast<std::uintptr_t>(p) % frugal::default_alignment != 0) {
    std::puts("downstream: bad allocation");
    return 1;
  }
  std::memset(p, 0x5A, 4096);
  host.deallocate(p, 4096);
  std::printf("downstream: ok (frugal %s)\n", frugal::version());
  return 0;
}
