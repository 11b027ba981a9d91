// Small upstreams for tests: a budgeted host resource that fails on demand, a device-only fake,
// and a capturing misuse handler.
#pragma once

#include <frugal/error.hpp>
#include <frugal/mr/host_resource.hpp>

#include <cstddef>
#include <vector>

namespace frugal::testing {

/// Host memory with a byte budget; counts calls. Copies share nothing (hold it through ref()).
class budget_resource {
 public:
  explicit budget_resource(std::size_t budget = static_cast<std::size_t>(-1)) : budget_(budget) {}
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "budget_resource");
    if (bytes > budget_ - in_use_)
      throw out_of_memory(bytes, "budget exhausted", "budget_resource");
    void* p = host_.allocate(bytes, alignment);
    in_use_ += bytes;
    ++allocations;
    return p;
  }
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    host_.deallocate(p, bytes, alignment);
    in_use_ -= bytes;
    ++deallocations;
  }
  std::size_t in_use() const { return in_use_; }
  void set_budget(std::size_t budget) { budget_ = budget; }
  friend bool operator==(const budget_resource& a, const budget_resource& b) { return &a == &b; }
  friend void get_property(const budget_resource&, host_accessible) noexcept {}

  int allocations = 0;
  int deallocations = 0;

 private:
  host_resource host_;
  std::size_t budget_;
  std::size_t in_use_ = 0;
};

/// A device-only resource over host memory, to check property propagation.
struct fake_device_resource {
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    return host.allocate(bytes, alignment);
  }
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    host.deallocate(p, bytes, alignment);
  }
  host_resource host;
  friend bool operator==(const fake_device_resource&, const fake_device_resource&) { return true; }
  friend void get_property(const fake_device_resource&, device_accessible) noexcept {}
};

/// Installs a handler that records misuse reports for the lifetime of the object.
class capture_misuse {
 public:
  capture_misuse() {
    reports().clear();
    previous_ = set_misuse_handler(&record);
  }
  ~capture_misuse() { set_misuse_handler(previous_); }
  capture_misuse(const capture_misuse&) = delete;
  capture_misuse& operator=(const capture_misuse&) = delete;
  static std::vector<misuse_report>& reports() {
    static std::vector<misuse_report> r;
    return r;
  }

 private:
  static void record(const misuse_report& r) noexcept { reports().push_back(r); }
  misuse_handler previous_;
};

}  // namespace frugal::testing
