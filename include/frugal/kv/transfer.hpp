// frugal/kv/transfer.hpp: KV pages between processes and machines over UCX (target frugal::ucx).
// One agent per process registers a page_pool once, exports its metadata as a byte string for
// any side channel, and moves page-id lists to and from peers; see docs/transfer.md.
//   frugal::kv::transfer_agent agent{"prefill", cache.pages()};
//   send_to_peer(agent.metadata());   agent.load_peer(metadata_from_peer);
//   auto t = agent.write(seq.pages(), "decode", remote_pages, /*notification id=*/request);
//   t.wait(std::chrono::seconds(5));
#pragma once

#include <frugal/kv/cache.hpp>
#include <frugal/kv/page_pool.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace frugal::kv {

/// @brief A transfer or a peer failed (the peer died, the connection dropped, UCX refused an
/// operation). The message names the peer and, for a transfer, its notification id.
struct transfer_error : error {
  using error::error;
};

/// @brief The metadata blob's version (its fifth byte; see docs/transfer.md).
inline constexpr std::uint8_t transfer_metadata_version = 1;
/// @brief The notification message's version (its first byte).
inline constexpr std::uint8_t transfer_notification_version = 1;

/// @brief How an agent finds that a peer died. `ucx`: UCX's peer-failure handling (endpoint
/// error mode PEER); it needs transports that support it (tcp, InfiniBand), and UCX 1.13 then
/// moves RMA as active messages. `process`: the agent probes the peer's process (same machine
/// only, every `keepalive`) and UCX runs without error handling, so shared memory carries the
/// data (cma single-copy puts); UCX 1.13's shared-memory transports cannot report a dead peer.
/// Both ends must use the same mode.
enum class peer_failure_detection : std::uint8_t { ucx = 0, process = 1 };

/// @brief Options of a transfer_agent.
struct transfer_options {
  /// UCX transports (UCX_TLS syntax: "tcp", "shm", "self", "tcp,self"...); empty: UCX_TLS from
  /// the environment, else all. Both ends must share at least one.
  std::string transports{};
  peer_failure_detection failure_detection = peer_failure_detection::ucx;
  /// Largest single put or get: a merged run longer than this is posted in pieces (still one
  /// descriptor in descriptors()), so one huge run does not hold a lane for its whole length.
  std::size_t max_put_bytes = std::size_t{4} << 20;
  /// How often a peer is probed for liveness: UCX's keepalive (failure_detection ucx; 0: UCX's
  /// default, 20 s; a peer whose connection closes is reported at once anyway), or the process
  /// probe (failure_detection process; 0: every 100 ms). Short UCX keepalives report healthy
  /// peers of a loaded machine as failed.
  std::chrono::milliseconds keepalive{0};
};

/// @brief A notification from a peer: the data of a write into this agent's pages has arrived
/// (`write_done`), or a peer finished reading this agent's pages (`read_done`).
struct transfer_notification {
  enum class kind : std::uint8_t { write_done = 0, read_done = 1 };
  std::string peer;
  std::uint64_t id = 0;
  kind what = kind::write_done;
  std::uint32_t pages = 0;
  friend bool operator==(const transfer_notification&, const transfer_notification&) = default;
};

enum class transfer_status : std::uint8_t { pending, done, failed };

class transfer_agent;
namespace detail {
struct transfer_state;
}

/// @brief The handle of one posted write or read (see docs/concepts.md#handle): poll or wait on
/// it; copies share the transfer. Outlives its agent safely (it then reads failed).
class transfer {
 public:
  transfer() = default;
  /// @brief Progresses the agent's worker once and @returns the status.
  transfer_status poll();
  /// @brief Progresses until the transfer is done or failed, or `timeout` passes.
  /// @returns the status then (pending after a timeout: the transfer goes on)
  transfer_status wait(std::chrono::milliseconds timeout);
  /// @brief The status, without progressing.
  transfer_status status() const noexcept;
  /// @brief Why it failed ("" unless failed): names the peer and the notification id.
  const std::string& error() const noexcept;
  std::uint64_t id() const noexcept;
  const std::string& peer() const noexcept;
  /// @brief Pages moved, and the descriptors (contiguous runs on both sides) they took.
  std::size_t pages() const noexcept;
  std::size_t descriptors() const noexcept;
  std::size_t bytes() const noexcept;
  bool empty() const noexcept { return state_ == nullptr; }

