// Allocation traces: the RMM log parser and writer, replay against frugal's allocators and the
// naive first-fit heap, and the synthetic serving trace.
#include <frugal/error.hpp>
#include <frugal/mr/arena.hpp>
#include <frugal/mr/pool.hpp>
#include <frugal/mr/stats_adaptor.hpp>
#include <frugal/mr/virtual_resource.hpp>
#include <frugal/sim/first_fit.hpp>
#include <frugal/sim/trace.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <istream>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <unordered_map>

namespace frugal::sim {
namespace {

// ---- parsing -------------------------------------------------------------------------------

[[noreturn]] void fail(const std::string& source, std::size_t line, const std::string& what) {
  FRUGAL_FAIL_AT(source + ":" + std::to_string(line), what, error);
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

/// At most 60 characters of `s`, printable, quoted, for messages.
std::string quote(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 60)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 60) out += "...";
  return out + "'";
}

/// Splits `row` at commas into exactly `n` fields; false when the count differs.
bool split(std::string_view row, std::string_view* fields, std::size_t n, std::size_t& count) {
  count = 0;
  for (;;) {
    const auto comma = row.find(',');
    if (count < n) fields[count] = trim(row.substr(0, comma));
    ++count;
    if (comma == std::string_view::npos) break;
    row.remove_prefix(comma + 1);
  }
  return count == n;
}

/// An unsigned integer, 0x hex or decimal; nullopt-like false when malformed or out of range.
bool parse_unsigned(std::string_view text, std::uint64_t& value, bool hex_default = false) {
  int base = hex_default ? 16 : 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return ec == std::errc{} && end == text.data() + text.size();
}

/// Seconds: a decimal number ("1634567890.123456") or a clock time ("09:15:26.123456").
bool parse_time(std::string_view text, double& seconds) {
  if (text.empty()) return false;
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    return ec == std::errc{} && end == text.data() + text.size() && std::isfinite(seconds);
  }
  std::uint64_t hours = 0, minutes = 0;
  const auto second_colon = text.find(':', colon + 1);
  if (second_colon == std::string_view::npos || !parse_unsigned(text.substr(0, colon), hours) ||
      !parse_unsigned(text.substr(colon + 1, second_colon - colon - 1), minutes) || hours > 23 ||
      minutes > 59)
    return false;
  const std::string_view rest = text.substr(second_colon + 1);
  double secs = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), secs);
  if (ec != std::errc{} || end != rest.data() + rest.size() || rest.empty() || rest[0] == '-' ||
      !(secs < 61))
    return false;
  seconds = static_cast<double>(hours * 3600 + minutes * 60) + secs;
  return true;
}

}  // namespace

trace parse_rmm_log(std::istream& in, std::string source_name) {
  trace result;
  result.source = std::move(source_name);
  const std::string& source = result.source;
  std::string line;
  std::size_t number = 0;
  bool saw_header = false;
  while (std::getline(in, line)) {
    ++number;
    // A last line without its newline may be a log cut off mid-write: say so in errors.
    const bool unterminated = in.eof();
    const auto where = [&](const std::string& what) {
      fail(source, number, unterminated ? what + " (last line has no newline: truncated?)" : what);
    };
    std::string_view text = line;
    if (!saw_header) {
      if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 byte-order mark
      std::string_view fields[6];
      std::size_t count = 0;
      const bool six = split(text, fields, 6, count);
      static constexpr std::string_view names[6] = {"Thread",  "Time", "Action",
                                                    "Pointer", "Size", "Stream"};
      bool same = six;
      for (std::size_t i = 0; same && i < 6; ++i) same = fields[i] == names[i];
      if (!same)
        where("wrong header: expected '" + std::string(rmm_log_header) + "', got " + quote(text));
      saw_header = true;
      continue;
    }
    if (trim(text).empty()) continue;
    std::string_view f[6];
    std::size_t count = 0;
    if (!split(text, f, 6, count))
      where("malformed row: expected 6 fields (Thread,Time,Action,Pointer,Size,Stream), got " +
            std::to_string(count) + ": " + quote(text));
    trace_event e;
    e.line = number;
    if (f[2] == "allocate")
      e.action = trace_action::allocate;
    else if (f[2] == "free")
      e.action = trace_action::free;
    else if (f[2] == "allocate failure")
      e.action = trace_action::allocate_failure;
    else
      where("unknown action " + quote(f[2]) + " (expected allocate, free or allocate failure)");
    std::uint64_t size = 0;
    if (!parse_unsigned(f[0], e.thread)) where("bad Thread " + quote(f[0]) + ": not an integer");
    if (!parse_time(f[1], e.time)) where("bad Time " + quote(f[1]) + ": not a time in seconds");
    if (!parse_unsigned(f[3], e.pointer, f[3].size() > 2 && f[3][0] == '0'))
      where("bad Pointer " + quote(f[3]) + ": not an address");
    if (!parse_unsigned(f[4], size) || f[4].substr(0, 2) == "0x")
      where("bad Size " + quote(f[4]) + ": not a decimal byte count");
    if (size > std::numeric_limits<std::size_t>::max() / 2)
      where("bad Size " + quote(f[4]) + ": larger than any allocation");
    e.size = static_cast<std::size_t>(size);
    if (!parse_unsigned(f[5], e.stream)) where("bad Stream " + quote(f[5]) + ": not an integer");
    switch (e.action) {
      case trace_action::allocate:
        ++result.allocations;
        break;
      case trace_action::free:
        ++result.frees;
        break;
      case trace_action::allocate_failure:
        ++result.logged_failures;
        break;
    }
    result.events.push_back(e);
  }
  if (!saw_header)
    fail(source, 1, "empty trace: expected the header '" + std::string(rmm_log_header) + "'");
  return result;
}

