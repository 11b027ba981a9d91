// frugal/batch/workspace.hpp: the per-step activation arena of a serving engine, sized to the
// tokens actually in the step. It grows to the high-water mark and gives memory back after a
// run of smaller steps, instead of reserving for max_batched_tokens up front.
//   frugal::batch::workspace ws{gpu, {.bytes_per_token = 120 << 10}};
//   ws.begin_step(plan.num_batched_tokens);
//   void* h = ws.allocate(bytes);  /* the step's kernels */  ws.end_step();
#pragma once

#include <frugal/mr/arena.hpp>
#include <frugal/mr/resource_ref.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

namespace frugal::batch {

/// @brief Sizing policy of a workspace.
struct workspace_options {
  /// Activation bytes one token of a step needs (all of a forward pass's live intermediates
  /// for one token); must be positive.
  std::size_t bytes_per_token = 0;
  /// Consecutive steps below the high-water mark after which memory goes back to the upstream,
  /// keeping what the largest of those steps needed; 0: never give memory back.
  std::uint32_t shrink_after_steps = 8;
  /// Capacity is a multiple of this (a power of two, at least 256): fewer, larger upstream
  /// calls, and steps that differ by a few tokens count as the same size. 2 MiB is the granule
  /// of CUDA's virtual memory on current GPUs.
  std::size_t granularity = vmm_granule;
  /// Cap on the bytes held from the upstream; a step needing more is refused (out_of_memory).
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
};

/// @brief Counters of a workspace (see workspace::stats()).
/// Between steps: bytes_reserved == high_water_mark, unless an upstream call failed.
struct workspace_stats {
  std::size_t bytes_reserved = 0;  ///< held from the upstream now
  /// The largest step need (prepared or allocated, rounded up to the granularity) since the last
  /// shrink: what the workspace keeps between steps.
  std::size_t high_water_mark = 0;
  std::size_t peak_bytes_reserved = 0;  ///< most ever held from the upstream
  std::size_t peak_bytes_in_use = 0;    ///< most bytes one step allocated
  std::size_t step_bytes = 0;           ///< prepared by the current step's begin_step (0 outside)
  std::size_t bytes_in_use = 0;         ///< allocated in the current step (padding included)
  std::uint32_t steps_below = 0;        ///< consecutive finished steps below the high-water mark
  std::size_t steps = 0;                ///< finished steps
  std::size_t grows = 0;                ///< times capacity went up
  std::size_t shrinks = 0;              ///< times capacity went down
};

/// @brief A step arena over any resource (see docs/batch.md#workspace). begin_step(num_tokens)
/// makes sure one contiguous chunk holds num_tokens x bytes_per_token (plus extra bytes);
/// allocate() bumps a pointer in it (an arena_resource underneath, bookkeeping off-band, so it
/// runs over device memory); end_step() releases the whole step at once.
///
/// Capacity follows the steps: it grows to a step's need at begin_step (and to what a step really
/// allocated, if that was more, at end_step), and after shrink_after_steps consecutive steps below
/// the high-water mark it shrinks to the largest need among those steps. Allocations beyond the
/// prepared capacity are served from an extra chunk and folded into one chunk at end_step.
///
/// A workspace is a resource itself (allocate, deallocate, try_allocate, ==), so tensors and
/// anything else that takes a resource can allocate step memory from it; outside a step it
/// refuses. Its memory properties are the upstream's, known at run time (any_resource_ref).
/// Not thread safe.
class workspace {
 public:
  /// @param upstream any resource (device memory for a real engine); must outlive the workspace
  /// @throws invalid_argument for a zero bytes_per_token or a granularity that is not a power of
  /// two of at least 256
  workspace(any_resource_ref upstream, workspace_options options)
      : upstream_(upstream), options_(options) {
    FRUGAL_EXPECTS(options_.bytes_per_token > 0, "batch::workspace: bytes_per_token is zero",
                   invalid_argument);
    FRUGAL_EXPECTS(
        detail::is_pow2(options_.granularity) && options_.granularity >= default_alignment,
        "batch::workspace: granularity must be a power of two of at least 256, not " +
            std::to_string(options_.granularity),
        invalid_argument);
  }
  workspace(const workspace&) = delete;
  workspace& operator=(const workspace&) = delete;
  ~workspace() = default;

  // ---- steps -------------------------------------------------------------------------------

