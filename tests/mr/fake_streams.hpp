// A fake device for stream-ordered allocators: streams are ints, events remember what was
// enqueued before them (a vector clock), and the fake records every event operation so that a
// test can ask whether a stream's later work is ordered after a given point of another stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace frugal::testing {

class fake_streams {
 public:
  using clock = std::map<int, std::uint64_t>;  // stream -> position known complete

  /// Enqueues work on stream s; returns its position.
  std::uint64_t enqueue(int s) {
    const std::uint64_t p = ++position_[s];
    clocks_[s][s] = p;
    return p;
  }
  std::uint64_t position(int s) { return position_[s]; }

  /// Whether work enqueued on t from now on runs after stream s's work up to `position`
  /// (through waits on events, also transitively, a host synchronization, or because that work
  /// has completed).
  bool has_seen(int t, int s, std::uint64_t position) const {
    if (t == s) return true;
    return std::max({get(clocks_, t, s), get_host(s), get(completed_, s)}) >= position;
  }

  /// Events up to here on every stream complete (query returns true for them).
  void complete_all() { completed_ = position_; }
  /// Marks a stream destroyed: any later operation on it or its events is an error.
  void destroy_stream(int s) { destroyed_.insert(s); }

  std::vector<std::string> errors;  // violations found by the policy
  int creates = 0, destroys = 0, records = 0, waits = 0, synchronizes = 0, queries = 0;

  struct event {
    int stream = -1;
    clock at;
    bool destroyed = false;
  };
  std::vector<event> events;

  // ---- the operations, as fake_stream_policy calls them ----
  std::size_t create() {
    ++creates;
    events.push_back({});
    return events.size() - 1;
  }
  void destroy(std::size_t e) {
    ++destroys;
    if (events[e].destroyed) errors.push_back("event destroyed twice");
    events[e].destroyed = true;
  }
  void record(std::size_t e, int s) {
    ++records;
    check_stream(s, "record");
    check_event(e, "record");
    enqueue(s);
    events[e].stream = s;
    events[e].at = clocks_[s];
  }
  void wait(int t, std::size_t e) {
    ++waits;
    check_stream(t, "wait");
    check_event(e, "wait");
    if (events[e].stream >= 0) check_stream(events[e].stream, "wait on an event of");
    for (auto [s, p] : events[e].at) clocks_[t][s] = std::max(clocks_[t][s], p);
  }
  void synchronize(std::size_t e) {
    ++synchronizes;
    check_event(e, "synchronize");
    for (auto [s, p] : events[e].at) host_[s] = std::max(host_[s], p);
  }
  bool query(std::size_t e) {
    ++queries;
    check_event(e, "query");
    const event& ev = events[e];
    if (ev.stream < 0) return true;
    return get(completed_, ev.stream) >= ev.at.at(ev.stream);
  }

 private:
  static std::uint64_t get(const std::map<int, clock>& m, int t, int s) {
    auto it = m.find(t);
    if (it == m.end()) return 0;
    auto jt = it->second.find(s);
    return jt == it->second.end() ? 0 : jt->second;
  }
  static std::uint64_t get(const clock& c, int s) {
    auto it = c.find(s);
    return it == c.end() ? 0 : it->second;
  }
  std::uint64_t get_host(int s) const { return get(host_, s); }
  void check_stream(int s, const char* what) {
    if (destroyed_.count(s) != 0) errors.push_back(std::string(what) + " a destroyed stream");
  }
  void check_event(std::size_t e, const char* what) {
    if (e >= events.size() || events[e].destroyed)
      errors.push_back(std::string(what) + " a destroyed or unknown event");
  }

  std::map<int, std::uint64_t> position_;
  std::map<int, clock> clocks_;
  clock host_;
  clock completed_;
  std::set<int> destroyed_;
};

/// The stream policy of stream_pool_resource over a fake_streams.
struct fake_stream_policy {
  using stream_type = int;
  using event_type = std::size_t;
  fake_streams* device;

  event_type create_event() { return device->create(); }
  void destroy_event(event_type e) noexcept { device->destroy(e); }
  void record(event_type e, stream_type s) noexcept { device->record(e, s); }
  void wait(stream_type s, event_type e) noexcept { device->wait(s, e); }
  void synchronize(event_type e) noexcept { device->synchronize(e); }
  bool query(event_type e) noexcept { return device->query(e); }
  stream_type default_stream() const noexcept { return 0; }
};

}  // namespace frugal::testing