trace parse_rmm_log_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    FRUGAL_FAIL(path + ": is a directory, not a trace file", error);
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) FRUGAL_FAIL(path + ": cannot open trace: " + std::strerror(errno), error);
  return parse_rmm_log(in, path);
}

void write_rmm_log(std::ostream& out, std::span<const trace_event> events) {
  out << rmm_log_header << '\n';
  char row[160];
  for (const trace_event& e : events) {
    const char* action = e.action == trace_action::allocate ? "allocate"
                         : e.action == trace_action::free   ? "free"
                                                            : "allocate failure";
    const int n =
        std::snprintf(row, sizeof row, "%" PRIu64 ",%.6f,%s,0x%" PRIx64 ",%zu,0x%" PRIx64 "\n",
                      e.thread, e.time, action, e.pointer, e.size, e.stream);
    out.write(row, n);
  }
}

// ---- replay --------------------------------------------------------------------------------

std::string_view to_string(allocator_kind kind) noexcept {
  switch (kind) {
    case allocator_kind::pool:
      return "pool";
    case allocator_kind::arena:
      return "arena";
    case allocator_kind::first_fit:
      return "first-fit";
    case allocator_kind::malloc:
      return "malloc";
    case allocator_kind::cuda:
      return "cuda";
  }
  return "?";
}

allocator_kind parse_allocator_kind(std::string_view name) {
  constexpr allocator_kind kinds[] = {allocator_kind::pool, allocator_kind::arena,
                                      allocator_kind::first_fit, allocator_kind::malloc,
                                      allocator_kind::cuda};
  for (const allocator_kind k : kinds)
    if (name == to_string(k)) return k;
  if (name == "first_fit") return allocator_kind::first_fit;
  std::string known;
  for (const allocator_kind k : kinds) {
    if (!known.empty()) known += ", ";
    known += to_string(k);
  }
  FRUGAL_FAIL("unknown allocator '" + std::string(name) + "' (known: " + known + ")",
              invalid_argument);
  return allocator_kind::pool;
}

namespace {

constexpr std::size_t max_address_space = std::size_t{1} << 46;  // 64 TiB: well inside x86-64's 128

/// Address space to reserve so an uncapped allocator never runs out: the sum of every allocation
/// (each rounded up), twice, plus room for chunk rounding; clipped to 64 TiB.
std::size_t uncapped_space(std::span<const trace_event> events) {
  std::size_t total = std::size_t{1} << 30;
  for (const auto& e : events)
    if (e.action == trace_action::allocate) {
      total += (e.size + 4095) / 4096 * 4096;
      if (total > max_address_space) return max_address_space;
    }
  return std::min(2 * total, max_address_space);
}

using vref = ref_t<virtual_resource>;
using counted = stats_adaptor<vref>;

class pool_backend final : public replay_backend {
 public:
  pool_backend(std::size_t space, std::size_t cap, bool preallocate)
      : space_({.reserve_bytes = space, .commit = false}),
        pool_(
            counted{frugal::ref(space_)},
            pool_options{.initial_size = preallocate && cap != no_cap ? cap : 0, .max_size = cap}) {
  }
  std::string name() const override { return "pool"; }
  void* try_allocate(std::size_t bytes) noexcept override { return pool_.try_allocate(bytes); }
  void deallocate(void* p, std::size_t bytes) noexcept override { pool_.deallocate(p, bytes); }
  std::size_t bytes_reserved() const noexcept override {
    return pool_.upstream().stats().bytes_in_use;
  }

