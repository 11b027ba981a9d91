// frugal/sim/trace.hpp: allocation traces. Parses the CSV that RAPIDS RMM's logging adaptor (and
// frugal::logging_adaptor) writes, replays it against frugal's allocators or a naive baseline, and
// generates a synthetic trace of LLM serving on one GPU for fragmentation studies.
//   std::ifstream in{"trace.csv"};
//   frugal::sim::trace t = frugal::sim::parse_rmm_log(in, "trace.csv");
//   frugal::sim::replay_result r = frugal::sim::replay(t.events,
//   frugal::sim::allocator_kind::pool);
#pragma once

#include <frugal/sim/workload.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::sim {

// ---- events and the RMM log format ---------------------------------------------------------

/// @brief What one row of an allocation log records.
enum class trace_action : std::uint8_t {
  allocate,          ///< "allocate": `pointer` now holds `size` bytes
  free,              ///< "free": `pointer` (of `size` bytes) was returned
  allocate_failure,  ///< "allocate failure": a request of `size` bytes failed when logged
};

/// @brief One row of an allocation log.
struct trace_event {
  trace_action action = trace_action::allocate;
  std::uint64_t pointer = 0;  ///< the address as logged (an identifier; never dereferenced)
  std::size_t size = 0;       ///< bytes requested
  std::uint64_t thread = 0;   ///< the logging thread's identifier
  double time = 0;            ///< seconds (RMM: since the epoch, microsecond resolution)
  std::uint64_t stream = 0;   ///< the CUDA stream as logged (0: synchronous)
  std::size_t line = 0;       ///< 1-based line in the source (0 for generated events)

  friend bool operator==(const trace_event&, const trace_event&) = default;
};

/// @brief A parsed log: its events in file order and what the parser counted.
struct trace {
  std::string source;               ///< the name given to the parser, used in messages
  std::vector<trace_event> events;  ///< allocate, free and allocate_failure rows, in order
  std::size_t allocations = 0;      ///< "allocate" rows
  std::size_t frees = 0;            ///< "free" rows
  std::size_t logged_failures = 0;  ///< "allocate failure" rows (replay skips them)
};

/// @brief The header line of the format: "Thread,Time,Action,Pointer,Size,Stream".
inline constexpr std::string_view rmm_log_header = "Thread,Time,Action,Pointer,Size,Stream";

/// @brief Parses a log in RAPIDS RMM's logging_resource_adaptor CSV format:
///
///     Thread,Time,Action,Pointer,Size,Stream
///     140213,1634567890.123456,allocate,0x7f3a40000000,256,0x0
///
/// Thread is a decimal (or 0x hex) integer; Time a decimal number (RMM's newer logs write a
/// clock time such as "09:15:26.123456", which is also accepted and read as seconds since
/// midnight); Action one of allocate, free, "allocate failure"; Pointer a hex address with 0x (or
/// a decimal one); Size a decimal byte count; Stream hex with 0x or decimal. Fields may carry
/// surrounding spaces; lines may end in CRLF; blank lines are skipped; the file may end without
/// a newline. Nothing is checked about pairing: a free of a pointer never allocated is a warning
/// of replay(), not an error here.
/// @param in the log; read to its end
/// @param source_name names the log in error messages ("trace.csv")
/// @returns every event, each with its line number
/// @throws frugal::error "SOURCE:LINE: what is wrong" for an empty input, a wrong header, a row
///   with the wrong number of fields, an unknown action, a number that does not parse or
///   overflows, or an allocate row of 0 bytes or at pointer 0
trace parse_rmm_log(std::istream& in, std::string source_name = "<trace>");

/// @brief Opens and parses the file at `path` (see parse_rmm_log(std::istream&, ...)).
/// @throws frugal::error naming the path when it cannot be opened, or as the parser does
trace parse_rmm_log_file(const std::string& path);

/// @brief Writes `events` in the format parse_rmm_log reads (header first), e.g. to save a
/// synthetic trace. Pointers and streams are written as 0x hex, times with 6 decimals.
void write_rmm_log(std::ostream& out, std::span<const trace_event> events);

// ---- replay --------------------------------------------------------------------------------

