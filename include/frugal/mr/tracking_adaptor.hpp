// frugal/mr/tracking_adaptor.hpp: records outstanding allocations of any resource; leak reports,
// out-of-memory messages that name the top tags, and an optional timeline of every event.
//   frugal::tracking_adaptor tracker{frugal::ref(pool)};  frugal::scoped_tag tag{tracker, "kv"};
//   frugal::expect_no_outstanding(tracker, "after shutdown");   // throws, naming leaks by tag
#pragma once

#include <frugal/mr/concepts.hpp>
#include <frugal/mr/host_resource.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/resource_ref.hpp>
#include <frugal/mr/resource_stats.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#if __has_include(<execinfo.h>)
#include <execinfo.h>
#endif

namespace frugal {

/// @brief Options of tracking_adaptor.
struct tracking_options {
  /// Record the call stack (up to 32 return addresses, via execinfo's backtrace()) of every
  /// allocation, and print it symbolized in report(). Costs a stack walk per allocation.
  bool capture_backtraces = false;
  /// Record every allocate and free in timeline(), for snapshots (frugal/mr/snapshot.hpp).
  /// Costs a clock read, a tag copy and, when the upstream has stats(), a stats() call per event.
  bool record_timeline = false;
  /// Events kept at most; later events are counted in dropped_events() instead of recorded.
  std::size_t max_events = 1'000'000;
  /// Where a snapshot (JSON and SVG, with tags and the timeline) is written when allocate()
  /// fails with out_of_memory, before the exception leaves; empty: the directory named by the
  /// environment variable FRUGAL_OOM_SNAPSHOT, read at the failure; neither: none. The blocks
  /// are drawn when the upstream is a pool_resource (or a frugal::ref to one); a pool below
  /// that wrote its own snapshot of the failure has it rewritten with the tags.
  std::string oom_snapshot_dir{};
};

/// @brief Whether a timeline_event is an allocation or a free.
enum class event_kind : std::uint8_t { allocate, free };

/// @brief One successful allocate or deallocate, as tracking_adaptor's timeline records it.
struct timeline_event {
  double seconds = 0;  ///< since the adaptor was made (steady_clock)
  event_kind kind = event_kind::allocate;
  std::size_t bytes = 0;              ///< as requested
  std::string tag;                    ///< empty when untagged
  std::size_t outstanding_bytes = 0;  ///< the adaptor's outstanding bytes after the event
  /// The upstream's stats().bytes_reserved after the event (looking through frugal::ref);
  /// 0 when the upstream has no stats().
  std::size_t upstream_bytes_reserved = 0;