 private:
  friend class transfer_agent;
  explicit transfer(std::shared_ptr<detail::transfer_state> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::transfer_state> state_;
};

/// @brief A run of pages contiguous on both sides: pages [local, local + count) move to or from
/// [remote, remote + count). What one UCX put or get moves.
struct page_run {
  page_id local = 0;
  page_id remote = 0;
  std::uint32_t count = 0;
  friend bool operator==(const page_run&, const page_run&) = default;
};

/// @brief Merges page pairs (local[i], remote[i]) into runs contiguous on both sides, in order.
/// @returns runs whose counts sum to local.size(); O(n)
std::vector<page_run> merge_page_runs(std::span<const page_id> local,
                                      std::span<const page_id> remote);

/// @brief True when this build has UCX (FRUGAL_ENABLE_UCX); without it a transfer_agent's
/// constructor throws.
bool transfer_available() noexcept;

/// @brief One process's end of KV page transfers over UCX (UCP): a worker, the pool's memory
/// registered once (memory handle + packed remote key), and one endpoint per loaded peer.
/// Not thread safe; progress happens inside poll(), wait(), progress() and take_notifications().
///
/// Layouts must be equal on both ends (page size included): a transfer between pools of
/// different layouts is refused with the reason, never re-tiled (see docs/transfer.md).
class transfer_agent {
 public:
  /// @param name this agent's name as peers see it (in their errors and notifications)
  /// @param pool the pages to register; must outlive the agent and stay where it is
  /// @throws transfer_error when UCX is missing or cannot be set up; invalid_argument for an
  ///   empty name or one over 255 bytes, or a zero max_put_bytes
  transfer_agent(std::string name, const page_pool& pool, transfer_options options = {});
  ~transfer_agent();
  transfer_agent(const transfer_agent&) = delete;
  transfer_agent& operator=(const transfer_agent&) = delete;

  const std::string& name() const noexcept;
  /// @brief The opaque blob a peer passes to load_peer (see docs/transfer.md for its contents).
  std::string metadata() const;
  /// @brief Connects to the agent `metadata` describes. @returns its name
  /// @throws invalid_argument for a malformed blob, another version, or a name already loaded
  /// @throws transfer_error when UCX cannot reach it
  std::string load_peer(std::string_view metadata);
  /// @brief Closes the endpoint to `peer` (its transfers fail); unknown names are ignored.
  void remove_peer(std::string_view peer);
  bool has_peer(std::string_view peer) const noexcept;
  /// @brief The peer's failure ("" while it is healthy); a failed peer stays failed.
  std::string peer_error(std::string_view peer) const;
  /// @brief Names of peers that failed since the last call (each reported once).
  std::vector<std::string> take_failed_peers();

  /// @brief Writes local pages into the peer's pages: local[i] -> remote[i]. After the data, the
  /// peer receives a write_done notification with `notification_id`.
  /// @throws invalid_argument, before anything moves, for lists of different or zero length,
  ///   a local page outside the pool or not allocated, a remote page outside the peer's pool,
  ///   a remote page named twice, or a peer whose layout differs (the reason says how)
  /// @throws transfer_error for an unknown or failed peer
  transfer write(std::span<const page_id> local, std::string_view peer,
                 std::span<const page_id> remote, std::uint64_t notification_id);
  /// @brief Reads the peer's pages into local pages: remote[i] -> local[i]; then the peer
  /// receives a read_done notification (it may release its pages). Refusals as write (a local
  /// page named twice is refused).
  transfer read(std::span<const page_id> local, std::string_view peer,
                std::span<const page_id> remote, std::uint64_t notification_id);

