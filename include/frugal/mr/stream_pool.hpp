// frugal/mr/stream_pool.hpp: a stream-ordered pool. A block freed on a stream is reused at once
// by that stream; another stream gets it only after waiting on an event recorded at the free.
//   frugal::stream_pool_resource pool{frugal::ref(gpu), frugal::cuda_stream_policy{}};
//   void* p = pool.allocate_async(bytes, 256, compute);  pool.deallocate_async(p, bytes, 256, compute);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/pool.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace frugal {

/// @brief The stream and event operations a stream_pool_resource needs, so that the same pool
/// logic runs over CUDA (cuda_stream_policy: cudaEvent_t) and over a fake stream in host tests.
/// Every operation is on the host; none blocks except synchronize.
///   create_event(): a new event;  destroy_event(e)
///   record(e, s): e completes when the work enqueued on s so far has
///   wait(s, e): work enqueued on s later starts after e completes (no host wait)
///   synchronize(e): the host waits until e completes
///   query(e): whether e has completed (no wait)
///   default_stream(): the stream allocate() and deallocate() use
template <class P>
concept stream_policy =
    std::equality_comparable<typename P::stream_type> &&
    requires(P& p, typename P::stream_type s, typename P::event_type e) {
      { p.create_event() } -> std::same_as<typename P::event_type>;
      p.destroy_event(e);
      p.record(e, s);
      p.wait(s, e);
      p.synchronize(e);
      { p.query(e) } -> std::convertible_to<bool>;
      { p.default_stream() } -> std::same_as<typename P::stream_type>;
    };

/// @brief Free bytes one stream holds in a stream_pool_resource (see free_by_stream()).
template <class Stream>
struct stream_free_bytes {
  Stream stream;
  std::size_t bytes = 0;   ///< freed on this stream, not yet reused or merged
  std::size_t blocks = 0;
};

