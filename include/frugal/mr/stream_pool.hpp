// frugal/mr/stream_pool.hpp: a stream-ordered pool. A block freed on a stream is reused at once
// by that stream; another stream gets it only after waiting on an event recorded at the free.
// snippet: cuda
//   frugal::stream_pool_resource pool{frugal::ref(gpu), frugal::cuda_stream_policy{}};
//   void* p = pool.allocate_async(bytes, 256, compute);  pool.deallocate_async(p, bytes, 256,
//   compute);
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/pool.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>
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
concept stream_policy = std::equality_comparable<typename P::stream_type> &&
    requires(P& p, typename P::stream_type s, typename P::event_type e) {
  { p.create_event() } -> std::same_as<typename P::event_type>;
  p.destroy_event(e);
  p.record(e, s);
  p.wait(s, e);
  p.synchronize(e);
  { p.query(e) } -> std::convertible_to<bool>;
  { p.default_stream() } -> std::same_as<typename P::stream_type>;
};

/// @brief stream_policy for streams whose work is done by the time it is enqueued (host code
/// that labels its work with stream numbers): every event has completed, nothing waits. The
/// pool then behaves as per-stream caches over one pool; benchmarks measure its host overhead
/// with it.
struct synchronous_stream_policy {
  using stream_type = int;
  using event_type = int;
  event_type create_event() noexcept { return 0; }
  void destroy_event(event_type) noexcept {}
  void record(event_type, stream_type) noexcept {}
  void wait(stream_type, event_type) noexcept {}
  void synchronize(event_type) noexcept {}
  bool query(event_type) noexcept { return true; }
  stream_type default_stream() const noexcept { return 0; }
};

/// @brief Free bytes one stream holds in a stream_pool_resource (see free_by_stream()).
template <class Stream>
struct stream_free_bytes {
  Stream stream;
  std::size_t bytes = 0;  ///< freed on this stream, not yet reused or merged
  std::size_t blocks = 0;
};