/// @brief The allocators replay() knows.
///   pool:      frugal::pool_resource growing in place over the virtual range (one expandable
///              segment); with replay_options::pool_preallocate it reserves the cap up front
///                                                                             (cap: max_size)
///   arena:     frugal::arena_resource; a free reclaims memory only when it is the most recent
///              live block (a bump allocator), so most frees reclaim nothing    (cap: max_size)
///   first_fit: frugal::sim::first_fit_device, a naive address-ordered first-fit heap over one
///              fixed range, the cudaMalloc-without-caching baseline       (cap: the range size)
///   malloc:    std::malloc / std::free on this host; reserved == in use      (cap: on in use)
///   cuda:      cudaMalloc through frugal::cuda_resource; only in programs built with CUDA, on a
///              machine with a device (see replay_backend); replay() itself refuses it
/// pool, arena and first_fit run over a frugal::virtual_resource with commit = false: address
/// space only, never touched, so a trace of an 80 GiB device replays on a small host.
enum class allocator_kind : std::uint8_t { pool, arena, first_fit, malloc, cuda };

/// @brief "pool", "arena", "first-fit", "malloc" or "cuda".
std::string_view to_string(allocator_kind kind) noexcept;

/// @brief The allocator named `name` (as to_string writes it; "first_fit" is accepted too).
/// @throws frugal::invalid_argument listing the known names
allocator_kind parse_allocator_kind(std::string_view name);

/// @brief No cap on reserved bytes.
inline constexpr std::size_t no_cap = std::numeric_limits<std::size_t>::max();

/// @brief One point of a replay's timeline: the largest in-use and reserved byte counts seen in
/// the events since the previous point, up to and including event `event` (0-based index into
/// the replayed events).
struct timeline_sample {
  std::size_t event = 0;
  std::size_t bytes_in_use = 0;
  std::size_t bytes_reserved = 0;
};

/// @brief Settings of a replay beyond the allocator and the cap.
struct replay_options {
  std::size_t timeline_points = 1000;     ///< at most this many timeline samples (0: none)
  std::size_t max_warning_messages = 20;  ///< warnings kept as text (all are counted)
  /// pool under a cap: reserve the whole cap up front as one chunk, as a server that sizes itself
  /// for a device does (reserved is then the cap from the first event); false (the default): the
  /// pool grows in place over its virtual range, up to the cap
  bool pool_preallocate = false;
};

/// @brief What a replay measured. "In use" counts the bytes the trace holds live (requested
/// sizes of allocations that succeeded and are not freed yet), the same for every allocator;
/// "reserved" counts what the allocator holds from the device (pool and arena: bytes obtained
/// from their upstream; first-fit: the high-water offset; malloc and cuda: in use).
struct replay_result {
  std::string allocator;                  ///< to_string of the kind, or the backend's name
  std::size_t cap = no_cap;               ///< the cap on reserved bytes replayed under
  std::size_t events = 0;                 ///< allocate and free events replayed
  std::size_t allocations = 0;            ///< allocate events
  std::size_t frees = 0;                  ///< free events that released a live allocation
  std::size_t zero_byte_allocations = 0;  ///< allocate events of 0 bytes (counted, not warned)
  double seconds = 0;                     ///< wall time of the replay loop
  double events_per_second = 0;           ///< events / seconds
  std::size_t peak_bytes_in_use = 0;
  std::size_t peak_bytes_reserved = 0;
  std::size_t failed_allocations = 0;   ///< allocations the allocator refused under the cap
  std::size_t failed_bytes = 0;         ///< bytes those refused allocations asked for
  std::size_t first_failure_event = 0;  ///< index of the first refused allocation (if any)
  std::size_t live_bytes_at_end = 0;    ///< in use after the last event (never freed)
  std::size_t live_allocations_at_end = 0;
  std::size_t bytes_reserved_at_end = 0;
  std::size_t logged_failures = 0;  ///< "allocate failure" rows, skipped
  /// Warnings: frees of a pointer that is not live (never allocated, or already freed),
  /// allocations of a pointer that is still live (the older block is kept as leaked), and frees
  /// whose size differs from the allocation's (the allocation's size is used).
  std::size_t unknown_frees = 0;
  std::size_t duplicate_allocations = 0;
  std::size_t size_mismatches = 0;
  std::size_t warnings = 0;                   ///< the three above, summed
  std::vector<std::string> warning_messages;  ///< "line N: ..." for the first few
  std::vector<timeline_sample> timeline;
};

