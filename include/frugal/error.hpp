// frugal/error.hpp: the error model. Failures throw typed exceptions whose messages carry
// file:line; misuse found in noexcept paths (double free, unknown pointer) goes to a settable
// misuse handler. Every throw of a frugal error goes through a macro here (scripts/check-throws
// enforces it):
//   FRUGAL_EXPECTS(alignment != 0, "alignment must be non-zero", frugal::invalid_argument);
//   FRUGAL_FAIL("unknown policy \"" + name + "\"", frugal::invalid_argument);
//   FRUGAL_OUT_OF_MEMORY(bytes, frugal::describe(pool.stats()), "pool_resource");
#pragma once

#include <frugal/config.hpp>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace frugal {

/// @brief Base of frugal's own errors (not of out_of_memory, which is a std::bad_alloc).
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// @brief A caller passed a value outside a function's contract; nothing was changed.
struct invalid_argument : error {
  using error::error;
};

/// @brief A CUDA runtime or driver call failed; the message names the call and the error.
struct cuda_error : error {
  using error::error;
};

/// @brief An allocation could not be satisfied. The allocator is exactly as it was before the call.
///
/// what() reads "out of memory: <who> could not allocate <N> bytes (<human>); <state>", where
/// state names bytes in use, reserved and the largest free block of the allocator that failed.
class out_of_memory : public std::bad_alloc {
 public:
  /// @param requested_bytes the size the caller asked for
  /// @param state the allocator's state, e.g. "in use 1.0 MiB, reserved 2.0 MiB, largest free block
  /// 0 B"
  /// @param who the allocator, e.g. "pool_resource"
  out_of_memory(std::size_t requested_bytes, std::string state, std::string who = "frugal");

  const char* what() const noexcept override { return message_.c_str(); }
  std::size_t requested_bytes() const noexcept { return requested_bytes_; }
  const std::string& state() const noexcept { return state_; }
  /// The resource that could not allocate, e.g. "pool_resource".
  const std::string& who() const noexcept { return who_; }

 private:
  std::size_t requested_bytes_;
  std::string state_;
  std::string who_;
  std::string message_;
};

/// @brief "1.50 MiB"-style rendering of a byte count, exact below 1 KiB.
std::string format_bytes(std::size_t bytes);

// ---------------------------------------------------------------------------------------------
// Misuse in noexcept paths

/// @brief What kind of misuse a deallocation (or similar noexcept call) detected.
enum class misuse_kind { unknown_pointer, double_free, size_mismatch, invalid_marker, other };

/// @brief A report handed to the misuse handler. `message` is complete and human-readable.
struct misuse_report {
  misuse_kind kind;
  const char* resource;  ///< the resource that detected it, e.g. "pool_resource"
  const void* pointer;   ///< the offending pointer, if any
  std::size_t bytes;     ///< the size the caller passed
  std::string message;
};

/// @brief Called for every misuse report. Must not throw.
using misuse_handler = void (*)(const misuse_report&) noexcept;

namespace detail {
inline std::atomic<misuse_handler> g_misuse_handler{nullptr};
}

/// @brief Installs `handler` (nullptr restores the default) and returns the previous one.
/// The default prints the message to stderr and, when FRUGAL_DEBUG_LEVEL >= 1, aborts so that a
/// test fails loudly.
inline misuse_handler set_misuse_handler(misuse_handler handler) noexcept {
  return detail::g_misuse_handler.exchange(handler);
}