  friend bool operator==(const timeline_event&, const timeline_event&) = default;
};

namespace detail {
/// The tracker's part of an OOM snapshot: the tag of every outstanding block and the timeline.
struct oom_snapshot_extra {
  std::vector<std::pair<std::uintptr_t, std::string>> tags;  // address -> tag
  std::vector<timeline_event> timeline;
  std::size_t dropped_events = 0;
  double captured_at = 0;
};
}  // namespace detail

/// @brief The outstanding allocations of one tag, as tracking_adaptor::usage_by_tag() sums them.
struct tag_usage {
  std::string tag;  ///< empty for untagged allocations
  std::size_t count = 0;
  std::size_t bytes = 0;     ///< as requested
  std::uint64_t oldest = 0;  ///< the lowest sequence number of the group
};

namespace detail {

/// A resource whose stats() reports resource_stats (pools, arenas, stats and limit adaptors...).
template <class R>
concept has_stats = requires(const R& r) {
  { r.stats() } -> std::convertible_to<resource_stats>;
};

template <class R>
inline constexpr bool is_ref_v = false;
template <class R>
inline constexpr bool is_ref_v<ref_t<R>> = true;

/// The stats() of `r`, looking through frugal::ref handles; nullopt when it has none.
template <class R>
std::optional<resource_stats> stats_of(const R& r) {
  if constexpr (has_stats<R>) {
    return resource_stats(r.stats());
  } else if constexpr (is_ref_v<R>) {
    return stats_of(r.get());
  } else {
    return std::nullopt;
  }
}

/// One row of the tag table: tag, count, bytes, human-readable bytes, oldest.
inline std::string tag_row(std::string_view tag, std::string_view count, std::string_view bytes,
                           std::string_view human, std::string_view oldest) {
  char line[160];
  const int length = std::snprintf(
      line, sizeof line, "%-24.*s %8.*s %15.*s %-12.*s %8.*s\n",
      static_cast<int>(std::min<std::size_t>(tag.size(), 64)), tag.data(),
      static_cast<int>(count.size()), count.data(), static_cast<int>(bytes.size()), bytes.data(),
      static_cast<int>(human.size()), human.data(), static_cast<int>(oldest.size()), oldest.data());
  return std::string(line, static_cast<std::size_t>(std::clamp(length, 0, 159)));
}

/// The "tag count bytes oldest" table of tracking_adaptor::report() and memory_report.
inline std::string tag_table(const std::vector<tag_usage>& groups) {
  std::string text = tag_row("tag", "count", "bytes", "", "oldest");
  for (const tag_usage& g : groups) {
    // Appended, not "(" + string: GCC 12 misreads the inlined insert as overlapping (-Wrestrict,
    // GCC bug 105651).
    std::string human(1, '('), oldest(1, '#');
    human += format_bytes(g.bytes);
    human += ')';
    oldest += std::to_string(g.oldest);
    text += tag_row(g.tag.empty() ? std::string_view("(untagged)") : std::string_view(g.tag),
                    std::to_string(g.count), std::to_string(g.bytes), human, oldest);
  }
  return text;
}

}  // namespace detail

/// @brief One outstanding allocation, as tracking_adaptor recorded it.
struct allocation_record {
  void* pointer = nullptr;
  std::size_t bytes = 0;  ///< as requested
  std::size_t alignment = 0;
  std::string tag;               ///< empty when untagged
  std::uint64_t sequence = 0;    ///< allocation order: the adaptor's first allocation is 0
  std::vector<void*> backtrace;  ///< return addresses, innermost first; empty unless captured
};

/// @brief Wraps resource `R` (held by value; use frugal::ref to share one) and records every
/// outstanding allocation: pointer, size, alignment, tag, sequence number and, optionally, the
/// call stack. report() groups them by tag; leaks at destruction go to a settable handler.
/// An out_of_memory from the upstream is rethrown with the same size and the upstream's state
/// followed by the top tags ("; top tags: kv 1.50 GiB (12), (untagged) 2.00 MiB (3)"). With
/// tracking_options::record_timeline, every allocate and free is also kept in timeline().
///
/// Deallocation is checked against the records: an unknown pointer (never allocated here, or
/// already freed) or a size or alignment other than the allocation's is reported through the
/// misuse handler and NOT passed upstream, so the upstream never sees a bad free. Zero-byte
/// requests return nullptr and are not recorded. Not thread safe, and the default tag belongs to
/// the adaptor, not to a thread: wrap it in frugal::synchronized (and use its with_lock for
/// tagged allocations) to share it. Properties are those of the upstream; an adaptor compares
/// equal only to itself. See docs/concepts.md#resource.
template <resource R>
class tracking_adaptor : public detail::forward_properties<tracking_adaptor<R>, R> {
 public:
  /// @brief Called at destruction when allocations are still outstanding, with the report().
  using leak_handler = std::function<void(const tracking_adaptor&, std::string_view report)>;

  /// @brief Most return addresses recorded per allocation.
  static constexpr int max_backtrace_frames = 32;

  /// @param upstream the resource that provides the memory; moved in
  /// @param options what to record besides pointer, size, alignment, tag and sequence
  explicit tracking_adaptor(R upstream, tracking_options options = {}) noexcept(
      std::is_nothrow_move_constructible_v<R>)
      : upstream_(std::move(upstream)), options_(std::move(options)) {}

  /// @brief Constructs the upstream in place from `args`, for upstreams that cannot move:
  /// `tracking_adaptor<pool_resource<host_resource>> t{std::in_place, {}, host_resource{}}`.
  template <class... Args>
  explicit tracking_adaptor(std::in_place_t, tracking_options options, Args&&... args)
      : upstream_(std::forward<Args>(args)...), options_(std::move(options)) {}

