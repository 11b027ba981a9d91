// Randomized test of kv::cache against a reference model: adds with shared prefixes and extra
// keys, appends, forks, releases, swaps to the host tier, copy-on-write and prefix-cache resets on
// a small cache, with every invariant and every token's KV slot checked after each operation.
#include <frugal/kv/cache.hpp>
#include <frugal/mr/host_resource.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kv = frugal::kv;
using kv::copy_op;
using kv::page_id;
using kv::token_id;

namespace {

constexpr std::uint32_t page_size = 4;
constexpr std::uint32_t device_pages = 64;
constexpr std::uint32_t host_pages = 32;
constexpr std::size_t max_live = 24;     // sequences alive at once (running or swapped out)
constexpr std::size_t max_prompt = 48;   // tokens: 12 pages
constexpr std::size_t max_tokens = 100;  // appends stop here: 25 pages
constexpr token_id vocabulary = 24;      // small, so unrelated prompts share pages by chance

/// One layer, one head of 4 fp16: a token's K and V are 8 bytes each, room for a 64-bit value.
kv::layout fuzz_layout() {
  return {.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .page_size = page_size};
}

std::size_t pages_for(std::size_t tokens) { return (tokens + page_size - 1) / page_size; }

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

/// The KV of a token depends on the extra key and on every token up to it; the model names it by
/// a hash of that context, never 0 (0 marks a slot nobody wrote: fresh pages are zeroed).
std::uint64_t initial_context(std::uint64_t extra_key) { return mix(extra_key + 0x5EEDull); }
std::uint64_t next_context(std::uint64_t previous, token_id t) {
  const std::uint64_t v =
      mix(previous * 31 + static_cast<std::uint32_t>(t) + 0x9E3779B97F4A7C15ull);
  return v == 0 ? 1 : v;
}

struct fuzz_config {
  std::uint64_t seed = 1;
  int operations = 100000;
  bool prefix_caching = true;
  double watermark = 0.05;  // 3 of 64 pages
};

/// What a run exercised, so a passing run is known not to be vacuous.
struct coverage {
  std::size_t prefix_hits = 0, cow_copies = 0, evictions = 0, add_refused = 0, append_refused = 0,
              swap_out_refused = 0, swap_in_refused = 0, swaps = 0, resets = 0, resets_refused = 0;
};

struct model_sequence {
  kv::sequence handle;
  std::uint32_t name = 0;  // for the operation log
  std::vector<token_id> tokens;
  std::vector<std::uint64_t> values;  // values[i]: what token i's slot must hold
  std::uint64_t extra_key = 0;
  std::vector<page_id> host;  // host pages while swapped out (from swap_out's copies)
  bool swapped = false;
};

/// Everything an all-or-nothing failure must leave as it was.
struct snapshot {
  kv::cache_stats stats;
  std::uint32_t free_pages = 0, host_free = 0;
  std::vector<std::uint32_t> refcounts;
  std::vector<bool> allocated;
  std::vector<std::vector<page_id>> pages;
  std::vector<std::size_t> tokens;
  std::vector<bool> swapped;