namespace detail {
/// Reports misuse through the installed handler; the allocator then returns without changes.
inline void report_misuse(misuse_kind kind, const char* resource, const void* pointer,
                          std::size_t bytes, std::string message) noexcept {
  misuse_report report{kind, resource, pointer, bytes,
                       std::string(resource) + ": " + std::move(message)};
  if (auto handler = g_misuse_handler.load()) {
    handler(report);
    return;
  }
  std::fprintf(stderr, "frugal misuse: %s\n", report.message.c_str());
#if FRUGAL_DEBUG_LEVEL >= 1
  std::abort();
#endif
}

[[noreturn]] void assertion_failed(const char* condition, const char* message, const char* file,
                                   int line) noexcept;

/// Throws `Error` with "where: message"; `where` is the place the failure is about.
template <class Error>
[[noreturn]] void throw_error(std::string_view where, std::string_view message) {
  std::string text(where);
  text += ": ";
  text += message;
  throw Error(text);
}

/// Throws `Error` with "file:line: message".
template <class Error>
[[noreturn]] void throw_error(const char* file, int line, std::string_view message) {
  throw_error<Error>(std::string(file) + ':' + std::to_string(line), message);
}

/// Throws out_of_memory; its what() has a fixed form (see out_of_memory) and no file:line.
[[noreturn]] inline void throw_out_of_memory(std::size_t requested_bytes, std::string state,
                                             std::string who) {
  throw out_of_memory(requested_bytes, std::move(state), std::move(who));
}
}  // namespace detail
}  // namespace frugal

/// Throws `error_type` with "file:line: message": a failure with no condition left to test.
#define FRUGAL_FAIL(message, error_type) \
  ::frugal::detail::throw_error<error_type>(__FILE__, __LINE__, (message))

/// Throws `error_type` with "where: message", for a failure whose place is the caller's, not
/// frugal's source: expect_no_outstanding's "after the step", say.
#define FRUGAL_FAIL_AT(where, message, error_type) \
  ::frugal::detail::throw_error<error_type>((where), (message))

/// Throws frugal::out_of_memory: `who` (the resource) could not allocate `bytes`; `state` says
/// what it holds.
#define FRUGAL_OUT_OF_MEMORY(bytes, state, who) \
  ::frugal::detail::throw_out_of_memory((bytes), (state), (who))

/// Throws `error_type` with "file:line: message" unless `cond` holds.
#define FRUGAL_EXPECTS(cond, message, error_type) \
  do {                                            \
    if (!(cond)) [[unlikely]]                     \
      FRUGAL_FAIL((message), error_type);         \
  } while (0)

/// Throws frugal::cuda_error naming the call and the CUDA error unless it returns cudaSuccess.
/// The runtime's last error is cleared (cudaGetLastError) before the throw: the failure is
/// reported by the exception, and left pending it would make the next successful launch's
/// `FRUGAL_CUDA_TRY(cudaGetLastError())` throw a false error (an out-of-memory from
/// cudaMallocAsync, say). Sticky errors (a kernel's illegal address) stay, as CUDA keeps them.
#define FRUGAL_CUDA_TRY(call)                                                                \
  do {                                                                                       \
    const auto frugal_cuda_status_ = (call);                                                 \
    if (frugal_cuda_status_ != cudaSuccess) [[unlikely]] {                                   \
      (void)cudaGetLastError();                                                              \
      FRUGAL_FAIL(std::string(#call) + " failed: " + cudaGetErrorName(frugal_cuda_status_) + \
                      ": " + cudaGetErrorString(frugal_cuda_status_),                        \
                  ::frugal::cuda_error);                                                     \
    }                                                                                        \
  } while (0)

#if FRUGAL_DEBUG_LEVEL >= 1
/// Cheap debug check (FRUGAL_DEBUG_LEVEL >= 1): aborts naming the condition and file:line.
#define FRUGAL_ASSERT(cond, message)                                            \
  do {                                                                          \
    if (!(cond)) [[unlikely]]                                                   \
      ::frugal::detail::assertion_failed(#cond, (message), __FILE__, __LINE__); \
  } while (0)
#else
#define FRUGAL_ASSERT(cond, message) ((void)0)
#endif

#if FRUGAL_DEBUG_LEVEL >= 2
/// Expensive debug check (FRUGAL_DEBUG_LEVEL >= 2), e.g. walking every free list.
#define FRUGAL_ASSERT_EXPENSIVE(cond, message) FRUGAL_ASSERT(cond, message)
#else
#define FRUGAL_ASSERT_EXPENSIVE(cond, message) ((void)0)
#endif