 private:
  virtual_resource space_;
  pool_resource<counted> pool_;
};

class arena_backend final : public replay_backend {
 public:
  arena_backend(std::size_t space, std::size_t cap)
      : space_({.reserve_bytes = space, .commit = false}),
        arena_(counted{frugal::ref(space_)}, arena_options{.max_size = cap}) {}
  std::string name() const override { return "arena"; }
  void* try_allocate(std::size_t bytes) noexcept override { return arena_.try_allocate(bytes); }
  void deallocate(void* p, std::size_t bytes) noexcept override { arena_.deallocate(p, bytes); }
  std::size_t bytes_reserved() const noexcept override {
    return arena_.upstream().stats().bytes_in_use;
  }

 private:
  virtual_resource space_;
  arena_resource<counted> arena_;
};

class first_fit_backend final : public replay_backend {
 public:
  explicit first_fit_backend(std::size_t capacity)
      : space_({.reserve_bytes = capacity, .commit = false}),
        heap_(frugal::ref(space_), capacity) {}
  std::string name() const override { return "first-fit"; }
  void* try_allocate(std::size_t bytes) noexcept override { return heap_.try_allocate(bytes); }
  void deallocate(void* p, std::size_t bytes) noexcept override { heap_.deallocate(p, bytes); }
  std::size_t bytes_reserved() const noexcept override { return heap_.reserved(); }

 private:
  virtual_resource space_;
  first_fit_device<vref> heap_;
};

class malloc_backend final : public replay_backend {
 public:
  explicit malloc_backend(std::size_t cap) : cap_(cap) {}
  std::string name() const override { return "malloc"; }
  void* try_allocate(std::size_t bytes) noexcept override {
    if (bytes > cap_ - std::min(cap_, in_use_)) return nullptr;
    void* p = std::malloc(bytes);
    if (p != nullptr) in_use_ += bytes;
    return p;
  }
  void deallocate(void* p, std::size_t bytes) noexcept override {
    std::free(p);
    in_use_ -= bytes;
  }
  std::size_t bytes_reserved() const noexcept override { return in_use_; }

 private:
  std::size_t cap_;
  std::size_t in_use_ = 0;
};

struct live_block {
  void* p;  // nullptr: the allocation was refused; its free is skipped
  std::size_t size;
};

}  // namespace

replay_result replay(std::span<const trace_event> events, allocator_kind kind,
                     std::size_t cap_bytes, const replay_options& options) {
  FRUGAL_EXPECTS(kind != allocator_kind::cuda,
                 "allocator 'cuda' replays only in a program built with CUDA (frugal::cuda) on a "
                 "machine with a device",
                 invalid_argument);
  FRUGAL_EXPECTS(cap_bytes > 0, "replay: the cap must be positive", invalid_argument);
  std::unique_ptr<replay_backend> backend;
  const std::size_t space = cap_bytes == no_cap ? uncapped_space(events) : std::size_t{0};
  switch (kind) {
    case allocator_kind::pool:
    case allocator_kind::arena: {
      // The cap binds through max_size; the reservation leaves room for chunk rounding.
      const std::size_t reserve =
          cap_bytes == no_cap
              ? space
              : std::min(cap_bytes + cap_bytes / 8 + (std::size_t{1} << 30), max_address_space);
      if (kind == allocator_kind::pool)
        backend = std::make_unique<pool_backend>(reserve, cap_bytes, options.pool_preallocate);
      else
        backend = std::make_unique<arena_backend>(reserve, cap_bytes);
      break;
    }
    case allocator_kind::first_fit:
      backend = std::make_unique<first_fit_backend>(
          cap_bytes == no_cap ? space : std::min(cap_bytes, max_address_space));
      break;
    case allocator_kind::malloc:
      backend = std::make_unique<malloc_backend>(cap_bytes);
      break;
    case allocator_kind::cuda:
      break;
  }
  replay_result r = replay(events, *backend, options);
  r.allocator = std::string(to_string(kind));
  r.cap = cap_bytes;
  return r;
}