  bool operator==(const snapshot& o) const {
    const auto& a = stats;
    const auto& b = o.stats;
    return a.total_pages == b.total_pages && a.used_pages == b.used_pages &&
           a.cached_pages == b.cached_pages && a.free_pages == b.free_pages &&
           a.prefix_hit_rate == b.prefix_hit_rate && a.slots_allocated == b.slots_allocated &&
           a.slots_used == b.slots_used && a.evictions == b.evictions &&
           a.cow_copies == b.cow_copies && a.swaps_out == b.swaps_out && a.swaps_in == b.swaps_in &&
           free_pages == o.free_pages && host_free == o.host_free && refcounts == o.refcounts &&
           allocated == o.allocated && pages == o.pages && tokens == o.tokens &&
           swapped == o.swapped;
  }
};

struct mismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checks cost one branch; the message is built only on failure.
#define FUZZ_EXPECT(cond, what)                                       \
  do {                                                                \
    if (!(cond)) throw mismatch(std::string(what) + "  [" #cond "]"); \
  } while (0)

class fuzzer {
 public:
  explicit fuzzer(const fuzz_config& config)
      : config_(config),
        rng_(config.seed),
        kv_(fuzz_layout(), device_pages, memory_,
            {.enable_prefix_caching = config.prefix_caching,
             .watermark = config.watermark,
             .host_pages = host_pages}) {
    for (int i = 0; i < 4; ++i) system_prompts_.push_back(random_tokens(3 + below(14)));
  }

  /// @returns "" when every check held, else the failed check, the seed and the last operations.
  std::string run(coverage& cov) {
    int op = 0;
    try {
      check_all();
      for (; op < config_.operations; ++op) {
        step();
        check_all();
      }
      finish();
    } catch (const std::exception& e) {
      std::string report = "seed " + std::to_string(config_.seed) + ", prefix caching " +
                           (config_.prefix_caching ? "on" : "off") + ", operation " +
                           std::to_string(op) + ": " + e.what() + "\nlast operations:\n";
      for (const auto& line : log_) report += "  " + line + "\n";
      return report;
    }
    cov = coverage_;
    return "";
  }

 private:
  // ---- randomness ---------------------------------------------------------------------------

  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  token_id random_token() { return static_cast<token_id>(below(vocabulary)); }
  std::vector<token_id> random_tokens(std::size_t n) {
    std::vector<token_id> t(n);
    for (auto& x : t) x = random_token();
    return t;
  }

  /// Prompts share prefixes often: system prompts plus a suffix, a live sequence's tokens (a
  /// conversation going on), a finished one's, or fresh tokens.
  std::pair<std::vector<token_id>, std::uint64_t> random_prompt() {
    std::vector<token_id> p;
    std::uint64_t key = below(10) < 7 ? 0 : 1 + below(2);
    const std::size_t kind = below(100);
    if (kind < 40) {
      p = system_prompts_[below(system_prompts_.size())];
      const auto suffix = random_tokens(below(9));
      p.insert(p.end(), suffix.begin(), suffix.end());
    } else if (kind < 60 && !live_.empty()) {
      const model_sequence& s = live_[below(live_.size())];
      p.assign(s.tokens.begin(),
               s.tokens.begin() + static_cast<std::ptrdiff_t>(1 + below(s.tokens.size())));
      if (below(2) == 0) {
        const auto suffix = random_tokens(1 + below(6));
        p.insert(p.end(), suffix.begin(), suffix.end());
      }
      if (below(5) != 0) key = s.extra_key;
    } else if (kind < 85 && !finished_.empty()) {
      const auto& f = finished_[below(finished_.size())];
      p.assign(f.first.begin(),
               f.first.begin() + static_cast<std::ptrdiff_t>(1 + below(f.first.size())));
      if (below(2) == 0) {
        const auto suffix = random_tokens(1 + below(6));
        p.insert(p.end(), suffix.begin(), suffix.end());
      }
      if (below(5) != 0) key = f.second;
    } else {
      p = random_tokens(1 + below(24));
    }
    if (p.empty()) p.push_back(random_token());
    if (p.size() > max_prompt) p.resize(max_prompt);
    return {std::move(p), key};
  }

  /// Half the time "greedy decoding": the next token follows from the last two, so sequences
  /// with equal prompts generate equal pages.
  std::vector<token_id> generated_tokens(const model_sequence& s, std::size_t n) {
    std::vector<token_id> out;
    const bool greedy = below(2) == 0;
    token_id a = s.tokens.back(), b = s.tokens.size() > 1 ? s.tokens[s.tokens.size() - 2] : 0;
    for (std::size_t i = 0; i < n; ++i) {
      const token_id t =
          greedy ? static_cast<token_id>((a * 7 + b * 3 + static_cast<token_id>(s.extra_key)) %
                                         vocabulary)
                 : random_token();
      out.push_back(t);
      b = a;
      a = t;
    }
    return out;
  }

  // ---- the model's memory: page contents read and written through the pool's addressing ------

  std::uint64_t read_slot(page_id p, std::size_t slot) const {
    const kv::page_addressing a = kv_.pages().addressing();
    std::uint64_t k = 0, v = 0;
    std::memcpy(&k, a.k_base(0) + p * a.page_stride + slot * a.slot_stride, sizeof k);
    std::memcpy(&v, a.v_base(0) + p * a.page_stride + slot * a.slot_stride, sizeof v);
    return v == ~k ? k : 0;  // K and V must agree: V holds the complement
  }
  void write_slot(page_id p, std::size_t slot, std::uint64_t value) {
    const kv::page_addressing a = kv_.pages().addressing();
    const std::uint64_t complement = ~value;
    std::memcpy(a.k_base(0) + p * a.page_stride + slot * a.slot_stride, &value, sizeof value);
    std::memcpy(a.v_base(0) + p * a.page_stride + slot * a.slot_stride, &complement, sizeof value);
  }
  /// A page newly given to a sequence forgets what it held (as if another kernel reused it).
  void zero_page(page_id p) {
    std::memset(kv_.pages().page_address(p), 0, kv_.layout().page_bytes());
  }

  /// The engine's kernel: writes the KV of the sequence's tokens from `from` on, at the slots
  /// slot_mapping gives (which must be page * page_size + offset of each such token).
  void write_new_tokens(model_sequence& s, std::size_t from) {
    const kv::sequence* batch[] = {&s.handle};
    const std::vector<std::int64_t> slots = kv_.slot_mapping(batch);
    const auto pages = s.handle.pages();
    FUZZ_EXPECT(slots.size() == s.tokens.size() - from, "slot_mapping covers the new tokens");
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const std::size_t t = from + i;
      FUZZ_EXPECT(slots[i] == static_cast<std::int64_t>(pages[t / page_size]) * page_size +
                                  static_cast<std::int64_t>(t % page_size),
                  "slot_mapping gives page * page_size + offset");
      write_slot(static_cast<page_id>(slots[i] / page_size),
                 static_cast<std::size_t>(slots[i] % page_size), s.values[t]);
    }
  }

  static void extend(model_sequence& s, std::span<const token_id> tokens) {
    for (const token_id t : tokens) {
      s.values.push_back(
          next_context(s.values.empty() ? initial_context(s.extra_key) : s.values.back(), t));
      s.tokens.push_back(t);
    }
  }

  // ---- snapshots and the full check ---------------------------------------------------------

  snapshot take_snapshot() const {
    snapshot s;
    s.stats = kv_.stats();
    s.free_pages = kv_.num_free_pages();
    s.host_free = kv_.host_pages()->num_free();
    for (page_id p = 0; p < device_pages; ++p) {
      s.refcounts.push_back(kv_.pages().refcount(p));
      s.allocated.push_back(kv_.pages().is_allocated(p));
    }
    for (const model_sequence& m : live_) {
      s.pages.emplace_back(m.handle.pages().begin(), m.handle.pages().end());
      s.tokens.push_back(m.handle.num_tokens());
      s.swapped.push_back(m.handle.swapped_out());
    }
    return s;
  }

  void check_all() {
    FUZZ_EXPECT(kv_.is_valid(), "is_valid");
    std::vector<std::uint32_t> holders(device_pages, 0);
    // The first holder of each page and the page's index in it: every other holder must hold the
    // page at the same index with the same tokens (shared prefix, or a fork not written since).
    std::vector<const model_sequence*> first_holder(device_pages, nullptr);
    std::vector<std::size_t> first_index(device_pages, 0);
    std::vector<bool> host_taken(host_pages, false);
    std::size_t host_used = 0, slots_used = 0;
    for (const model_sequence& s : live_) {
      const std::size_t n = s.tokens.size();
      FUZZ_EXPECT(!s.handle.empty() && s.handle.owner() == &kv_, "a live handle");
      FUZZ_EXPECT(s.handle.num_tokens() == n, "num_tokens matches the model");
      FUZZ_EXPECT(s.handle.swapped_out() == s.swapped, "swapped_out matches the model");
      const auto pages = s.handle.pages();
      if (s.swapped) {
        FUZZ_EXPECT(pages.empty(), "a swapped-out sequence holds no device page");
        FUZZ_EXPECT(s.host.size() == pages_for(n), "one host page per page");
        for (const page_id h : s.host) {
          FUZZ_EXPECT(h < host_pages && !host_taken[h], "host pages are distinct");
          host_taken[h] = true;
        }
        host_used += s.host.size();
        continue;
      }
      FUZZ_EXPECT(pages.size() == pages_for(n), "pages().size() == ceil(tokens / page_size)");
      for (std::size_t i = 0; i < pages.size(); ++i) {
        const page_id p = pages[i];
        FUZZ_EXPECT(p < device_pages, "page id in range");
        const std::size_t here = std::min<std::size_t>(page_size, n - i * page_size);
        if (holders[p]++ == 0) {
          first_holder[p] = &s;
          first_index[p] = i;
          slots_used += here;
          continue;
        }
        const model_sequence& o = *first_holder[p];
        FUZZ_EXPECT(first_index[p] == i, "a shared page sits at the same index in each holder");
        const std::size_t o_here =
            std::min<std::size_t>(page_size, o.tokens.size() - i * page_size);
        FUZZ_EXPECT(o_here == here, "a shared page holds as many tokens for each holder");
        for (std::size_t j = i * page_size; j < i * page_size + here; ++j)
          FUZZ_EXPECT(o.tokens[j] == s.tokens[j] && o.values[j] == s.values[j],
                      "a shared page holds the same tokens (and context) for each holder");
      }
      for (std::size_t t = 0; t < n; ++t)
        FUZZ_EXPECT(
            read_slot(pages[t / page_size], t % page_size) == s.values[t],
            "a token's slot holds its KV (prefix hit, copy-on-write and swap copies included)");
    }
    std::uint32_t used = 0;
    for (page_id p = 0; p < device_pages; ++p) {
      FUZZ_EXPECT(kv_.pages().refcount(p) == holders[p], "refcount equals holders");
      if (holders[p] > 0) {
        ++used;
        FUZZ_EXPECT(kv_.pages().is_allocated(p), "a held page is allocated");
      }
    }
    const kv::cache_stats st = kv_.stats();
    FUZZ_EXPECT(st.total_pages == device_pages, "stats: total");
    FUZZ_EXPECT(st.used_pages == used, "stats: used pages are the held ones");
    FUZZ_EXPECT(st.used_pages + st.cached_pages + st.free_pages == device_pages, "stats: sum");
    FUZZ_EXPECT(kv_.num_free_pages() == st.free_pages + st.cached_pages, "num_free_pages");
    FUZZ_EXPECT(st.slots_allocated == std::size_t{used} * page_size, "stats: slots allocated");
    FUZZ_EXPECT(st.slots_used == slots_used, "stats: slots used");
    FUZZ_EXPECT(st.cow_copies == coverage_.cow_copies, "stats: copy-on-write copies");
    FUZZ_EXPECT(st.evictions == coverage_.evictions, "stats: evictions");
    FUZZ_EXPECT(st.swaps_out == swaps_out_ && st.swaps_in == swaps_in_, "stats: swaps");
    if (!config_.prefix_caching)
      FUZZ_EXPECT(st.cached_pages == 0, "no cached pages without prefix caching");
    FUZZ_EXPECT(kv_.host_pages()->num_free() == host_pages - host_used, "host pages in use");
  }

  // ---- operations ---------------------------------------------------------------------------

  void log(std::string line) {
    if (log_.size() == 40) log_.pop_front();
    log_.push_back(std::move(line));
  }
  static std::string describe(std::span<const token_id> tokens) {
    std::string s = "{";
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) s += ',';
      s += std::to_string(tokens[i]);
    }
    return s + "}";
  }
  std::string name(const model_sequence& s) const { return 's' + std::to_string(s.name); }

  /// Index of a random live sequence that is (or is not) swapped out, or nullopt.
  std::optional<std::size_t> pick(bool swapped) {
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < live_.size(); ++i)
      if (live_[i].swapped == swapped) candidates.push_back(i);
    if (candidates.empty()) return std::nullopt;
    return candidates[below(candidates.size())];
  }

  void step() {
    const std::size_t r = below(1000);
    const bool crowded = live_.size() >= max_live;
    if (r < 200)
      crowded ? op_release() : op_add();
    else if (r < 500)
      op_append();
    else if (r < 570)
      crowded ? op_release() : op_fork();
    else if (r < 720)
      op_release();
    else if (r < 780)
      op_swap_out();
    else if (r < 840)
      op_swap_in();
    else if (r < 920)
      op_take_copy_ops();
    else if (r < 960)
      op_export();
    else if (r < 980)
      op_misuse();
    else if (r < 995)
      op_reset();
    else
      op_drain();
  }

  void op_add() {
    if (below(500) == 0) {  // a prompt that could never fit is refused at once
      const auto huge = random_tokens(device_pages * page_size + 1 + below(8));
      log("add " + std::to_string(huge.size()) + " tokens (can never fit)");
      const snapshot before = take_snapshot();
      bool refused = false;
      try {
        (void)kv_.try_add_sequence(huge);
      } catch (const frugal::invalid_argument&) {
        refused = true;
      }
      FUZZ_EXPECT(refused, "a prompt larger than the cache is refused with invalid_argument");
      FUZZ_EXPECT(take_snapshot() == before, "a refused prompt changes nothing");
      return;
    }
    auto [prompt, key] = random_prompt();
    const bool throwing = below(5) == 0;
    log(std::string(throwing ? "add_sequence" : "try_add_sequence") + " key " +
        std::to_string(key) + " " + describe(prompt));
    const snapshot before = take_snapshot();
    std::optional<kv::sequence> handle;
    if (throwing) {
      try {
        handle.emplace(kv_.add_sequence(prompt, key));
      } catch (const frugal::out_of_memory&) {
      }
    } else {
      handle = kv_.try_add_sequence(prompt, key);
    }
    const std::size_t needed = pages_for(prompt.size());
    const std::size_t watermark = static_cast<std::size_t>(config_.watermark * device_pages);
    if (!handle) {
      log("  refused");
      ++coverage_.add_refused;
      FUZZ_EXPECT(
          needed + watermark > before.free_pages,
          "a prompt is refused only when its pages and the watermark exceed the free pages");
      FUZZ_EXPECT(take_snapshot() == before, "a refused add changes nothing");
      return;
    }
    model_sequence s;
    s.handle = std::move(*handle);
    s.name = next_name_++;
    s.extra_key = key;
    extend(s, prompt);
    const std::size_t cached = s.handle.cached_tokens();
    log("  -> " + name(s) + ", cached " + std::to_string(cached) + ", pages " + describe_pages(s));
    FUZZ_EXPECT(cached % page_size == 0, "cached_tokens is whole pages");
    FUZZ_EXPECT(cached <= (prompt.size() - 1) / page_size * page_size,
                "cached_tokens leaves at least the last token to compute");
    if (!config_.prefix_caching) FUZZ_EXPECT(cached == 0, "no prefix hits without prefix caching");
    if (cached > 0) ++coverage_.prefix_hits;
    // Hit pages were computed by an earlier sequence: check_all proves their slots hold this
    // prompt's KV. Fresh pages forget what they held; the kernel writes the rest.
    const auto pages = s.handle.pages();
    const std::size_t fresh = needed - cached / page_size;
    std::size_t hits_cached = 0;  // hit pages that were cached (counted among the free pages)
    for (std::size_t i = 0; i < cached / page_size; ++i)
      hits_cached += before.refcounts[pages[i]] == 0;
    FUZZ_EXPECT(
        fresh + watermark + hits_cached <= before.free_pages,
        "a prompt is admitted only when its new pages fit while keeping the watermark free");
    coverage_.evictions += fresh > before.stats.free_pages ? fresh - before.stats.free_pages : 0;
    for (std::size_t i = cached / page_size; i < pages.size(); ++i) zero_page(pages[i]);
    live_.push_back(std::move(s));
    write_new_tokens(live_.back(), cached);
  }

  std::string describe_pages(const model_sequence& s) const {
    std::string out = "[";
    const auto pages = s.handle.pages();
    for (std::size_t i = 0; i < pages.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(pages[i]);
    }
    return out + "]";
  }

  void op_append() {
    const auto i = pick(false);
    if (!i) return op_add();
    model_sequence& s = live_[*i];
    if (s.tokens.size() >= max_tokens) return op_release();
    const std::size_t r = below(10);
    const std::size_t count = r < 7 ? 1 : r < 9 ? 2 + below(3) : 5 + below(12);
    const auto tokens = generated_tokens(s, count);
    const bool throwing = below(5) == 0;
    log(std::string(throwing ? "append " : "try_append ") + name(s) + " " + describe(tokens));

    const std::size_t n = s.tokens.size();
    const std::vector<page_id> old_pages(s.handle.pages().begin(), s.handle.pages().end());
    const std::size_t room = old_pages.size() * page_size - n;
    const bool cow = room > 0 && kv_.pages().refcount(old_pages.back()) > 1;
    const std::size_t beyond = count > room ? count - room : 0;
    const std::size_t needed = (cow ? 1 : 0) + pages_for(beyond);
    const snapshot before = take_snapshot();
    bool ok = true;
    if (throwing) {
      try {
        kv_.append(s.handle, tokens);
      } catch (const frugal::out_of_memory&) {
        ok = false;
      }
    } else {
      ok = kv_.try_append(s.handle, tokens);
    }
    if (!ok) {
      log("  refused");
      ++coverage_.append_refused;
      FUZZ_EXPECT(needed > before.free_pages,
                  "an append is refused only when its pages are not free");
      FUZZ_EXPECT(take_snapshot() == before, "a refused append changes nothing");
      return;
    }
    FUZZ_EXPECT(needed <= before.free_pages, "an append succeeded without the pages it needs");
    log("  -> pages " + describe_pages(s) + (cow ? " (copy-on-write)" : ""));
    extend(s, tokens);
    const auto pages = s.handle.pages();
    FUZZ_EXPECT(pages.size() == pages_for(s.tokens.size()), "pages after append");
    for (std::size_t j = 0; j + 1 < old_pages.size(); ++j)
      FUZZ_EXPECT(pages[j] == old_pages[j], "an append keeps the sequence's earlier pages");
    const std::size_t last = old_pages.size() - 1;
    if (cow) {
      // The engine performs the copy before its kernel writes into the new page.
      FUZZ_EXPECT(pages[last] != old_pages[last], "a shared partial page is copied before a write");
      const copy_op op{old_pages[last], pages[last]};
      expected_copies_.push_back(op);
      kv::copy_pages_host(kv_.pages(), kv_.pages(), std::span<const copy_op>(&op, 1));
      ++coverage_.cow_copies;
    } else {
      FUZZ_EXPECT(pages[last] == old_pages[last], "an unshared last page is written in place");
    }
    coverage_.evictions += needed > before.stats.free_pages ? needed - before.stats.free_pages : 0;
    for (std::size_t j = old_pages.size(); j < pages.size(); ++j) zero_page(pages[j]);
    write_new_tokens(s, n);
  }

  void op_fork() {
    const auto i = pick(false);
    if (!i) return op_add();
    model_sequence child;
    child.handle = kv_.fork(live_[*i].handle);
    const model_sequence& parent = live_[*i];
    child.name = next_name_++;
    child.tokens = parent.tokens;
    child.values = parent.values;
    child.extra_key = parent.extra_key;
    log("fork " + name(parent) + " -> " + name(child));
    FUZZ_EXPECT(std::equal(child.handle.pages().begin(), child.handle.pages().end(),
                           parent.handle.pages().begin(), parent.handle.pages().end()),
                "a fork shares every page");
    const kv::sequence* batch[] = {&child.handle};
    FUZZ_EXPECT(kv_.slot_mapping(batch).empty(), "a fork has no new tokens to compute");
    live_.push_back(std::move(child));
  }

  void op_release() {
    if (live_.empty()) return;
    const std::size_t i = below(live_.size());
    log("release " + name(live_[i]) + (live_[i].swapped ? " (swapped out)" : ""));
    if (finished_.size() == 8) finished_.pop_front();
    finished_.emplace_back(live_[i].tokens, live_[i].extra_key);
    switch (below(3)) {
      case 0:
        live_[i].handle.release();
        break;  // explicit
      case 1:
        live_[i].handle = kv::sequence{};
        break;  // move-assigned over
      default:
        break;  // destroyed below
    }
    if (i + 1 != live_.size()) live_[i] = std::move(live_.back());
    live_.pop_back();
  }

  void op_swap_out() {
    const auto i = pick(false);
    if (!i) return;
    model_sequence& s = live_[*i];
    log("swap_out " + name(s) + " pages " + describe_pages(s));
    const std::vector<page_id> old_pages(s.handle.pages().begin(), s.handle.pages().end());
    const snapshot before = take_snapshot();
    std::vector<copy_op> ops;
    try {
      ops = kv_.swap_out(s.handle);
    } catch (const frugal::out_of_memory&) {
      log("  refused");
      ++coverage_.swap_out_refused;
      FUZZ_EXPECT(old_pages.size() > before.host_free,
                  "swap_out is refused only when the host tier is short");
      FUZZ_EXPECT(take_snapshot() == before, "a refused swap_out changes nothing");
      return;
    }
    FUZZ_EXPECT(old_pages.size() <= before.host_free, "swap_out succeeded without host pages");
    const auto swap_ops = take_pending_prefix(ops, "swap_out");
    FUZZ_EXPECT(swap_ops.size() == old_pages.size(), "one copy per page");
    s.host.clear();
    for (std::size_t j = 0; j < swap_ops.size(); ++j) {
      FUZZ_EXPECT(swap_ops[j].src == old_pages[j], "swap_out copies the pages in order");
      FUZZ_EXPECT(swap_ops[j].kind == kv::copy_kind::device_to_host, "swap_out copies to the host");
      s.host.push_back(swap_ops[j].dst);
    }
    // check_all proves the host pages are distinct and not another swapped sequence's.
    kv::copy_pages_host(kv_.pages(), *kv_.host_pages(), swap_ops);
    s.swapped = true;
    ++swaps_out_;
    ++coverage_.swaps;
  }

  void op_swap_in() {
    const auto i = pick(true);
    if (!i) return op_swap_out();
    model_sequence& s = live_[*i];
    log("swap_in " + name(s) + " (" + std::to_string(s.host.size()) + " pages)");
    const snapshot before = take_snapshot();
    std::vector<copy_op> ops;
    try {
      ops = kv_.swap_in(s.handle);
    } catch (const frugal::out_of_memory&) {
      log("  refused");
      ++coverage_.swap_in_refused;
      FUZZ_EXPECT(s.host.size() > before.free_pages,
                  "swap_in is refused only when device pages are short");
      FUZZ_EXPECT(take_snapshot() == before, "a refused swap_in changes nothing");
      return;
    }
    FUZZ_EXPECT(s.host.size() <= before.free_pages, "swap_in succeeded without device pages");
    const auto pages = s.handle.pages();
    const auto swap_ops = take_pending_prefix(ops, "swap_in");
    FUZZ_EXPECT(swap_ops.size() == s.host.size() && pages.size() == s.host.size(),
                "one copy per page");
    for (std::size_t j = 0; j < swap_ops.size(); ++j) {
      FUZZ_EXPECT(swap_ops[j].src == s.host[j] && swap_ops[j].dst == pages[j],
                  "swap_in copies the pages in order");
      FUZZ_EXPECT(swap_ops[j].kind == kv::copy_kind::host_to_device,
                  "swap_in copies from the host");
    }
    log("  -> pages " + describe_pages(s));
    kv::copy_pages_host(*kv_.host_pages(), kv_.pages(), swap_ops);
    coverage_.evictions +=
        s.host.size() > before.stats.free_pages ? s.host.size() - before.stats.free_pages : 0;
    s.host.clear();
    s.swapped = false;
    ++swaps_in_;
  }

  /// A swap's list starts with the copy-on-write copies still pending (this model performed them
  /// already, when they arose); checks that prefix and returns the swap's own copies.
  std::vector<copy_op> take_pending_prefix(const std::vector<copy_op>& ops, const char* what) {
    FUZZ_EXPECT(ops.size() >= expected_copies_.size() &&
                    std::equal(expected_copies_.begin(), expected_copies_.end(), ops.begin()),
                std::string(what) + " hands out the pending copy-on-write copies first");
    const std::size_t pending = std::min(ops.size(), expected_copies_.size());
    expected_copies_.clear();
    return {ops.begin() + static_cast<std::ptrdiff_t>(pending), ops.end()};
  }

  void op_take_copy_ops() {
    log("take_copy_ops (" + std::to_string(expected_copies_.size()) + " expected)");
    FUZZ_EXPECT(kv_.take_copy_ops() == expected_copies_,
                "take_copy_ops lists each copy-on-write since the last call, in order");
    expected_copies_.clear();
  }

  void op_export() {
    std::vector<const kv::sequence*> batch;
    std::vector<const model_sequence*> models;
    for (const model_sequence& s : live_)
      if (!s.swapped && below(2) == 0) {
        batch.push_back(&s.handle);
        models.push_back(&s);
      }
    log("export " + std::to_string(batch.size()) + " sequences");
    const auto fi = kv_.export_flashinfer(batch);
    const auto bt = kv_.export_block_tables(batch, -1);
    FUZZ_EXPECT(fi.indptr.size() == batch.size() + 1 && fi.indptr[0] == 0, "flashinfer indptr");
    FUZZ_EXPECT(fi.last_page_len.size() == batch.size() && bt.seq_lens.size() == batch.size(),
                "export sizes");
    std::size_t max_pages = 0;
    for (const model_sequence* s : models)
      max_pages = std::max(max_pages, pages_for(s->tokens.size()));
    FUZZ_EXPECT(bt.max_pages == max_pages && bt.tables.size() == batch.size() * max_pages,
                "block table shape");
    for (std::size_t b = 0; b < batch.size(); ++b) {
      const auto pages = models[b]->handle.pages();
      const std::size_t n = models[b]->tokens.size();
      FUZZ_EXPECT(static_cast<std::size_t>(fi.indptr[b + 1] - fi.indptr[b]) == pages.size(),
                  "flashinfer row length");
      FUZZ_EXPECT(
          static_cast<std::size_t>(fi.last_page_len[b]) == n - (pages.size() - 1) * page_size,
          "flashinfer last_page_len");
      FUZZ_EXPECT(static_cast<std::size_t>(bt.seq_lens[b]) == n, "block table seq_lens");
      for (std::size_t j = 0; j < max_pages; ++j) {
        const std::int32_t expected = j < pages.size() ? static_cast<std::int32_t>(pages[j]) : -1;
        FUZZ_EXPECT(bt.tables[b * max_pages + j] == expected, "block table row");
        if (j < pages.size())
          FUZZ_EXPECT(fi.indices[static_cast<std::size_t>(fi.indptr[b]) + j] == expected,
                      "flashinfer indices");
      }
    }
  }

  template <class F>
  static void expect_invalid(F&& f, const char* what) {
    bool refused = false;
    try {
      f();
    } catch (const frugal::invalid_argument&) {
      refused = true;
    }
    FUZZ_EXPECT(refused, std::string(what) + " is refused with invalid_argument");
  }

  /// Using a swapped-out sequence as a running one is refused, changing nothing.
  void op_misuse() {
    const auto i = pick(true);
    if (!i) return;
    model_sequence& s = live_[*i];
    log("misuse of swapped-out " + name(s));
    const snapshot before = take_snapshot();
    const std::vector<token_id> one{1};
    const kv::sequence* batch[] = {&s.handle};
    expect_invalid([&] { (void)kv_.try_append(s.handle, one); },
                   "append to a swapped-out sequence");
    expect_invalid([&] { (void)kv_.fork(s.handle); }, "fork of a swapped-out sequence");
    expect_invalid([&] { (void)kv_.swap_out(s.handle); }, "swap_out of a swapped-out sequence");
    expect_invalid([&] { (void)kv_.export_block_tables(batch); },
                   "export of a swapped-out sequence");
    expect_invalid([&] { (void)kv_.slot_mapping(batch); },
                   "slot_mapping of a swapped-out sequence");
    FUZZ_EXPECT(take_snapshot() == before, "refused misuse changes nothing");
  }

  void op_reset() {
    const snapshot before = take_snapshot();
    const bool running =
        std::any_of(live_.begin(), live_.end(), [](const model_sequence& s) { return !s.swapped; });
    log("reset_prefix_cache");
    const bool done = kv_.reset_prefix_cache();
    FUZZ_EXPECT(done == !running, "reset_prefix_cache refuses exactly while pages are used");
    if (!done) {
      ++coverage_.resets_refused;
      FUZZ_EXPECT(take_snapshot() == before, "a refused reset changes nothing");
      return;
    }
    ++coverage_.resets;
    FUZZ_EXPECT(kv_.stats().free_pages == device_pages, "after a reset every page is free");
  }

  /// Every running sequence finishes (swapped-out ones wait), then maybe the cache is reset.
  void op_drain() {
    log("drain running sequences");
    for (std::size_t i = live_.size(); i-- > 0;)
      if (!live_[i].swapped) {
        finished_.emplace_back(live_[i].tokens, live_[i].extra_key);
        if (finished_.size() > 8) finished_.pop_front();
        if (i + 1 != live_.size()) live_[i] = std::move(live_.back());
        live_.pop_back();
      }
    if (below(2) == 0) op_reset();
  }

  /// Release everything: every page is free or cached; a reset then frees them all.
  void finish() {
    log("finish: release all");
    live_.clear();
    check_all();
    const kv::cache_stats st = kv_.stats();
    FUZZ_EXPECT(st.used_pages == 0 && st.free_pages + st.cached_pages == device_pages,
                "after releasing everything each page is free or cached");
    FUZZ_EXPECT(kv_.host_pages()->num_free() == host_pages,
                "after releasing everything the host tier is free");
    FUZZ_EXPECT(kv_.reset_prefix_cache(), "reset_prefix_cache once nothing is used");
    FUZZ_EXPECT(kv_.stats().free_pages == device_pages && kv_.num_free_pages() == device_pages,
                "after the reset every page is free");
    FUZZ_EXPECT(kv_.is_valid(), "is_valid after the reset");
  }

  fuzz_config config_;
  std::mt19937_64 rng_;
  frugal::host_resource memory_;
  kv::cache kv_;
  std::vector<model_sequence> live_;  // after kv_: the handles go first
  std::vector<std::vector<token_id>> system_prompts_;
  std::deque<std::pair<std::vector<token_id>, std::uint64_t>> finished_;  // (tokens, extra key)
  std::vector<copy_op> expected_copies_;
  std::deque<std::string> log_;
  coverage coverage_;
  std::size_t swaps_out_ = 0, swaps_in_ = 0;
  std::uint32_t next_name_ = 0;
};

