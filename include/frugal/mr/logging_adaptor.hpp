// frugal/mr/logging_adaptor.hpp: logs each allocate and free of any resource as CSV, RMM's format.
//   frugal::logging_adaptor logged{frugal::ref(pool), "allocations.csv"};
//   void* p = logged.allocate(256);   // "140213,1634567890.123456,allocate,0x7f..,256,0x0"
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace frugal {

/// @brief Wraps resource `R` (held by value; use frugal::ref to share one) and writes one CSV
/// line per allocation, failed allocation and free, in the format of RAPIDS RMM's
/// logging_resource_adaptor, so RMM's replay and analysis tools read it:
///
///     Thread,Time,Action,Pointer,Size,Stream
///     140213,1634567890.123456,allocate,0x7f3a40000000,256,0x0
///     140213,1634567890.123502,free,0x7f3a40000000,256,0x0
///
/// Thread is a number identifying the calling thread (the hash of its std::thread::id); Time is
/// seconds since the epoch with microseconds; Action is `allocate`, `free` or `allocate failure`
/// (Pointer 0x0); Size is the byte count requested; Stream is 0x0 (synchronous). Zero-byte
/// requests, frees of nullptr and calls rejected for a bad alignment are not logged. Each line is
/// written whole under a mutex, so threads never interleave within a line (the upstream itself is
/// not locked: see frugal::synchronized). A free is logged before the memory is returned, so in
/// the log a pointer is freed before it can be handed out again. Properties are those of the
/// upstream; an adaptor compares equal only to itself. See docs/concepts.md#resource.
template <resource R>
class logging_adaptor : public detail::forward_properties<logging_adaptor<R>, R> {
 public:
  /// @brief The CSV header, the first line of every log.
  static constexpr const char* header = "Thread,Time,Action,Pointer,Size,Stream";

  /// @brief Logs to `out`, which must outlive the adaptor. Writes the header line.
  /// @param upstream the resource that provides the memory; moved in
  /// @param out the stream to write to
  logging_adaptor(R upstream, std::ostream& out) : upstream_(std::move(upstream)), out_(&out) {
    write_header();
  }

  /// @brief Logs to the file at `path` (created or truncated). Writes the header line.
  /// @param upstream the resource that provides the memory; moved in
  /// @param path the log file
  /// @throws frugal::error if the file cannot be opened
  logging_adaptor(R upstream, const std::string& path)
      : upstream_(std::move(upstream)),
        file_(std::make_unique<std::ofstream>(path, std::ios::out | std::ios::trunc)) {
    FRUGAL_EXPECTS(file_->is_open(),
                   "logging_adaptor: cannot open log file '" + path + "': " + std::strerror(errno),
                   error);
    out_ = file_.get();
    write_header();
  }

  /// @brief Takes over the upstream and the log; the moved-from adaptor logs nothing more.
  logging_adaptor(logging_adaptor&& other) noexcept(std::is_nothrow_move_constructible_v<R>)
      : upstream_(std::move(other.upstream_)),
        file_(std::move(other.file_)),
        out_(std::exchange(other.out_, nullptr)) {}

  /// @brief Allocates from the upstream and logs `allocate`, or logs `allocate failure` and
  /// rethrows what the upstream threw.
  /// @param bytes size requested; 0 returns nullptr and logs nothing
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two (nothing logged); whatever the
  /// upstream throws.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    detail::check_alignment(alignment, "logging_adaptor");
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    try {
      p = upstream_.allocate(bytes, alignment);
    } catch (...) {
      write_line("allocate failure", nullptr, bytes);
      throw;
    }
    write_line("allocate", p, bytes);
    return p;
  }

  /// @brief Like allocate, but returns nullptr (logged as `allocate failure`) instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    void* p = detail::try_allocate(upstream_, bytes, alignment);
    write_line(p != nullptr ? "allocate" : "allocate failure", p, bytes);
    return p;
  }

  /// @brief Logs `free`, then returns `p` to the upstream. nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    write_line("free", p, bytes);
    upstream_.deallocate(p, bytes, alignment);
  }

  /// @brief Flushes the log stream.
  void flush() {
    std::lock_guard lock(mutex_);
    if (out_ != nullptr) out_->flush();
  }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor equals only itself.
  friend bool operator==(const logging_adaptor& a, const logging_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  void write_header() { *out_ << header << '\n'; }

  // Formats into a local buffer (no allocation) and writes the whole line under the lock; the
  // time is taken under the lock too, so times in the log never go backwards.
  void write_line(const char* action, const void* p, std::size_t bytes) noexcept {
    std::lock_guard lock(mutex_);
    if (out_ == nullptr) return;
    const auto since_epoch = std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    const std::size_t thread = std::hash<std::thread::id>{}(std::this_thread::get_id());
    char line[192];
    const int length =
        std::snprintf(line, sizeof line, "%zu,%lld.%06lld,%s,0x%" PRIxPTR ",%zu,0x0\n", thread,
                      static_cast<long long>(since_epoch / 1000000),
                      static_cast<long long>(since_epoch % 1000000), action,
                      reinterpret_cast<std::uintptr_t>(p), bytes);
    if (length <= 0) return;
    try {
      out_->write(line, length);
    } catch (...) {
      // A stream set to throw must not break a noexcept deallocate; its state shows the failure.
    }
  }

  R upstream_;
  std::unique_ptr<std::ofstream> file_;  // set when the adaptor opened the log itself
  std::ostream* out_ = nullptr;          // file_.get() or the caller's stream; null once moved from
  std::mutex mutex_;                     // one line at a time
};

}  // namespace frugal

static_assert(
    frugal::resource_with<frugal::logging_adaptor<frugal::host_resource>, frugal::host_accessible>);