  /// @brief Takes over the upstream, records and timeline; the moved-from adaptor has none.
  tracking_adaptor(tracking_adaptor&& other)
      : upstream_(std::move(other.upstream_)),
        options_(other.options_),
        start_(other.start_),
        records_(std::move(other.records_)),
        next_sequence_(other.next_sequence_),
        outstanding_bytes_(std::exchange(other.outstanding_bytes_, 0)),
        default_tag_(std::move(other.default_tag_)),
        leak_handler_(std::move(other.leak_handler_)),
        events_(std::move(other.events_)),
        dropped_events_(std::exchange(other.dropped_events_, 0)) {
    other.records_.clear();
    other.events_.clear();
  }

  tracking_adaptor& operator=(tracking_adaptor&&) = delete;

  /// @brief Reports outstanding allocations (leaks) to the leak handler. Does not free them:
  /// their owners may still use them.
  ~tracking_adaptor() {
    if (records_.empty()) return;
    try {
      const std::string text = report();
      if (leak_handler_) {
        leak_handler_(*this, text);
      } else {
        std::fprintf(stderr, "frugal: tracking_adaptor destroyed with leaks\n%s", text.c_str());
      }
    } catch (...) {
      // A destructor must not throw; a failing handler loses the report, not the program.
    }
  }

  /// @brief Allocates from the upstream and records the allocation under the default tag (see
  /// scoped_tag; empty by default).
  /// @param bytes size requested; 0 returns nullptr and records nothing
  /// @param alignment a power of two
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws invalid_argument if `alignment` is not a power of two; out_of_memory with the
  /// upstream's size and state followed by "; top tags: ..." (at most 5 tags by outstanding
  /// bytes) when the upstream throws out_of_memory; whatever else the upstream throws;
  /// std::bad_alloc if the record cannot be stored. After a throw nothing is recorded or held.
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    return allocate(bytes, alignment, std::string_view(default_tag_));
  }

  /// @brief Allocates and records the allocation under `tag` (instead of the default tag).
  /// @param bytes size requested; 0 returns nullptr and records nothing
  /// @param alignment a power of two
  /// @param tag what the memory is for, e.g. "weights"; shown in report()
  /// @returns memory of at least `bytes` bytes aligned to `alignment`
  /// @throws as the two-argument allocate
  void* allocate(std::size_t bytes, std::size_t alignment, std::string_view tag) {
    detail::check_alignment(alignment, "tracking_adaptor");
    if (bytes == 0) return nullptr;
    allocation_record record = make_record(bytes, alignment, tag);  // may throw: before upstream
    timeline_event event;
    const event_slot slot = reserve_event(event, event_kind::allocate, bytes, tag);  // may throw
    void* p = nullptr;
    const std::uint64_t snapshots_before = detail::oom_snapshots().written;
    try {
      p = upstream_.allocate(bytes, alignment);
    } catch (const out_of_memory& e) {
      rethrow_with_top_tags(e, oom_snapshot(snapshots_before));
    }
    if (p != nullptr) {
      commit(p, std::move(record));
      add_event(slot, std::move(event));
    }
    return p;
  }