  /// @brief Starts a step of `num_tokens` tokens: capacity becomes at least
  /// num_tokens x bytes_per_token + extra_bytes, rounded up to the granularity (one upstream
  /// call when it grows: the old chunk is returned first, then the larger one taken).
  /// @param extra_bytes per-step memory not proportional to the tokens (logits of the sampled
  /// sequences, a kernel's scratch)
  /// @returns the bytes the step can allocate without growing
  /// @throws invalid_argument inside a step (end_step first)
  /// @throws out_of_memory past max_bytes or when the upstream refuses; the capacity is then as
  /// before (re-acquired from the upstream that just took it back; should even that fail, the
  /// workspace is left empty but valid)
  std::size_t begin_step(std::size_t num_tokens, std::size_t extra_bytes = 0) {
    FRUGAL_EXPECTS(!in_step_,
                   "batch::workspace::begin_step: a step is already open (end_step first)",
                   invalid_argument);
    const std::size_t need = bytes_for(num_tokens, extra_bytes);
    if (need > capacity()) {
      const std::size_t target = std::min(round_up(need), options_.max_bytes);
      replace_chunk(target, need);
      ++stats_.grows;
      stats_.high_water_mark = std::max(stats_.high_water_mark, target);
    }
    start_ = arena_ ? arena_->mark() : arena_marker{};
    start_bytes_ = arena_ ? arena_->bytes_in_use() : 0;
    stats_.step_bytes = need;
    step_peak_ = 0;
    in_step_ = true;
    return capacity();
  }

  /// @brief Ends the step: everything allocated in it is released at once, and the capacity is
  /// adjusted (see the class comment). Never throws: when the upstream refuses a resize the
  /// workspace keeps what it has, or nothing, and the next begin_step asks again.
  /// @throws invalid_argument outside a step
  void end_step() {
    FRUGAL_EXPECTS(in_step_, "batch::workspace::end_step: no step is open (begin_step first)",
                   invalid_argument);
    note_use();
    const std::size_t used = std::max(stats_.step_bytes, step_peak_);
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, step_peak_);
    if (arena_) arena_->release(start_);
    in_step_ = false;
    stats_.step_bytes = 0;
    ++stats_.steps;
    const std::size_t target = std::min(round_up(used), options_.max_bytes);
    if (target > stats_.high_water_mark || (arena_ && arena_->num_chunks() > 1)) {
      // The step allocated past what it prepared: one chunk of the new mark replaces the chunks.
      if (target > stats_.high_water_mark) ++stats_.grows;
      stats_.high_water_mark = std::max(stats_.high_water_mark, target);
      if (!arena_ || arena_->num_chunks() != 1 || capacity() != stats_.high_water_mark)
        try_replace_chunk(stats_.high_water_mark);
      stats_.steps_below = 0;
      recent_ = 0;
    } else if (target == stats_.high_water_mark) {
      stats_.steps_below = 0;
      recent_ = 0;
    } else {
      ++stats_.steps_below;
      recent_ = std::max(recent_, target);
      if (options_.shrink_after_steps != 0 && stats_.steps_below >= options_.shrink_after_steps) {
        stats_.high_water_mark = recent_;
        if (!arena_ || arena_->num_chunks() != 1 || capacity() != recent_)
          try_replace_chunk(recent_);
        ++stats_.shrinks;
        stats_.steps_below = 0;
        recent_ = 0;
      }
    }
  }

  /// @brief RAII form of begin_step / end_step: `auto step = ws.scoped_step(tokens);`.
  class step_guard {
   public:
    step_guard(const step_guard&) = delete;
    step_guard& operator=(const step_guard&) = delete;
    ~step_guard() {
      if (ws_ != nullptr && ws_->in_step_) ws_->end_step();
    }
    /// @returns the bytes the step can allocate without growing
    std::size_t capacity() const noexcept { return capacity_; }

   private:
    friend class workspace;
    step_guard(workspace& ws, std::size_t capacity) noexcept : ws_(&ws), capacity_(capacity) {}
    workspace* ws_;
    std::size_t capacity_;
  };
  /// @brief begin_step now, end_step when the guard goes out of scope.
  [[nodiscard]] step_guard scoped_step(std::size_t num_tokens, std::size_t extra_bytes = 0) {
    const std::size_t c = begin_step(num_tokens, extra_bytes);
    return step_guard(*this, c);
  }

  // ---- the resource ------------------------------------------------------------------------

  /// @brief Bumps `bytes` off the step's chunk (O(1)); past the capacity an extra chunk is taken
  /// from the upstream (up to max_bytes in all).
  /// @returns nullptr for zero bytes
  /// @throws invalid_argument outside a step or for an alignment that is not a power of two
  /// @throws out_of_memory past max_bytes or when the upstream refuses (nothing changes)
  void* allocate(std::size_t bytes, std::size_t alignment = default_alignment) {
    FRUGAL_EXPECTS(in_step_, "batch::workspace::allocate: outside a step (begin_step first)",
                   invalid_argument);
    detail::check_alignment(alignment, "batch::workspace");
    if (bytes == 0) return nullptr;
    void* p = try_allocate(bytes, alignment);
    if (p == nullptr)
      FRUGAL_OUT_OF_MEMORY(bytes,
                           "step capacity " + format_bytes(capacity()) + ", in use " +
                               format_bytes(bytes_in_use()) + ", max " +
                               format_bytes(options_.max_bytes),
                           "batch::workspace");
    return p;
  }