/// @brief Stream-ordered pool (see docs/mr.md#stream_pool_resourceupstream-policy), modelled on
/// CCCL's stream-ordered resource: allocate_async(bytes, alignment, stream) and deallocate_async(p,
/// bytes, alignment, stream) over a pool_resource that holds all memory.
///
/// - A block freed on stream S waits on S's free list, and S's event is recorded at the free.
///   allocate_async on S takes it back at once, with no event operation.
/// - Another stream T takes a block freed on S only after `wait(T, event of S)`, which the pool
///   makes itself (S's event, recorded at S's latest free, covers every earlier free on S).
/// - Search order for a request on T: T's own list (a block at most 1/8 larger than the request),
///   the shared pool's free memory, other streams' lists (with the wait), the lists of streams
///   whose events have completed (query: no wait) merged into the shared pool, growth from the
///   upstream, and last every stream's list merged after synchronizing on its event. Memory free
///   on some stream is never the cause of an out_of_memory; its message lists the bytes each
///   stream had free.
///
/// Rule for streams: before a stream is destroyed, call release_stream(s): it synchronizes on
/// the stream's event, returns its free blocks to the shared pool and forgets the stream. A block
/// freed on a stream destroyed without it could be handed to another stream after a wait on the
/// destroyed stream's event (undefined in CUDA).
///
/// Costs: O(1) per call on the stream's own list (segregated size classes, a bitmap scan, a
/// hash lookup) plus the pool's O(1); O(streams) when the request goes to other streams.
/// Not thread safe.
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
    if (p == nullptr) [[unlikely]] {
      std::string state = describe(stats());
      if (pool_.options().max_size != std::numeric_limits<std::size_t>::max())
        state += ", max_size " + format_bytes(pool_.options().max_size);
      state += "; free per stream before merging: " +
               (free_before.empty() ? std::string("none") : free_before);
      FRUGAL_OUT_OF_MEMORY(bytes, std::move(state), "stream_pool_resource");
    }
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
    const index i = index_.find(address, address_of());
    if (i == npos) [[unlikely]] {
      detail::report_misuse(misuse_kind::unknown_pointer, "stream_pool_resource", p, bytes,
                            "unknown pointer: not allocated from this pool");
      return;
    }
    if (records_[i].stream != live) [[unlikely]] {
      detail::report_misuse(
          misuse_kind::double_free, "stream_pool_resource", p, bytes,
          "double free: " + std::to_string(bytes) + " bytes at a pointer that is already free");
      return;
    }
    if (records_[i].requested != bytes) [[unlikely]] {
      detail::report_misuse(misuse_kind::size_mismatch, "stream_pool_resource", p, bytes,
                            "size mismatch: block was allocated with " +
                                std::to_string(records_[i].requested) + " bytes, freed with " +
                                std::to_string(bytes));
      return;
    }
    std::size_t s = last_stream_;
    if (s >= streams_.size() || !(streams_[s].stream == stream)) [[unlikely]] {
      try {
        s = stream_index(stream);
      } catch (...) {
        // No event can be recorded on the stream, so no other stream may ever get the block.
        detail::report_misuse(misuse_kind::other, "stream_pool_resource", p, bytes,
                              "a new stream could not be added (host memory or event creation "
                              "failed); the block stays allocated");
        return;
      }
    }
    last_stream_ = s;
    policy_.record(streams_[s].event, stream);
    bytes_in_use_ -= bytes;
    --allocations_;
    link(s, i);
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
      streams_[s] = std::move(streams_.back());  // the last stream's list is empty or moves here
      streams_.pop_back();
      if (s < streams_.size()) renumber(s);
      last_stream_ = 0;
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
    for (const stream_state& st : streams_) out.push_back({st.stream, st.free_bytes, st.blocks});
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

  /// @brief Checks the pool, every stream's lists against the records, and the counters.
  bool is_valid() const {
    if (!pool_.is_valid()) return false;
    std::size_t listed = 0, live_blocks = 0, live_bytes = 0, records = 0;
    for (std::size_t s = 0; s < streams_.size(); ++s) {
      const stream_state& st = streams_[s];
      std::size_t bytes = 0, blocks = 0;
      for (unsigned c = 0; c < class_count; ++c) {
        if (((st.bitmap[c / 64] >> (c % 64)) & 1u) != (st.heads[c] != npos)) return false;
        index prev = npos;
        for (index i = st.heads[c]; i != npos; i = records_[i].next) {
          const record& r = records_[i];
          if (r.stream != s || r.size_class != c || class_of(r.block_bytes) != c ||
              r.prev != prev || index_.find(r.address, address_of()) != i ||
              ++blocks > records_.size())
            return false;
          bytes += r.block_bytes;
          prev = i;
        }
      }
      if (bytes != st.free_bytes || blocks != st.blocks) return false;
      listed += blocks;
    }
    for (index i = 0; i < records_.size(); ++i) {
      const record& r = records_[i];
      if (r.address == 0) continue;
      ++records;
      if (index_.find(r.address, address_of()) != i) return false;
      if (r.stream == live) {
        ++live_blocks;
        live_bytes += r.requested;
      } else if (r.stream >= streams_.size()) {
        return false;
      }
    }
    return listed + live_blocks == records && live_blocks == allocations_ &&
           live_bytes == bytes_in_use_ && index_.size() == records &&
           pool_.stats().allocations == records;
  }

  pool_resource<Upstream>& pool() noexcept { return pool_; }
  const pool_resource<Upstream>& pool() const noexcept { return pool_; }
  Policy& policy() noexcept { return policy_; }

  friend bool operator==(const stream_pool_resource& a, const stream_pool_resource& b) noexcept {
    return &a == &b;
  }

 private:
  using index = std::uint32_t;
  static constexpr index npos = detail::pointer_map::npos;
  static constexpr std::uint32_t live = 0xFFFFFFFFu;
  // Size classes of a stream's list: 8 per power of two of 256-byte granules, so a class spans
  // 1/8 of its lower bound, the most a reused block may exceed the request by.
  static constexpr unsigned sub_bits = 3;
  static constexpr unsigned class_count = 64 * (1u << sub_bits);

  /// One block the pool handed out (live) or that waits on a stream's list.
  struct record {
    std::uintptr_t address = 0;   // 0: unused record
    std::size_t block_bytes = 0;  // as allocated from pool_, rounded to its granularity
    std::size_t pool_bytes = 0;   // as requested from pool_ (what goes back to it)
    std::size_t alignment = 0;    // as requested from pool_
    std::size_t requested = 0;    // by the current owner
    std::uint32_t stream = live;  // live, or the stream whose list holds it
    index prev = npos, next = npos;
    std::uint16_t size_class = 0;
  };
  /// The index's view of the records: the address record i stands for.
  struct record_address_of {
    const std::vector<record>* records;
    std::uint64_t operator()(index i) const noexcept { return (*records)[i].address; }
  };
  record_address_of address_of() const noexcept { return {&records_}; }

  struct stream_state {
    stream_type stream;
    event_type event;  // recorded at every free on the stream
    std::array<index, class_count> heads;
    std::array<std::uint64_t, class_count / 64> bitmap{};
    std::size_t free_bytes = 0;  // == sum of listed block_bytes
    std::size_t blocks = 0;
  };

  static unsigned class_of(std::size_t bytes) noexcept {
    const std::size_t units = bytes >> 8;  // 256-byte granules, at least 1
    const unsigned msb = static_cast<unsigned>(std::bit_width(units)) - 1;
    if (msb < sub_bits) return static_cast<unsigned>(units);
    return ((msb - sub_bits + 1) << sub_bits) +
           static_cast<unsigned>((units >> (msb - sub_bits)) - (1u << sub_bits));
  }
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
    stream_state st{stream, policy_.create_event(), {}, {}, 0, 0};
    st.heads.fill(npos);
    streams_.push_back(std::move(st));
    return streams_.size() - 1;
  }

  /// Finds the stream `stream` without adding it; streams_.size() when unknown.
  std::size_t find_stream(const stream_type& stream) noexcept {
    if (last_stream_ < streams_.size() && streams_[last_stream_].stream == stream)
      return last_stream_;
    for (std::size_t s = 0; s < streams_.size(); ++s)
      if (streams_[s].stream == stream) return last_stream_ = s;
    return streams_.size();
  }

  void link(std::size_t s, index i) noexcept {
    stream_state& st = streams_[s];
    record& r = records_[i];
    const unsigned c = class_of(r.block_bytes);
    r.stream = static_cast<std::uint32_t>(s);
    r.size_class = static_cast<std::uint16_t>(c);
    r.prev = npos;
    r.next = st.heads[c];
    if (r.next != npos) records_[r.next].prev = i;
    st.heads[c] = i;
    st.bitmap[c / 64] |= std::uint64_t{1} << (c % 64);
    st.free_bytes += r.block_bytes;
    ++st.blocks;
  }

  void unlink(index i) noexcept {
    record& r = records_[i];
    stream_state& st = streams_[r.stream];
    const unsigned c = r.size_class;
    if (r.prev != npos) {
      records_[r.prev].next = r.next;
    } else {
      st.heads[c] = r.next;
      if (r.next == npos) st.bitmap[c / 64] &= ~(std::uint64_t{1} << (c % 64));
    }
    if (r.next != npos) records_[r.next].prev = r.prev;
    st.free_bytes -= r.block_bytes;
    --st.blocks;
    r.stream = live;
    r.prev = r.next = npos;
  }

  /// A block of stream s's list for the request: at least `size` bytes, at most 1/8 more,
  /// aligned; npos when none. O(1): a few blocks of the request's class, the head of the next.
  index find_in(std::size_t s, std::size_t size, std::size_t alignment) const noexcept {
    const stream_state& st = streams_[s];
    if (st.blocks == 0) return npos;
    const std::size_t limit = size + size / 8;
    const unsigned c = class_of(size);
    int budget = 4;
    for (index i = st.heads[c]; i != npos && budget-- > 0; i = records_[i].next) {
      const record& r = records_[i];
      if (r.block_bytes >= size && r.block_bytes <= limit && r.address % alignment == 0) return i;
    }
    for (unsigned d = c + 1; d < class_count && d <= c + 1 + (1u << sub_bits); ++d) {
      if (((st.bitmap[d / 64] >> (d % 64)) & 1u) == 0) continue;
      const record& r = records_[st.heads[d]];
      if (r.block_bytes > limit) return npos;
      if (r.address % alignment == 0) return st.heads[d];
    }
    return npos;
  }

  void* try_allocate_async(std::size_t bytes, std::size_t alignment, stream_type stream,
                           std::string* free_before) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    if (!reserve_record()) return nullptr;
    const std::size_t size = rounded(bytes);
    const std::size_t t = find_stream(stream);
    // 1. The stream's own free blocks: no event operation.
    if (t < streams_.size()) {
      const index i = find_in(t, size, alignment);
      if (i != npos) return reuse(i, bytes);
    }
    // 2. Free memory of the shared pool: safe for every stream.
    if (void* p = pool_.try_allocate_reserved(bytes, alignment))
      return hand_out(p, bytes, alignment);
    // 3. Another stream's free block, after waiting on that stream's event.
    for (std::size_t s = 0; s < streams_.size(); ++s) {
      if (s == t) continue;
      const index i = find_in(s, size, alignment);
      if (i == npos) continue;
      policy_.wait(stream, streams_[s].event);
      return reuse(i, bytes);
    }
    // 4. The lists of streams whose frees have all completed go back to the shared pool.
    bool merged = false;
    for (std::size_t s = 0; s < streams_.size(); ++s)
      if (streams_[s].blocks > 0 && policy_.query(streams_[s].event))
        merged = merge_stream(s, false) || merged;
    if (merged)
      if (void* p = pool_.try_allocate_reserved(bytes, alignment))
        return hand_out(p, bytes, alignment);
    // 5. Growth from the upstream.
    if (void* p = pool_.try_allocate(bytes, alignment)) return hand_out(p, bytes, alignment);
    // 6. Every stream's list, after synchronizing on its event.
    if (free_before != nullptr) {
      try {
        for (const stream_state& st : streams_) {
          if (!free_before->empty()) *free_before += ", ";
          *free_before += "stream " + name_of(st.stream) + " " + format_bytes(st.free_bytes) +
                          " in " + std::to_string(st.blocks) + " blocks";
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

  void* reuse(index i, std::size_t bytes) noexcept {
    unlink(i);
    records_[i].requested = bytes;
    count_live(bytes);
    return reinterpret_cast<void*>(records_[i].address);
  }

  /// Returns stream s's list to the shared pool (after synchronizing on its event when `wait`).
  /// @returns whether it held any block
  bool merge_stream(std::size_t s, bool wait) noexcept {
    stream_state& st = streams_[s];
    if (st.blocks == 0) return false;
    if (wait) policy_.synchronize(st.event);
    for (unsigned c = 0; c < class_count; ++c) {
      while (st.heads[c] != npos) {
        const index i = st.heads[c];
        unlink(i);
        release_block(i);
      }
    }
    return true;
  }

  /// Gives the records of stream s (moved from another slot) their new stream number.
  void renumber(std::size_t s) noexcept {
    for (unsigned c = 0; c < class_count; ++c)
      for (index i = streams_[s].heads[c]; i != npos; i = records_[i].next)
        records_[i].stream = static_cast<std::uint32_t>(s);
  }

  /// Returns a record's block to the shared pool and frees the record.
  void release_block(index i) noexcept {
    record& r = records_[i];
    pool_.deallocate(reinterpret_cast<void*>(r.address), r.pool_bytes, r.alignment);
    index_.take(r.address, address_of());
    r = record{};
    free_records_.push_back(i);  // capacity kept by reserve_record
  }

  /// Room for one more record, in every structure, before anything changes.
  bool reserve_record() noexcept {
    try {
      if (free_records_.empty() && records_.size() == records_.capacity())
        records_.reserve(std::max<std::size_t>(64, 2 * records_.capacity()));
      if (free_records_.capacity() < records_.capacity() + 1)
        free_records_.reserve(records_.capacity() + 1);
      index_.reserve(index_.size() + 1);
      return records_.size() < npos - 1;
    } catch (...) {
      return false;
    }
  }

  void* hand_out(void* p, std::size_t bytes, std::size_t alignment) noexcept {
    index i;
    if (!free_records_.empty()) {
      i = free_records_.back();
      free_records_.pop_back();
    } else {
      records_.emplace_back();  // capacity reserved by reserve_record
      i = static_cast<index>(records_.size() - 1);
    }
    record& r = records_[i];
    r.address = reinterpret_cast<std::uintptr_t>(p);
    r.block_bytes = rounded(bytes);
    r.pool_bytes = bytes;
    r.alignment = alignment;
    r.requested = bytes;
    index_.insert(r.address, i, address_of());
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
  std::size_t last_stream_ = 0;  // the stream of the latest call: looked at first
  std::vector<record> records_;  // every block allocated from pool_ (address 0: unused)
  std::vector<index> free_records_;
  detail::pointer_map index_;  // address -> record
  // bytes_in_use_ == sum of live records' requested
  std::size_t bytes_in_use_ = 0;
  std::size_t peak_bytes_in_use_ = 0;
  std::size_t allocations_ = 0;  // live records
};

}  // namespace frugal

static_assert(frugal::stream_policy<frugal::synchronous_stream_policy>);
static_assert(frugal::resource_with<frugal::stream_pool_resource<frugal::host_resource,
                                                                 frugal::synchronous_stream_policy>,
                                    frugal::host_accessible>);