#undef FUZZ_EXPECT

coverage run_fuzz(const fuzz_config& config) {
  fuzzer f{config};
  coverage cov;
  const std::string failure = f.run(cov);
  INFO(failure);
  REQUIRE(failure.empty());
  if (std::getenv("KV_FUZZ_VERBOSE") != nullptr)  // to tune the operation mix
    std::printf(
        "seed %llu: hits %zu, copies %zu, evictions %zu, refused add %zu append %zu "
        "swap_out %zu swap_in %zu, swaps %zu, resets %zu (refused %zu)\n",
        static_cast<unsigned long long>(config.seed), cov.prefix_hits, cov.cow_copies,
        cov.evictions, cov.add_refused, cov.append_refused, cov.swap_out_refused,
        cov.swap_in_refused, cov.swaps, cov.resets, cov.resets_refused);
  return cov;
}

}  // namespace

TEST_CASE("kv: 100000 random operations agree with a reference model") {
  const coverage cov = run_fuzz({.seed = 1, .operations = 100000});
  // Not vacuous: every path was taken.
  CHECK(cov.prefix_hits > 0);
  CHECK(cov.cow_copies > 0);
  CHECK(cov.evictions > 0);
  CHECK(cov.add_refused > 0);
  CHECK(cov.append_refused > 0);
  CHECK(cov.swap_out_refused > 0);
  CHECK(cov.swap_in_refused > 0);
  CHECK(cov.swaps > 0);
  CHECK(cov.resets > 0);
  CHECK(cov.resets_refused > 0);
}

TEST_CASE("kv: random operations without prefix caching or watermark agree with the model") {
  run_fuzz({.seed = 2, .operations = 20000, .prefix_caching = false, .watermark = 0.0});
}

TEST_CASE("kv: a million random operations per seed agree with a reference model", "[.][long]") {
  for (std::uint64_t seed = 10; seed < 18; ++seed) {
    run_fuzz({.seed = seed, .operations = 1000000});
    run_fuzz({.seed = seed + 100,
              .operations = 200000,
              .prefix_caching = false,
              .watermark = seed % 2 ? 0.0 : 0.1});
  }
}