replay_result replay(std::span<const trace_event> events, replay_backend& backend,
                     const replay_options& options) {
  replay_result r;
  r.allocator = backend.name();
  std::unordered_map<std::uint64_t, live_block> live;
  live.reserve(std::min<std::size_t>(events.size(), std::size_t{1} << 22));
  std::size_t in_use = 0;
  const std::size_t points = std::max<std::size_t>(options.timeline_points, 1);
  const std::size_t bucket = std::max<std::size_t>(1, (events.size() + points - 1) / points);
  timeline_sample sample;
  bool sample_pending = false;
  std::vector<live_block> leaked;  // older blocks of pointers allocated twice
  const auto warn = [&](std::size_t& counter, const trace_event& e, const std::string& what) {
    ++counter;
    ++r.warnings;
    if (r.warning_messages.size() < options.max_warning_messages)
      r.warning_messages.push_back("line " + std::to_string(e.line) + ": " + what);
  };
  const auto hex = [](std::uint64_t v) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%" PRIx64, v);
    return std::string(text);
  };

  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const trace_event& e = events[i];
    if (e.action == trace_action::allocate_failure) {
      ++r.logged_failures;
    } else if (e.action == trace_action::allocate) {
      if (e.size == 0) {
        // A zero-byte allocation holds nothing but is an event; its free is counted too.
        ++r.events;
        ++r.allocations;
        ++r.zero_byte_allocations;
        if (e.pointer != 0) live.insert_or_assign(e.pointer, live_block{nullptr, 0});
        continue;
      }
      if (e.pointer == 0) continue;  // nothing was handed out
      ++r.events;
      ++r.allocations;
      void* p = backend.try_allocate(e.size);
      if (p == nullptr) {
        if (r.failed_allocations == 0) r.first_failure_event = i;
        ++r.failed_allocations;
        r.failed_bytes += e.size;
      } else {
        in_use += e.size;
      }
      auto [it, inserted] = live.try_emplace(e.pointer, live_block{p, e.size});
      if (!inserted) {
        warn(r.duplicate_allocations, e,
             "allocate of " + hex(e.pointer) + " which is still live; the older block is kept");
        if (it->second.p != nullptr) leaked.push_back(it->second);  // as it would in the program
        it->second = live_block{p, e.size};
      }
    } else {
      if (e.pointer == 0) {  // free(nullptr): the free of a zero-byte allocation, or nothing
        if (e.size == 0) {
          ++r.events;
          ++r.frees;
        }
        continue;
      }
      ++r.events;
      auto it = live.find(e.pointer);
      if (it == live.end()) {
        warn(r.unknown_frees, e,
             "free of " + hex(e.pointer) + " which is not live (never allocated or already freed)");
      } else {
        if (e.size != it->second.size)
          warn(r.size_mismatches, e,
               "free of " + hex(e.pointer) + " with " + std::to_string(e.size) +
                   " bytes, allocated with " + std::to_string(it->second.size));
        if (it->second.p != nullptr) {
          backend.deallocate(it->second.p, it->second.size);
          in_use -= it->second.size;
          ++r.frees;
        } else if (it->second.size == 0) {
          ++r.frees;  // of a zero-byte allocation
        }
        live.erase(it);
      }
    }
    const std::size_t reserved = backend.bytes_reserved();
    r.peak_bytes_in_use = std::max(r.peak_bytes_in_use, in_use);
    r.peak_bytes_reserved = std::max(r.peak_bytes_reserved, reserved);
    if (options.timeline_points > 0) {
      sample.bytes_in_use = std::max(sample.bytes_in_use, in_use);
      sample.bytes_reserved = std::max(sample.bytes_reserved, reserved);
      sample.event = i;
      sample_pending = true;
      if ((i + 1) % bucket == 0) {
        r.timeline.push_back(sample);
        sample = {};
        sample_pending = false;
      }
    }
  }
  if (sample_pending) r.timeline.push_back(sample);
  const auto stop = std::chrono::steady_clock::now();
  r.seconds = std::chrono::duration<double>(stop - start).count();
  r.events_per_second = r.seconds > 0 ? static_cast<double>(r.events) / r.seconds : 0;
  r.live_bytes_at_end = in_use;
  for (const auto& [pointer, block] : live)
    if (block.p != nullptr) ++r.live_allocations_at_end;
  r.live_allocations_at_end += leaked.size();
  r.bytes_reserved_at_end = backend.bytes_reserved();
  // Return what is still live so the backend is destroyed empty.
  for (const auto& [pointer, block] : live)
    if (block.p != nullptr) backend.deallocate(block.p, block.size);
  for (const live_block& block : leaked) backend.deallocate(block.p, block.size);
  return r;
}

}  // namespace frugal::sim