  /// @brief Progresses the worker: completions, notifications, failures.
  void progress();
  /// @brief Progresses, then @returns the notifications received since the last call, in order.
  std::vector<transfer_notification> take_notifications();
  /// @brief Transfers posted and not yet done or failed.
  std::size_t active_transfers() const noexcept;
  /// @brief True when UCX here can register device (CUDA) memory; Debian's UCX cannot.
  bool supports_device_memory() const noexcept;
  /// @brief UCX's description of the endpoint to `peer`: its lanes and the transport of each
  /// (ucp_ep_print_info); "" for an unknown peer.
  std::string peer_endpoint_info(std::string_view peer) const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

// ---- the cache's side ----------------------------------------------------------------------

/// @brief The receiving end of sequences sent by peers into a kv::cache: pages are reserved
/// under the cache's watermark rules (try_add_sequence), the data awaited with a deadline, and
/// the pages registered for prefix hits once the write_done notification arrives. A peer's
/// failure or a passed deadline releases the reserved pages.
///   kv::sequence_receiver rx{cache, agent};
///   auto pages = rx.reserve(request, "prefill", prompt, deadline);   // send pages to the peer
///   for (auto& done : rx.poll()) ...                                  // arrived or failed
class sequence_receiver {
 public:
  using clock = std::chrono::steady_clock;
  struct arrival {
    std::uint64_t id = 0;
    std::optional<kv::sequence> sequence;  ///< set when the data arrived
    std::string error;                     ///< why not, otherwise
  };

  sequence_receiver(cache& kv, transfer_agent& agent) : cache_(&kv), agent_(&agent) {}

  /// @brief Reserves a sequence of `tokens` for the peer to write, unless the cache cannot hold
  /// it now while keeping its watermark free. Full pages already in the prefix cache are
  /// shared, not reserved: the peer writes only pages [cached_tokens / page_size, end).
  /// @returns the pages the peer must write (may be empty: all cached), or nullopt
  /// @throws invalid_argument for an id already awaited, or as try_add_sequence
  std::optional<std::vector<page_id>> reserve(std::uint64_t id, std::string peer,
                                              std::span<const token_id> tokens,
                                              clock::time_point deadline,
                                              std::uint64_t extra_key = 0);
  /// @brief Prompt tokens of reservation `id` already held from the prefix cache.
  std::size_t cached_tokens(std::uint64_t id) const;
  /// @brief Progresses the agent; @returns reservations completed (data arrived: pages
  /// registered for prefix hits) or failed (peer failure or deadline: pages released).
  std::vector<arrival> poll(clock::time_point now = clock::now());
  std::size_t pending() const noexcept { return pending_.size(); }

 private:
  struct waiting {
    std::uint64_t id;
    std::string peer;
    kv::sequence sequence;
    clock::time_point deadline;
    bool arrived = false;
  };
  cache* cache_;
  transfer_agent* agent_;
  std::vector<waiting> pending_;
};

/// @brief The sending end: holds each sequence's pages until its write completes, then
/// releases them (or hands them back on failure, for the engine to retry or drop).
class sequence_sender {
 public:
  struct completion {
    std::uint64_t id = 0;
    std::string error;  ///< "" when the data arrived
  };
  explicit sequence_sender(transfer_agent& agent) : agent_(&agent) {}

  /// @brief Writes `seq`'s pages from index `first_page` on into `remote` (as many as remote
  /// has), keeping `seq` until the transfer ends. @throws as transfer_agent::write
  const transfer& send(kv::sequence seq, std::size_t first_page, std::string_view peer,
                       std::span<const page_id> remote, std::uint64_t id);
  /// @brief Progresses; @returns transfers ended since the last call. Their sequences are
  /// released.
  std::vector<completion> poll();
  std::size_t in_flight() const noexcept { return sending_.size(); }

 private:
  struct sending {
    kv::sequence sequence;
    transfer handle;
  };
  transfer_agent* agent_;
  std::vector<sending> sending_;
};

}  // namespace frugal::kv