/// @brief Stream-ordered pool (see docs/mr.md#stream-ordered-pool), modelled on CCCL's
/// stream-ordered resource: allocate_async(bytes, alignment, stream) and
/// deallocate_async(p, bytes, alignment, stream) over a pool_resource that holds all memory.
///
/// - A block freed on stream S waits in S's free list, with S's event recorded at the free.
///   allocate_async on S takes it back at once, with no event operation.
/// - Another stream T takes blocks freed on S only after `wait(T, event of S)`: the pool makes
///   the wait, then moves all of S's free blocks to T's list (T has now seen every free on S).
/// - Order of search for a request on T: T's own list (best fit, at most 1/8 larger than the
///   request), the pool's free memory, other streams' lists (with the wait), blocks of streams
///   whose events have completed (query: no wait), growth from the upstream, and last every
///   stream's blocks after synchronizing on its event. Memory free on some stream is never the
///   cause of an out_of_memory; its message lists the bytes each stream had free.
///
/// Rule for streams: before a stream is destroyed, call release_stream(s): it synchronizes on
/// the stream's event, returns its free blocks to the shared pool and forgets the stream. A block
/// freed on a stream that is destroyed without it may be handed to another stream after a wait
/// on an event of a destroyed stream (undefined in CUDA).
///
/// Costs: O(log n) in the stream's list plus the pool's O(1), one hash lookup; O(streams) when
/// the request goes to other streams. Not thread safe.
template <resource Upstream, stream_policy Policy>
class stream_pool_resource
    : public detail::forward_properties<stream_pool_resource<Upstream, Policy>, Upstream> {
 public:
  using stream_type = typename Policy::stream_type;
  using event_type = typename Policy::event_type;

  /// @param upstream where the pool's memory comes from
  /// @param policy the stream and event operations
  /// @param options the pool's growth policy (pool_options)
  stream_pool_resource(Upstream upstream, Policy policy, pool_options options = {})
      : pool_(std::move(upstream), options), policy_(std::move(policy)) {}

  stream_pool_resource(const stream_pool_resource&) = delete;
  stream_pool_resource& operator=(const stream_pool_resource&) = delete;

  /// Synchronizes on every stream's event and returns every block to the pool, which returns
  /// its memory to the upstream. Blocks still allocated become invalid.
  ~stream_pool_resource() {
    for (std::size_t s = 0; s < streams_.size(); ++s) merge_stream(s, true);
    for (stream_state& st : streams_) policy_.destroy_event(st.event);
  }

  /// @brief `bytes` aligned to `alignment` for use on `stream`, in stream order.
  /// @returns nullptr for zero bytes
  /// @throws invalid_argument for an alignment that is not a power of two (nothing changes)
  /// @throws out_of_memory naming the request, the pool's state and the bytes free on each
  ///         stream, after every stream's free blocks were merged and the upstream refused
  void* allocate_async(std::size_t bytes, std::size_t alignment, stream_type stream) {
    detail::check_alignment(alignment, "stream_pool_resource");
    if (bytes == 0) return nullptr;
    std::string free_before;
    void* p = try_allocate_async(bytes, alignment, stream, &free_before);
    if (p == nullptr) [[unlikely]]
      throw out_of_memory(bytes,
                          describe(pool_.stats()) + "; free per stream before merging: " +
                              (free_before.empty() ? std::string("none") : free_before),
                          "stream_pool_resource");
    return p;
  }

  /// @brief As allocate_async, but returns nullptr instead of throwing.
  void* try_allocate_async(std::size_t bytes, std::size_t alignment, stream_type stream) noexcept {
    return try_allocate_async(bytes, alignment, stream, nullptr);
  }

  /// @brief Returns a block in stream order: it is free for `stream` at once and for other streams
  /// after they wait on an event recorded on `stream` now. A stream the pool has not seen is
  /// added. Misuse (a pointer the pool did not hand out, a double free, a size other than the one
  /// allocated) goes to the misuse handler and changes nothing.
  void deallocate_async(void* p, std::size_t bytes, [[maybe_unused]] std::size_t alignment,
                        stream_type stream) noexcept {
    if (p == nullptr) return;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    auto it = records_.find(address);
    if (it == records_.end()) [[unlikely]] {
      detail::report_misuse(misuse_kind::unknown_pointer, "stream_pool_resource", p, bytes,
                            "unknown pointer: not allocated from this pool");
      return;
    }
    record& r = it->second;
    if (r.stream != live) [[unlikely]] {
      detail::report_misuse(misuse_kind::double_free, "stream_pool_resource", p, bytes,
                            "double free: " + std::to_string(bytes) +
                                " bytes at a pointer that is already free");
      return;
    }
    if (r.requested != bytes) [[unlikely]] {
      detail::report_misuse(misuse_kind::size_mismatch, "stream_pool_resource", p, bytes,
                            "size mismatch: block was allocated with " +
                                std::to_string(r.requested) + " bytes, freed with " +
                                std::to_string(bytes));
      return;
    }
    std::size_t s;
    try {
      s = stream_index(stream);
      stream_state& st = streams_[s];
      st.free_list.emplace(rounded(r.block_bytes), address);
    } catch (...) {  // host memory for the free list ran out: the block goes back in full
      release_block(it);
      return;
    }
    stream_state& st = streams_[s];
    policy_.record(st.event, stream);
    st.free_bytes += rounded(r.block_bytes);
    r.stream = static_cast<std::uint32_t>(s);
    bytes_in_use_ -= bytes;
    --allocations_;
  }

  /// @brief allocate_async on the policy's default stream.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    return allocate_async(bytes, alignment, policy_.default_stream());
  }
  /// @brief try_allocate_async on the policy's default stream.
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    return try_allocate_async(bytes, alignment, policy_.default_stream());
  }
  /// @brief deallocate_async on the policy's default stream.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    deallocate_async(p, bytes, alignment, policy_.default_stream());
  }

  /// @brief Synchronizes on `stream`'s event, returns its free blocks to the shared pool and
  /// forgets the stream: call it before destroying a stream the pool has seen. A stream the pool
  /// does not know is ignored.
  void release_stream(stream_type stream) noexcept {
    for (std::size_t s = 0; s < streams_.size(); ++s) {
      if (!(streams_[s].stream == stream)) continue;
      merge_stream(s, true);
      policy_.destroy_event(streams_[s].event);
      // The last stream moves into slot s: renumber its free blocks.
      const std::size_t last = streams_.size() - 1;
      if (s != last) {
        for (const auto& [size, address] : streams_[last].free_list)
          records_.find(address)->second.stream = static_cast<std::uint32_t>(s);
        streams_[s] = std::move(streams_[last]);
      }
      streams_.pop_back();
      return;
    }
  }

  /// @brief Synchronizes on every stream's event and returns all free blocks to the shared pool
  /// (then pool().trim() can return memory to the upstream).
  void merge_all() noexcept {
    for (std::size_t s = 0; s < streams_.size(); ++s) merge_stream(s, true);
  }

  /// @brief Bytes and blocks free on each stream the pool knows, in the order it met them.
  std::vector<stream_free_bytes<stream_type>> free_by_stream() const {
    std::vector<stream_free_bytes<stream_type>> out;
    for (const stream_state& st : streams_)
      out.push_back({st.stream, st.free_bytes, st.free_list.size()});
    return out;
  }

  /// @brief bytes_in_use counts live blocks as requested; the rest comes from the shared pool
  /// (blocks free on a stream count as in use there).
  resource_stats stats() const noexcept {
    resource_stats s = pool_.stats();
    s.bytes_in_use = bytes_in_use_;
    s.peak_bytes_in_use = peak_bytes_in_use_;
    s.allocations = allocations_;
    return s;
  }

  /// @brief Checks the pool, every stream's free list against the records, and the counters.
  bool is_valid() const {
    if (!pool_.is_valid()) return false;
    std::size_t free_blocks = 0, live_blocks = 0, live_bytes = 0;
    for (std::size_t s = 0; s < streams_.size(); ++s) {
      std::size_t bytes = 0;
      for (const auto& [size, address] : streams_[s].free_list) {
        auto it = records_.find(address);
        if (it == records_.end() || it->second.stream != s ||
            rounded(it->second.block_bytes) != size)
          return false;
        bytes += size;
      }
      if (bytes != streams_[s].free_bytes) return false;
      free_blocks += streams_[s].free_list.size();
    }
    for (const auto& [address, r] : records_) {
      if (r.stream == live) {
        ++live_blocks;
        live_bytes += r.requested;
      } else if (r.stream >= streams_.size()) {
        return false;
      }
    }
    return free_blocks + live_blocks == records_.size() && live_blocks == allocations_ &&
           live_bytes == bytes_in_use_ && pool_.stats().allocations == records_.size();
  }

  pool_resource<Upstream>& pool() noexcept { return pool_; }
  const pool_resource<Upstream>& pool() const noexcept { return pool_; }
  Policy& policy() noexcept { return policy_; }

  friend bool operator==(const stream_pool_resource& a, const stream_pool_resource& b) noexcept {
    return &a == &b;
  }

 private:
  using block_list = std::multimap<std::size_t, std::uintptr_t>;  // rounded bytes -> address
  static constexpr std::uint32_t live = 0xFFFFFFFFu;

  /// One block the pool handed out (live) or that waits on a stream's free list.
  struct record {
    std::size_t block_bytes;  // as allocated from pool_ (what goes back to it)
    std::size_t alignment;    // as allocated from pool_
    std::size_t requested;    // by the current owner
    std::uint32_t stream;     // live, or the stream whose free list holds it
  };
  struct stream_state {
    stream_type stream;
    event_type event;  // recorded at every free on the stream
    block_list free_list;
    std::size_t free_bytes = 0;  // == sum of free_list's keys
  };

  /// The bytes a block of the pool spans for a request of `bytes`.
  static constexpr std::size_t rounded(std::size_t bytes) noexcept {
    return detail::align_up(bytes, pool_resource<Upstream>::granularity);
  }

  /// A stream as the OOM message names it: its value when it is a number or a pointer.
  static std::string name_of(const stream_type& stream) {
    if constexpr (std::is_integral_v<stream_type>) {
      return std::to_string(stream);
    } else if constexpr (std::is_pointer_v<stream_type>) {
      char text[32];
      std::snprintf(text, sizeof text, "%p", static_cast<const void*>(stream));
      return text;
    } else {
      return "?";
    }
  }

  std::size_t stream_index(stream_type stream) {
    for (std::size_t s = 0; s < streams_.size(); ++s)
      if (streams_[s].stream == stream) return s;
    streams_.reserve(streams_.size() + 1);
    event_type event = policy_.create_event();
    streams_.push_back(stream_state{stream, event, {}, 0});
    return streams_.size() - 1;
  }

  void* try_allocate_async(std::size_t bytes, std::size_t alignment, stream_type stream,
                           std::string* free_before) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    try {
      records_.reserve(records_.size() + 1);
    } catch (...) {
      return nullptr;
    }
    std::size_t t = streams_.size();
    for (std::size_t s = 0; s < streams_.size(); ++s)
      if (streams_[s].stream == stream) t = s;
    // 1. The stream's own free blocks: no event operation.
    if (t < streams_.size())
      if (void* p = take_from(t, bytes, alignment)) return p;
    // 2. Free memory of the shared pool: safe for every stream.
    if (void* p = pool_.try_allocate_reserved(bytes, alignment)) return hand_out(p, bytes, alignment);
    // 3. Another stream's free blocks, after waiting on its event.
    for (std::size_t s = 0; s < streams_.size(); ++s) {
      if (s == t || !fits(s, bytes, alignment)) continue;
      policy_.wait(stream, streams_[s].event);
      if (t < streams_.size()) {
        adopt(t, s);
        // t's event must now cover the wait too: whoever takes the adopted blocks from t later
        // waits on it.
        policy_.record(streams_[t].event, stream);
        if (void* p = take_from(t, bytes, alignment)) return p;
      } else {
        if (void* p = take_from(s, bytes, alignment)) return p;
      }
    }
    // 4. Blocks of streams whose frees have completed go back to the shared pool.
    bool merged = false;
    for (std::size_t s = 0; s < streams_.size(); ++s)
      if (streams_[s].free_bytes > 0 && policy_.query(streams_[s].event))
        merged = merge_stream(s, false) || merged;
    if (merged)
      if (void* p = pool_.try_allocate_reserved(bytes, alignment))
        return hand_out(p, bytes, alignment);
    // 5. Growth from the upstream.
    if (void* p = pool_.try_allocate(bytes, alignment)) return hand_out(p, bytes, alignment);
    // 6. Every stream's free blocks, after synchronizing on its event.
    if (free_before != nullptr) {
      try {
        for (const stream_state& st : streams_) {
          if (!free_before->empty()) *free_before += ", ";
          *free_before += "stream " + name_of(st.stream) + " " +
                          format_bytes(st.free_bytes) + " in " +
                          std::to_string(st.free_list.size()) + " blocks";
        }
      } catch (...) {
      }
    }
    merged = false;
    for (std::size_t s = 0; s < streams_.size(); ++s) merged = merge_stream(s, true) || merged;
    if (merged)
      if (void* p = pool_.try_allocate(bytes, alignment)) return hand_out(p, bytes, alignment);
    return nullptr;
  }

  /// Whether stream s holds a block for the request (best fit, at most 1/8 larger).
  bool fits(std::size_t s, std::size_t bytes, std::size_t alignment) const noexcept {
    const block_list& list = streams_[s].free_list;
    const std::size_t size = rounded(bytes);
    for (auto it = list.lower_bound(size); it != list.end() && it->first <= size + size / 8; ++it)
      if (it->second % alignment == 0) return true;
    return false;
  }

  /// Takes a block for the request from stream s's free list, or nullptr.
  void* take_from(std::size_t s, std::size_t bytes, std::size_t alignment) noexcept {
    block_list& list = streams_[s].free_list;
    const std::size_t size = rounded(bytes);
    for (auto it = list.lower_bound(size); it != list.end() && it->first <= size + size / 8; ++it) {
      if (it->second % alignment != 0) continue;
      record& r = records_.find(it->second)->second;
      streams_[s].free_bytes -= it->first;
      r.stream = live;
      r.requested = bytes;
      const auto address = it->second;
      list.erase(it);
      count_live(bytes);
      return reinterpret_cast<void*>(address);
    }
    return nullptr;
  }

  /// Moves every free block of stream `from` to stream `to` (which has waited on from's event).
  void adopt(std::size_t to, std::size_t from) noexcept {
    stream_state& a = streams_[to];
    stream_state& b = streams_[from];
    for (auto it = b.free_list.begin(); it != b.free_list.end();) {
      auto next = std::next(it);
      auto node = b.free_list.extract(it);
      record& r = records_.find(node.mapped())->second;
      r.stream = static_cast<std::uint32_t>(to);
      a.free_list.insert(std::move(node));
      it = next;
    }
    a.free_bytes += b.free_bytes;
    b.free_bytes = 0;
  }

  /// Returns stream s's free blocks to the shared pool (after synchronizing on its event when
  /// `wait`). @returns whether there were any.
  bool merge_stream(std::size_t s, bool wait) noexcept {
    stream_state& st = streams_[s];
    if (st.free_list.empty()) return false;
    if (wait) policy_.synchronize(st.event);
    for (const auto& [size, address] : st.free_list) release_block(records_.find(address));
    st.free_list.clear();
    st.free_bytes = 0;
    return true;
  }

  void release_block(typename std::unordered_map<std::uintptr_t, record>::iterator it) noexcept {
    record& r = it->second;
    if (r.stream == live) {
      bytes_in_use_ -= r.requested;
      --allocations_;
    }
    pool_.deallocate(reinterpret_cast<void*>(it->first), r.block_bytes, r.alignment);
    records_.erase(it);
  }

  void* hand_out(void* p, std::size_t bytes, std::size_t alignment) noexcept {
    // records_ has room for one more (reserved in try_allocate_async).
    records_.emplace(reinterpret_cast<std::uintptr_t>(p),
                     record{bytes, alignment, bytes, live});
    count_live(bytes);
    return p;
  }

  void count_live(std::size_t bytes) noexcept {
    bytes_in_use_ += bytes;
    ++allocations_;
    peak_bytes_in_use_ = std::max(peak_bytes_in_use_, bytes_in_use_);
  }

  pool_resource<Upstream> pool_;
  Policy policy_;
  std::vector<stream_state> streams_;
  std::unordered_map<std::uintptr_t, record> records_;  // every block allocated from pool_
  std::size_t bytes_in_use_ = 0;  // requested bytes of live blocks
  std::size_t peak_bytes_in_use_ = 0;
  std::size_t allocations_ = 0;   // live blocks
};

}  // namespace frugal