  /// @brief Like allocate, but returns nullptr instead of throwing (nothing recorded then).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    return try_allocate(bytes, alignment, std::string_view(default_tag_));
  }

  /// @brief Like the tagged allocate, but returns nullptr instead of throwing.
  void* try_allocate(std::size_t bytes, std::size_t alignment, std::string_view tag) noexcept {
    if (bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    try {
      allocation_record record = make_record(bytes, alignment, tag);
      timeline_event event;
      const event_slot slot = reserve_event(event, event_kind::allocate, bytes, tag);
      void* p = detail::try_allocate(upstream_, bytes, alignment);
      if (p != nullptr) {
        commit(p, std::move(record));
        add_event(slot, std::move(event));
      }
      return p;
    } catch (...) {
      return nullptr;  // commit() has returned the memory
    }
  }

  /// @brief Checks `p` against the records, then returns it to the upstream and forgets it.
  /// nullptr is a no-op.
  /// @param bytes, alignment the values `p` was allocated with
  /// An unknown pointer (misuse_kind::unknown_pointer), a wrong size (size_mismatch) or a wrong
  /// alignment (other) is reported through the misuse handler; then nothing changes and nothing
  /// is passed upstream.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr) return;
    const auto it = records_.find(p);
    if (it == records_.end()) [[unlikely]] {
      detail::report_misuse(misuse_kind::unknown_pointer, "tracking_adaptor", p, bytes,
                            "deallocate of unknown pointer " + hex(p) + " (" +
                                std::to_string(bytes) +
                                " bytes): not allocated here, or already freed");
      return;
    }
    allocation_record& record = it->second;
    if (record.bytes != bytes) [[unlikely]] {
      detail::report_misuse(misuse_kind::size_mismatch, "tracking_adaptor", p, bytes,
                            "deallocate of " + hex(p) + " with " + std::to_string(bytes) +
                                " bytes, but it was allocated with " +
                                std::to_string(record.bytes) + " bytes" + tag_suffix(record));
      return;
    }
    if (record.alignment != alignment) [[unlikely]] {
      detail::report_misuse(misuse_kind::other, "tracking_adaptor", p, bytes,
                            "deallocate of " + hex(p) + " with alignment " +
                                std::to_string(alignment) + ", but it was allocated with " +
                                std::to_string(record.alignment) + tag_suffix(record));
      return;
    }
    timeline_event event;
    event_slot slot = event_slot::none;
    try {
      slot = reserve_event(event, event_kind::free, bytes, {});
    } catch (...) {
      slot = event_slot::dropped;  // no room for the event: the free itself goes ahead
    }
    if (slot == event_slot::reserved) event.tag = std::move(record.tag);
    upstream_.deallocate(p, bytes, alignment);
    outstanding_bytes_ -= bytes;
    records_.erase(it);
    add_event(slot, std::move(event));
  }

  /// @returns a copy of every outstanding allocation's record, oldest (lowest sequence) first
  std::vector<allocation_record> outstanding() const {
    std::vector<allocation_record> result;
    result.reserve(records_.size());
    for (const auto& entry : records_) result.push_back(entry.second);
    std::sort(result.begin(), result.end(),
              [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
    return result;
  }

  /// @returns the record of outstanding allocation `p`, or nullptr if `p` is not outstanding.
  /// Valid until the next allocate or deallocate.
  const allocation_record* find(const void* p) const noexcept {
    const auto it = records_.find(const_cast<void*>(p));
    return it == records_.end() ? nullptr : &it->second;
  }

  /// @returns the sum of the sizes of outstanding allocations, as requested
  std::size_t outstanding_bytes() const noexcept { return outstanding_bytes_; }
  /// @returns the number of outstanding allocations
  std::size_t outstanding_count() const noexcept { return records_.size(); }

  /// @brief A table of outstanding allocations grouped by tag, largest total first:
  ///
  ///     tracking_adaptor: 3 outstanding allocations, 1536 bytes (1.50 KiB)
  ///     tag                         count           bytes          oldest
  ///     weights                         2            1024 (1.00 KiB)     #0
  ///     (untagged)                      1             512 (512 B)        #2
  ///
  /// `oldest` is the lowest sequence number in the group. With capture_backtraces, the symbolized
  /// call stacks of the oldest allocations follow the table.
  /// @returns the table; "tracking_adaptor: no outstanding allocations\n" when there are none
  std::string report() const {
    if (records_.empty()) return "tracking_adaptor: no outstanding allocations\n";
    std::string text = "tracking_adaptor: " + std::to_string(records_.size()) +
                       " outstanding allocation" + (records_.size() == 1 ? "" : "s") + ", " +
                       std::to_string(outstanding_bytes_) + " bytes (" +
                       format_bytes(outstanding_bytes_) + ")\n";
    text += detail::tag_table(usage_by_tag());
    append_backtraces(text);
    return text;
  }

  /// @brief Outstanding allocations summed per tag, largest total first (ties by tag).
  /// O(outstanding allocations).
  std::vector<tag_usage> usage_by_tag() const {
    std::unordered_map<std::string_view, tag_usage> by_tag;
    for (const auto& [p, record] : records_) {
      auto [it, inserted] = by_tag.try_emplace(record.tag);
      tag_usage& g = it->second;
      if (inserted) {
        g.tag = record.tag;
        g.oldest = record.sequence;
      }
      ++g.count;
      g.bytes += record.bytes;
      g.oldest = std::min(g.oldest, record.sequence);
    }
    std::vector<tag_usage> groups;
    groups.reserve(by_tag.size());
    for (auto& entry : by_tag) groups.push_back(std::move(entry.second));
    std::sort(groups.begin(), groups.end(), [](const tag_usage& a, const tag_usage& b) {
      return a.bytes != b.bytes ? a.bytes > b.bytes : a.tag < b.tag;
    });
    return groups;
  }

  /// @brief "top tags: kv 1.50 GiB (12), weights 512.00 MiB (3)": at most `limit` tags by
  /// outstanding bytes, untagged ones as "(untagged)", "none" when nothing is outstanding.
  std::string top_tags(std::size_t limit = 5) const {
    const std::vector<tag_usage> groups = usage_by_tag();
    std::string text = "top tags: ";
    if (groups.empty()) return text + "none";
    for (std::size_t i = 0; i < groups.size() && i < limit; ++i) {
      if (i > 0) text += ", ";
      text += groups[i].tag.empty() ? "(untagged)" : groups[i].tag;
      text += ' ';
      text += format_bytes(groups[i].bytes);
      text += " (";
      text += std::to_string(groups[i].count);
      text += ')';
    }
    if (groups.size() > limit) text += ", +" + std::to_string(groups.size() - limit) + " more";
    return text;
  }

  /// @returns every recorded event, oldest first (empty unless options().record_timeline)
  const std::vector<timeline_event>& timeline() const noexcept { return events_; }
  /// @returns events not recorded because the timeline held options().max_events
  std::size_t dropped_events() const noexcept { return dropped_events_; }
  /// @brief Forgets the recorded events and the dropped count; later events are recorded again.
  void clear_timeline() noexcept {
    events_.clear();
    dropped_events_ = 0;
  }
  /// @returns seconds since the adaptor was made: the clock of timeline_event::seconds
  double elapsed_seconds() const noexcept {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  /// @brief Sets the tag of later untagged allocate calls ("" for none). See scoped_tag.
  void set_default_tag(std::string tag) noexcept { default_tag_ = std::move(tag); }
  /// @returns the tag given to allocations made without one
  const std::string& default_tag() const noexcept { return default_tag_; }

  /// @brief Installs the handler called at destruction when allocations are outstanding; an
  /// empty function restores the default, which prints the report to stderr.
  /// @returns the previous handler (empty for the default)
  leak_handler set_leak_handler(leak_handler handler) noexcept {
    return std::exchange(leak_handler_, std::move(handler));
  }

  /// @returns the options given at construction
  const tracking_options& options() const noexcept { return options_; }

  /// @returns the wrapped resource
  R& upstream() noexcept { return upstream_; }
  /// @returns the wrapped resource
  const R& upstream() const noexcept { return upstream_; }

  /// @brief An adaptor holds its own records, so it equals only itself.
  friend bool operator==(const tracking_adaptor& a, const tracking_adaptor& b) noexcept {
    return &a == &b;
  }

 private:
  allocation_record make_record(std::size_t bytes, std::size_t alignment,
                                std::string_view tag) const {
    allocation_record record;
    record.bytes = bytes;
    record.alignment = alignment;
    record.tag = tag;
    if (options_.capture_backtraces) record.backtrace = capture_backtrace();
    return record;
  }

  enum class event_slot { none, reserved, dropped };

  // Prepares the timeline event of an operation before it happens, so that recording it after
  // the upstream call cannot fail: reserves room, copies the tag. May throw (then nothing ran).
  event_slot reserve_event(timeline_event& event, event_kind kind, std::size_t bytes,
                           std::string_view tag) {
    if (!options_.record_timeline) return event_slot::none;
    if (events_.size() >= options_.max_events) return event_slot::dropped;
    if (events_.size() == events_.capacity()) {
      events_.reserve(
          std::min(options_.max_events, std::max<std::size_t>(1024, 2 * events_.capacity())));
    }
    event.kind = kind;
    event.bytes = bytes;
    event.tag = tag;
    return event_slot::reserved;
  }

  // Completes and stores an event prepared by reserve_event, after the operation succeeded.
  void add_event(event_slot slot, timeline_event&& event) noexcept {
    if (slot == event_slot::dropped) ++dropped_events_;
    if (slot != event_slot::reserved) return;
    event.seconds = elapsed_seconds();
    event.outstanding_bytes = outstanding_bytes_;
    try {
      if (const auto stats = detail::stats_of(upstream_)) {
        event.upstream_bytes_reserved = stats->bytes_reserved;
      }
    } catch (...) {
      // e.g. a lock that failed: the event keeps 0 reserved
    }
    events_.push_back(std::move(event));  // cannot allocate: reserve_event made room
  }

  // Rethrows the upstream's out_of_memory with the top tags appended to its state; if that
  // message cannot be built, rethrows the original.
  /// Writes the OOM snapshot when one is asked for (options or FRUGAL_OOM_SNAPSHOT): over the
  /// pool the snapshot the pool wrote for this failure, or a new one. @returns the note for the
  /// error message (empty when the pool's message has it already, or when none is asked for).
  std::string oom_snapshot(std::uint64_t snapshots_before) const noexcept {
    try {
      const std::string directory = detail::oom_snapshot_directory(options_.oom_snapshot_dir);
      if (directory.empty()) return {};
      const detail::oom_snapshot_state& written = detail::oom_snapshots();
      const bool rewrite = written.written != snapshots_before;  // the pool below wrote one
      std::vector<pool_segment_info> segments;
      resource_stats stats;
      if constexpr (requires { upstream_.segments(); }) {
        segments = upstream_.segments();
        stats = upstream_.stats();
      } else if constexpr (requires { upstream_.get().segments(); }) {
        segments = upstream_.get().segments();
        stats = upstream_.get().stats();
      } else {
        stats.bytes_in_use = outstanding_bytes_;
      }
      detail::oom_snapshot_extra extra;
      for (const auto& [p, record] : records_)
        extra.tags.emplace_back(reinterpret_cast<std::uintptr_t>(p), record.tag);
      extra.timeline = timeline();
      extra.dropped_events = dropped_events();
      extra.captured_at = elapsed_seconds();
      const std::string note = detail::write_oom_snapshot(
          directory, rewrite ? written.last : std::string(), stats, segments, &extra);
      return rewrite ? std::string() : note;
    } catch (...) {
      return {};
    }
  }

  [[noreturn]] void rethrow_with_top_tags(const out_of_memory& e, const std::string& note) const {
    try {
      std::string state = e.state();
      state += state.empty() ? "" : "; ";
      FRUGAL_OUT_OF_MEMORY(e.requested_bytes(), state + top_tags() + note, e.who());
    } catch (const out_of_memory&) {
      throw;  // the tagged one
    } catch (...) {
    }
    throw;  // called from allocate's handler: rethrows `e` itself
  }

  // Stores the record of fresh allocation `p`; if that throws, returns `p` upstream and rethrows.
  void commit(void* p, allocation_record&& record) {
    const std::size_t bytes = record.bytes;
    const std::size_t alignment = record.alignment;
    record.pointer = p;
    record.sequence = next_sequence_;
    try {
      auto [it, inserted] = records_.try_emplace(p, std::move(record));
      if (!inserted) [[unlikely]] {
        // The upstream handed out memory that is still outstanding: its bug, not the caller's.
        detail::report_misuse(misuse_kind::other, "tracking_adaptor", p, bytes,
                              "the upstream returned " + hex(p) + ", which is still outstanding" +
                                  tag_suffix(it->second));
        outstanding_bytes_ -= it->second.bytes;
        it->second = std::move(record);
      }
    } catch (...) {
      upstream_.deallocate(p, bytes, alignment);
      throw;
    }
    ++next_sequence_;
    outstanding_bytes_ += bytes;
  }

  static std::vector<void*> capture_backtrace() {
#if __has_include(<execinfo.h>)
    void* frames[max_backtrace_frames];
    const int count = ::backtrace(frames, max_backtrace_frames);
    return std::vector<void*>(frames, frames + std::max(count, 0));
#else
    return {};
#endif
  }

  // The call stacks of the oldest allocations that have one, symbolized.
  void append_backtraces(std::string& text) const {
    constexpr std::size_t max_listed = 16;
    std::vector<const allocation_record*> with_stack;
    for (const auto& entry : records_) {
      if (!entry.second.backtrace.empty()) with_stack.push_back(&entry.second);
    }
    if (with_stack.empty()) return;
    std::sort(with_stack.begin(), with_stack.end(),
              [](const auto* a, const auto* b) { return a->sequence < b->sequence; });
    text += "backtraces of the oldest outstanding allocations:\n";
    for (std::size_t i = 0; i < with_stack.size() && i < max_listed; ++i) {
      const allocation_record& record = *with_stack[i];
      text += "#" + std::to_string(record.sequence) + " " + hex(record.pointer) + " " +
              std::to_string(record.bytes) + " bytes" + tag_suffix(record) + "\n";
#if __has_include(<execinfo.h>)
      const int count = static_cast<int>(record.backtrace.size());
      char** symbols = ::backtrace_symbols(record.backtrace.data(), count);
      for (int frame = 0; frame < count; ++frame) {
        text += "    ";
        text += symbols != nullptr ? std::string(symbols[frame]) : hex(record.backtrace[frame]);
        text += '\n';
      }
      std::free(symbols);
#endif
    }
    if (with_stack.size() > max_listed) {
      text += "... and " + std::to_string(with_stack.size() - max_listed) + " more\n";
    }
  }

  static std::string hex(const void* p) {
    char text[2 + 2 * sizeof(std::uintptr_t) + 1];
    std::snprintf(text, sizeof text, "0x%" PRIxPTR, reinterpret_cast<std::uintptr_t>(p));
    return text;
  }

  static std::string tag_suffix(const allocation_record& record) {
    return record.tag.empty() ? std::string() : " (tag \"" + record.tag + "\")";
  }

  R upstream_;
  tracking_options options_;
  // timeline_event::seconds counts from here
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::unordered_map<void*, allocation_record> records_;  // outstanding allocations by pointer
  std::uint64_t next_sequence_ = 0;
  std::size_t outstanding_bytes_ = 0;  // == sum of records_[*].bytes
  std::string default_tag_;
  leak_handler leak_handler_;           // empty: print to stderr
  std::vector<timeline_event> events_;  // size() <= options_.max_events
  std::size_t dropped_events_ = 0;
};

/// @brief While it lives, allocations through `tracker` made without a tag get `tag`; the
/// previous default tag comes back at destruction, so scopes nest.
///   { frugal::scoped_tag tag{tracker, "activations"}; run_layer(tracker); }
template <resource R>
class scoped_tag {
 public:
  /// @param tracker the adaptor whose default tag to set; must outlive the scoped_tag
  /// @param tag the tag for allocations made while this object lives
  scoped_tag(tracking_adaptor<R>& tracker, std::string tag)
      : tracker_(tracker), previous_(tracker.default_tag()) {
    tracker_.set_default_tag(std::move(tag));
  }
  scoped_tag(const scoped_tag&) = delete;
  scoped_tag& operator=(const scoped_tag&) = delete;
  ~scoped_tag() { tracker_.set_default_tag(std::move(previous_)); }

 private:
  tracking_adaptor<R>& tracker_;
  std::string previous_;
};

/// @brief Throws unless nothing is outstanding in `tracker`: for tests and shutdown checks.
/// @param tracker the adaptor to check
/// @param where what is being checked, e.g. "after unloading the model"; starts the message
/// @throws frugal::error whose what() is `where` followed by tracker.report(), which names each
/// outstanding tag with its count and bytes
template <resource R>
void expect_no_outstanding(const tracking_adaptor<R>& tracker, std::string_view where) {
  if (tracker.outstanding_count() == 0) return;
  FRUGAL_FAIL_AT(where, "expected no outstanding allocations, but " + tracker.report(), error);
}

}  // namespace frugal

static_assert(frugal::resource_with<frugal::tracking_adaptor<frugal::host_resource>,
                                    frugal::host_accessible>);
