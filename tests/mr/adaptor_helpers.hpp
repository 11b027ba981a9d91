// What the adaptor tests (tests/mr/*_adaptor.test.cpp, synchronized.test.cpp) share: an upstream
// that counts every call and fails past a capacity, the bad alignments every adaptor must refuse,
// and two small text helpers for reading reports and logs.
#pragma once

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace frugal::testing {

/// Host memory with a settable capacity that counts its calls; adaptors share it through
/// frugal::ref so a test can see exactly what reached the upstream. Unlike budget_resource it
/// counts every call, failed ones and nullptr frees included, leaves alignment checks to the
/// adaptor above it, and names itself "counting_resource" in its errors.
struct counting_resource {
  std::size_t capacity = std::numeric_limits<std::size_t>::max();
  std::size_t in_use = 0;  // bytes handed out and not yet returned
  int allocate_calls = 0;
  int deallocate_calls = 0;
  host_resource host;

  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    ++allocate_calls;
    if (bytes > capacity - in_use) {
      throw out_of_memory(bytes, "capacity " + std::to_string(capacity), "counting_resource");
    }
    void* p = host.allocate(bytes, alignment);
    in_use += bytes;
    return p;
  }
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    ++deallocate_calls;
    in_use -= bytes;
    host.deallocate(p, bytes, alignment);
  }
  friend bool operator==(const counting_resource& a, const counting_resource& b) noexcept {
    return &a == &b;
  }
  friend void get_property(const counting_resource&, host_accessible) noexcept {}
};

/// Alignments that are not powers of two: every adaptor refuses them before its upstream.
inline constexpr std::size_t bad_alignments[] = {0, 3, 48, 257};

/// @returns `p` as the adaptors print pointers: "0x" and lowercase hex digits.
inline std::string hex(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(p));
  return text;
}

/// @returns the lines of `text`, without their '\n'.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace frugal::testing