/// @brief A memory source to replay against, for allocators replay() does not build itself
/// (e.g. cudaMalloc in a program linked with frugal::cuda).
class replay_backend {
 public:
  virtual ~replay_backend() = default;
  /// @returns the name reported in replay_result::allocator
  virtual std::string name() const = 0;
  /// @returns memory for `bytes` bytes, or nullptr when refused (counted as a failure)
  virtual void* try_allocate(std::size_t bytes) noexcept = 0;
  /// @brief Returns memory from try_allocate, with the size it was asked for.
  virtual void deallocate(void* p, std::size_t bytes) noexcept = 0;
  /// @returns bytes held from the device now (called after every event: keep it cheap)
  virtual std::size_t bytes_reserved() const noexcept = 0;
};

/// @brief Replays `events` in order against a fresh allocator of kind `kind`, reserved bytes
/// capped at `cap_bytes`. Threads and streams are ignored: events run one after another on the
/// calling thread. A pointer's later free uses the size of its allocation; a free of a pointer
/// whose allocation failed under the cap is skipped silently. Memory is never touched.
/// @param events as parse_rmm_log or serving_trace returns them
/// @param kind the allocator; allocator_kind::cuda throws (see replay_backend)
/// @param cap_bytes the most bytes the allocator may reserve; no_cap for none
/// @throws frugal::invalid_argument for allocator_kind::cuda, or a cap of 0
replay_result replay(std::span<const trace_event> events, allocator_kind kind,
                     std::size_t cap_bytes = no_cap, const replay_options& options = {});

/// @brief Replays `events` against `backend` (no cap of its own: the backend enforces any).
replay_result replay(std::span<const trace_event> events, replay_backend& backend,
                     const replay_options& options = {});

// ---- a synthetic serving trace -------------------------------------------------------------

/// @brief Shape of the synthetic serving trace. Sizes scale with gpu_memory (the defaults model
/// Llama-3-8B in FP16 on an 80 GiB device); event counts do not.
struct serving_trace_options {
  std::size_t gpu_memory = std::size_t{80} << 30;  ///< the device the engine sizes itself for
  /// the engine admits work while bytes in use stay under this share of gpu_memory
  double target_utilization = 0.90;
  std::size_t steps = 600;  ///< engine steps generated (about 250 events each)
  std::uint64_t seed = 1;
  double arrival_rate = 10.0;  ///< mean requests arriving per step (Poisson; saturates)
  /// Request lengths (frugal/sim/workload.hpp): ShareGPT's by default, lognormal draws clipped
  /// to lengths.max_len tokens. A workload::fixed request beyond max_len is refused.
  length_options lengths{};
  std::uint32_t max_batched_tokens = 8192;  ///< prefill tokens per step
  std::uint32_t layers = 32;                ///< transformer layers (events per step scale with it)
};

/// @brief A deterministic allocation trace (same options, same events) of an LLM server on one
/// GPU: weights allocated once, then per step the activations and intermediates of every layer,
/// sized by the live batch's tokens; per sequence a KV extent allocated at prefill and further
/// extents (of growing size) as it decodes, all freed when it finishes; a small per-request state
/// that lives as long as the request. The engine admits and grows sequences only while the
/// trace's bytes in use stay under target_utilization x gpu_memory, so any allocator that fails
/// under a cap of gpu_memory fails because of fragmentation, not demand. Pointers are
/// identifiers (1, 2, 3, ...), times are the step number.
/// @throws frugal::invalid_argument for options out of range (gpu_memory 0, a utilization outside
///   (0, 1], lengths length_sampler refuses, fixed lengths beyond lengths.max_len, ...), or a
///   target_utilization x gpu_memory too small for the weights and one step
std::vector<trace_event> serving_trace(const serving_trace_options& options = {});

}  // namespace frugal::sim