  /// @brief As allocate, but returns nullptr instead of throwing (also outside a step).
  void* try_allocate(std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (!in_step_ || bytes == 0 || !detail::is_pow2(alignment)) return nullptr;
    if (!arena_) {
      // An empty workspace (a step of zero bytes) that is asked for memory: start a chunk.
      try {
        arena_ = std::make_unique<arena_type>(upstream_, arena_options_for(0));
      } catch (...) {
        return nullptr;
      }
      start_ = arena_->mark();
      start_bytes_ = 0;
    }
    void* p = arena_->try_allocate(bytes, alignment);
    if (p != nullptr) note_use();
    note_reserved();
    return p;
  }

  /// @brief Reclaims the block if it is the step's most recent one; the rest goes at end_step.
  void deallocate(void* p, std::size_t bytes, std::size_t alignment = default_alignment) noexcept {
    if (p == nullptr || !arena_) return;
    note_use();
    arena_->deallocate(p, bytes, alignment);
  }

  friend bool operator==(const workspace& a, const workspace& b) noexcept { return &a == &b; }

  // ---- state -------------------------------------------------------------------------------

  /// @brief Bytes held from the upstream now.
  std::size_t capacity() const noexcept { return arena_ ? arena_->stats().bytes_reserved : 0; }
  /// @brief Bytes allocated in the current step (0 outside a step).
  std::size_t bytes_in_use() const noexcept {
    return in_step_ && arena_ ? arena_->bytes_in_use() - start_bytes_ : 0;
  }
  bool in_step() const noexcept { return in_step_; }
  workspace_stats stats() const noexcept {
    workspace_stats s = stats_;
    s.bytes_reserved = capacity();
    s.bytes_in_use = bytes_in_use();
    s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, std::max(step_peak_, s.bytes_in_use));
    return s;
  }
  /// @brief Bytes a step of num_tokens tokens (and extra_bytes) prepares, before rounding.
  /// @throws invalid_argument when the product overflows
  std::size_t bytes_for(std::size_t num_tokens, std::size_t extra_bytes = 0) const {
    const std::size_t max = std::numeric_limits<std::size_t>::max();
    FRUGAL_EXPECTS(num_tokens <= (max - extra_bytes) / options_.bytes_per_token,
                   "batch::workspace: " + std::to_string(num_tokens) + " tokens x " +
                       std::to_string(options_.bytes_per_token) + " bytes overflows",
                   invalid_argument);
    return num_tokens * options_.bytes_per_token + extra_bytes;
  }
  const workspace_options& options() const noexcept { return options_; }
  any_resource_ref upstream() const noexcept { return upstream_; }
  bool host_accessible() const noexcept { return upstream_.host_accessible(); }
  bool device_accessible() const noexcept { return upstream_.device_accessible(); }

 private:
  using arena_type = arena_resource<any_resource_ref>;

  std::size_t round_up(std::size_t bytes) const noexcept {
    if (bytes > std::numeric_limits<std::size_t>::max() - options_.granularity) return bytes;
    return detail::align_up(bytes, options_.granularity);
  }
  arena_options arena_options_for(std::size_t initial) const noexcept {
    return {.initial_size = initial,
            .chunk_size = options_.granularity,
            .max_size = options_.max_bytes};
  }
  void note_use() noexcept { step_peak_ = std::max(step_peak_, bytes_in_use()); }
  void note_reserved() noexcept {
    stats_.peak_bytes_reserved = std::max(stats_.peak_bytes_reserved, capacity());
  }

  /// Between steps (or at begin_step, before the step opens): one chunk of `target` bytes in
  /// place of the current ones, returning the old first so the upstream never holds both.
  /// @throws out_of_memory, the old capacity re-acquired (best effort)
  void replace_chunk(std::size_t target, std::size_t need) {
    if (need > options_.max_bytes)
      FRUGAL_OUT_OF_MEMORY(need,
                           "max_bytes " + format_bytes(options_.max_bytes) + ", reserved " +
                               format_bytes(capacity()),
                           "batch::workspace");
    const std::size_t old = capacity();
    arena_.reset();
    try {
      arena_ = std::make_unique<arena_type>(upstream_, arena_options_for(target));
    } catch (const out_of_memory&) {
      if (old != 0) try_replace_chunk(old);
      FRUGAL_OUT_OF_MEMORY(need,
                           "the upstream refused " + format_bytes(target) +
                               " (reserved before: " + format_bytes(old) + ")",
                           "batch::workspace");
    }
    note_reserved();
  }
  /// As replace_chunk, never throwing: on failure the workspace holds nothing.
  void try_replace_chunk(std::size_t target) noexcept {
    arena_.reset();
    if (target == 0) return;
    try {
      arena_ = std::make_unique<arena_type>(upstream_, arena_options_for(target));
    } catch (...) {
      arena_.reset();
    }
    note_reserved();
  }

  any_resource_ref upstream_;
  workspace_options options_;
  std::unique_ptr<arena_type> arena_;  // null while nothing is held
  workspace_stats stats_;
  arena_marker start_{};
  std::size_t start_bytes_ = 0;
  std::size_t step_peak_ = 0;  // most bytes allocated in the current step
  std::size_t recent_ = 0;     // largest need among the current run of steps below the mark
  bool in_step_ = false;
};

}  // namespace frugal::batch

static_assert(frugal::resource<frugal::batch::workspace>);
